package protocol

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// ConnConfig tunes a Conn. Zero values take the defaults.
type ConnConfig struct {
	// PingInterval is how often a WebSocket ping is sent.
	PingInterval time.Duration
	// PongTimeout is how long a ping may take to be written, and how long
	// its pong may take to come back: a Read that has waited PingInterval +
	// PongTimeout with nothing received, and PongTimeout since a ping went
	// out, declares the peer dead and closes the connection.
	PongTimeout time.Duration
}

func (c ConnConfig) withDefaults() ConnConfig {
	if c.PingInterval <= 0 {
		c.PingInterval = DefaultPingInterval
	}
	if c.PongTimeout <= 0 {
		c.PongTimeout = DefaultPongTimeout
	}
	return c
}

// ErrPeerUnresponsive is returned (wrapped) by Read when nothing, not even
// a pong, arrived from the peer for PingInterval + PongTimeout while a Read
// was waiting, and no pong came PongTimeout after a ping. The Conn has
// closed itself by then.
var ErrPeerUnresponsive = errors.New("protocol: the peer stopped answering pings")

// Conn is a net.Conn whose bytes travel in binary WebSocket messages. It is
// safe for one reader and any number of writers at once; the bytes of one
// Write call stay together. It pings the peer every PingInterval and closes
// itself when a Read has waited PingInterval + PongTimeout without anything
// (data, ping or pong) arriving, and at least PongTimeout since a ping went
// out in that silence: a timer that fires late, on a loaded machine, sends
// a ping and waits for its pong before it blames the peer. As with
// gorilla/websocket, a failed read,
// including one past the read deadline, breaks reading for good: every
// later Read returns the same error. The same holds for writes.
//
// The liveness check runs on a timer (time.AfterFunc), so an idle Conn
// holds no goroutine of its own: only while the timer fires, to send a
// ping, does one run.
type Conn struct {
	ws  *websocket.Conn
	cfg ConnConfig

	readMu  sync.Mutex // one Read at a time; guards reader and readErr
	reader  io.Reader  // the current message, nil between messages
	readErr error      // once set, every Read returns it without touching ws

	writeMu    sync.Mutex  // one writer of data messages at a time; guards the fields below and ws's write deadline
	pending    []byte      // yamux frame headers not sent yet (see Write)
	bodyNext   bool        // pending ends with a data-frame header; the next Write is its body
	flushTimer *time.Timer // sends pending that no data frame took along; nil until first needed
	flushArmed bool        // flushTimer is set
	writeErr   error       // a failed write of pending by flushTimer, returned by later Writes

	lastSeen  atomic.Int64 // unix nanos: a frame arrived, or a Read began waiting
	lastHeard atomic.Int64 // unix nanos: a frame arrived (LastHeard)
	reading   atomic.Bool  // a Read is waiting: silence counts against the peer
	silent    atomic.Bool  // the Conn closed itself because the peer went silent

	// gorilla applies the write deadline a message began with to each of
	// its frames, so a deadline set while a message is on its way would be
	// undone by the message's next frame; deadlineTimer enforces it.
	dlMu          sync.Mutex
	userWriteDL   time.Time   // set by SetWriteDeadline; zero: none
	msgWriteDL    time.Time   // the deadline the message being written began with
	inMessage     bool        // a message is being written
	deadlineTimer *time.Timer // runs enforceDeadline; nil until first needed

	tickMu   sync.Mutex  // held by tick; Close takes it to wait for a running tick
	timer    *time.Timer // runs tick
	nextPing time.Time   // guarded by tickMu
	pingSent time.Time   // guarded by tickMu: when the first ping since the peer was last heard was written (or tried)

	closeOnce sync.Once
	closeErr  error
	done      chan struct{}

	notify atomic.Pointer[func()] // SetNotify
}

var _ net.Conn = (*Conn)(nil)

// NewConn wraps ws, which the Conn owns from now on: it sets ws's read limit
// to MaxMessage, installs ping and pong handlers, and starts the liveness
// timer, which Close (or the Conn closing itself) stops.
func NewConn(ws *websocket.Conn, cfg ConnConfig) *Conn {
	c := &Conn{ws: ws, cfg: cfg.withDefaults(), done: make(chan struct{})}
	c.heard()
	ws.SetReadLimit(MaxMessage)
	ws.SetPongHandler(func(string) error {
		c.heard()
		return nil
	})
	ws.SetPingHandler(func(data string) error {
		c.heard()
		err := ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(c.cfg.PongTimeout))
		if err != nil && !errors.Is(err, websocket.ErrCloseSent) && !isTimeout(err) {
			return err
		}
		return nil
	})
	c.tickMu.Lock()
	c.nextPing = time.Now().Add(c.cfg.PingInterval)
	c.timer = time.AfterFunc(c.cfg.PingInterval, c.tick)
	c.tickMu.Unlock()
	return c
}

func (c *Conn) touch() { c.lastSeen.Store(time.Now().UnixNano()) }

// heard notes that something arrived from the peer.
func (c *Conn) heard() {
	now := time.Now().UnixNano()
	c.lastSeen.Store(now)
	c.lastHeard.Store(now)
}

// LastHeard is when the last message (data, ping or pong) arrived from the
// peer, or when the Conn was made if none has.
func (c *Conn) LastHeard() time.Time { return time.Unix(0, c.lastHeard.Load()) }

// silence is how long a waiting Read may see nothing from the peer.
func (c *Conn) silence() time.Duration { return c.cfg.PingInterval + c.cfg.PongTimeout }

// tick sends a ping when one is due, closes the Conn when a Read has
// waited in silence too long, and sets the timer for the next of the two.
//
// The peer is blamed only for a ping it had the time to answer: the
// silence must have lasted PingInterval + PongTimeout and include a ping
// sent PongTimeout ago. A tick that runs late (a loaded machine, a paused
// process) and finds the silence long first sends a ping, then waits
// PongTimeout for its pong.
func (c *Conn) tick() {
	c.tickMu.Lock()
	defer c.tickMu.Unlock()
	if c.isClosed() {
		return
	}
	now := time.Now()
	seen := time.Unix(0, c.lastSeen.Load())
	deadline := c.blameAt(seen)
	reading := c.reading.Load()
	if reading && !deadline.IsZero() && !now.Before(deadline) {
		c.silent.Store(true)
		c.close()
		return
	}
	// With no ping since the peer was last heard, the next ping is due
	// before the silence is long enough: nextPing is at most PingInterval
	// after the last ping.
	if !now.Before(c.nextPing) {
		// A ping that times out is not fatal here: it was not answered
		// within PongTimeout, which the check above counts against the
		// peer at the next tick.
		if !c.pingSent.After(seen) {
			c.pingSent = now // the first ping of this silence
		}
		if err := c.ws.WriteControl(websocket.PingMessage, nil, now.Add(c.cfg.PongTimeout)); err != nil && !isTimeout(err) {
			c.close()
			return
		}
		now = time.Now()
		c.nextPing = now.Add(c.cfg.PingInterval)
		deadline = c.blameAt(seen)
	}
	next := c.nextPing
	if reading && !deadline.IsZero() && deadline.Before(next) {
		next = deadline
	}
	c.timer.Reset(max(next.Sub(now), time.Millisecond))
}

// blameAt is when a Read's silence since seen ends the Conn: PingInterval +
// PongTimeout after seen, and PongTimeout after the first ping sent since
// seen. It is zero while no ping has gone out since seen. c.tickMu is held.
func (c *Conn) blameAt(seen time.Time) time.Time {
	if !c.pingSent.After(seen) {
		return time.Time{}
	}
	deadline := seen.Add(c.silence())
	if answerBy := c.pingSent.Add(c.cfg.PongTimeout); answerBy.After(deadline) {
		return answerBy
	}
	return deadline
}

// Read reads bytes from the current binary message, moving to the next one
// when it is exhausted. A text message is a protocol error. Read returns
// io.EOF after the peer closed normally, net.ErrClosed after Close, an
// error wrapping os.ErrDeadlineExceeded past the read deadline, and
// ErrPeerUnresponsive when the peer went silent.
func (c *Conn) Read(p []byte) (int, error) {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	if c.readErr != nil {
		return 0, c.readErr
	}
	// The liveness clock runs only while someone reads: pongs that wait in
	// the socket of a caller that paused reading say nothing against the peer.
	c.touch()
	c.reading.Store(true)
	defer c.reading.Store(false)
	for {
		if c.reader == nil {
			c.callNotify() // what was read so far is with the reader
			kind, r, err := c.ws.NextReader()
			if err != nil {
				return 0, c.readFailed(err)
			}
			c.heard()
			if kind != websocket.BinaryMessage {
				return 0, c.readFailed(errors.New("protocol: text message on the tunnel, which carries binary messages only"))
			}
			c.reader = r
		}
		n, err := c.reader.Read(p)
		if errors.Is(err, io.EOF) {
			c.reader = nil
			if n > 0 {
				return n, nil
			}
			continue
		}
		if err != nil {
			return n, c.readFailed(err)
		}
		return n, nil
	}
}

// readFailed turns a read error into the one Read reports from now on.
func (c *Conn) readFailed(err error) error {
	var ce *websocket.CloseError
	switch {
	case c.silent.Load():
		err = fmt.Errorf("%w: nothing arrived for %v", ErrPeerUnresponsive, c.silence())
	case c.isClosed():
		err = net.ErrClosed
	case errors.As(err, &ce) && (ce.Code == websocket.CloseNormalClosure || ce.Code == websocket.CloseGoingAway):
		err = io.EOF
	case isTimeout(err):
		err = c.deadlineError("read")
	}
	c.readErr = err
	return err
}

// Write sends p as one or more binary messages of at most MaxMessage bytes.
// Concurrent Writes do not interleave their bytes, and bytes go out in the
// order they were written.
//
// yamux writes every frame as a 12-byte header, then the body of a data
// frame in a second write. Write sends a data frame's header in one
// message with its body, and lets a frame without a body (a window update
// opening or closing a stream, a ping) wait up to coalesceDelay for a data
// frame to ride along with: a stream's opening then travels with its
// request, and under load the acknowledgements and closes of many streams
// travel with the next data. That halves the messages, and the system
// calls, of a busy tunnel; no data ever waits. A window update that only
// grants room (no flag) goes at once, with what is held: the peer may be
// waiting for it to send more of a large body. The reader sees the same
// bytes either way.
func (c *Conn) Write(p []byte) (int, error) {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if c.writeErr != nil {
		return 0, c.writeErr
	}
	if !c.bodyNext && isMuxHeader(p) {
		c.pending = append(c.pending, p...)
		if isMuxDataHeader(p) {
			c.bodyNext = true
			return len(p), nil
		}
		if len(c.pending) >= maxPending || isMuxWindowGrant(p) {
			if err := c.flushPending(); err != nil {
				return 0, err
			}
		} else if !c.flushArmed {
			if c.flushTimer == nil {
				c.flushTimer = time.AfterFunc(coalesceDelay, c.flushLater)
			} else {
				c.flushTimer.Reset(coalesceDelay)
			}
			c.flushArmed = true
		}
		return len(p), nil
	}
	c.bodyNext = false
	written := 0
	for len(p) > 0 || len(c.pending) > 0 {
		n := min(len(p), MaxMessage-len(c.pending))
		err := c.writeMessage(c.pending, p[:n])
		c.pending = c.pending[:0]
		if err != nil {
			return written, c.writeFailed(err)
		}
		written += n
		p = p[n:]
	}
	c.stopFlushTimer()
	return written, nil
}

// coalesceDelay is how long a yamux frame without a body may wait for data
// to travel with. It delays only stream opens, closes and window updates,
// never data, and is far below every timeout they are subject to.
const coalesceDelay = 200 * time.Microsecond

// maxPending bounds the frame headers held back.
const maxPending = 64 * muxHeaderSize

// flushPending sends the held headers alone. c.writeMu is held.
func (c *Conn) flushPending() error {
	c.stopFlushTimer()
	if len(c.pending) == 0 || c.bodyNext {
		return nil
	}
	err := c.writeMessage(nil, c.pending)
	c.pending = c.pending[:0]
	if err != nil {
		return c.writeFailed(err)
	}
	return nil
}

func (c *Conn) stopFlushTimer() {
	if c.flushArmed {
		c.flushTimer.Stop()
		c.flushArmed = false
	}
}

// flushLater runs on flushTimer: no data came along in time.
func (c *Conn) flushLater() {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	c.flushArmed = false
	if c.writeErr != nil || c.isClosed() {
		return
	}
	c.writeErr = c.flushPending()
}

// writeMessage sends head and body as one binary message. gorilla copies
// both into its write buffer (the relay's is as large as a message) and
// sends the message with one system call.
func (c *Conn) writeMessage(head, body []byte) error {
	if len(head)+len(body) == 0 {
		return nil
	}
	c.dlMu.Lock()
	c.msgWriteDL, c.inMessage = c.userWriteDL, true
	_ = c.ws.SetWriteDeadline(c.msgWriteDL)
	c.dlMu.Unlock()
	defer c.endMessage()
	w, err := c.ws.NextWriter(websocket.BinaryMessage)
	if err != nil {
		return err
	}
	if len(head) > 0 {
		if _, err := w.Write(head); err != nil {
			return err
		}
	}
	if _, err := w.Write(body); err != nil {
		return err
	}
	return w.Close()
}

// endMessage notes that no message is being written.
func (c *Conn) endMessage() {
	c.dlMu.Lock()
	c.inMessage = false
	if c.deadlineTimer != nil {
		c.deadlineTimer.Stop()
	}
	c.dlMu.Unlock()
}

// enforceDeadline runs on deadlineTimer when a deadline set during a
// message has passed: while that message is still being written with the
// deadline it began with, it sets the socket's deadline again, which ends
// a write blocked in the socket, and looks again shortly, since gorilla
// sets the old deadline before each frame.
func (c *Conn) enforceDeadline() {
	c.dlMu.Lock()
	defer c.dlMu.Unlock()
	dl := c.userWriteDL
	if !c.inMessage || dl.IsZero() || dl.Equal(c.msgWriteDL) {
		return
	}
	if wait := time.Until(dl); wait > 0 {
		c.deadlineTimer.Reset(wait)
		return
	}
	_ = c.ws.NetConn().SetWriteDeadline(dl)
	c.deadlineTimer.Reset(deadlineRecheck)
}

// deadlineRecheck is how often enforceDeadline looks again at a message
// that is past its deadline and still being written.
const deadlineRecheck = 5 * time.Millisecond

// isMuxHeader reports whether p is exactly a yamux frame header (version
// 0, a known type), as yamux writes one on its own.
func isMuxHeader(p []byte) bool {
	return len(p) == muxHeaderSize && p[0] == 0 && p[1] <= 3
}

// isMuxDataHeader reports whether p is exactly a yamux frame header of a
// data frame that announces a body (version 0, type 0, length > 0).
func isMuxDataHeader(p []byte) bool {
	return isMuxHeader(p) && p[1] == 0 && binary.BigEndian.Uint32(p[8:12]) > 0
}

// isMuxWindowGrant reports whether p is exactly a yamux window update
// without flags that grants more room: the receiver of a stream read what
// it had, and the sender may be blocked until the update arrives.
func isMuxWindowGrant(p []byte) bool {
	return isMuxHeader(p) && p[1] == 1 && p[2] == 0 && p[3] == 0 && binary.BigEndian.Uint32(p[8:12]) > 0
}

// muxHeaderSize is the size of a yamux frame header (see yamux's spec.md).
const muxHeaderSize = 12

func (c *Conn) writeFailed(err error) error {
	switch {
	case c.isClosed():
		return net.ErrClosed
	case isTimeout(err):
		return c.deadlineError("write")
	}
	return err
}

// deadlineError is the error for an operation past its deadline: a
// net.Error whose Timeout is true and which wraps os.ErrDeadlineExceeded,
// as net.Conn implementations report it.
func (c *Conn) deadlineError(op string) error {
	return &net.OpError{Op: op, Net: "websocket", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.ErrDeadlineExceeded}
}

func (c *Conn) isClosed() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// Close sends a close message (best effort), closes the socket and stops the
// liveness timer. It returns once a tick that was running has ended.
func (c *Conn) Close() error {
	c.close()
	c.tickMu.Lock() // a running tick ends fast: the socket is closed
	c.tickMu.Unlock()
	c.callNotify()
	return c.closeErr
}

// SetNotify sets fn (nil: none) to be called each time Read has returned
// every byte of the messages received so far and is about to wait for the
// next one, and each time Close is called. A reader that hands the bytes
// on (a yamux session) has then handled them: a caller learns that it may
// look for new input without a goroutine waiting for it. fn runs on the
// reading or closing goroutine, with a Read in progress, so it must not
// block or call the Conn.
func (c *Conn) SetNotify(fn func()) {
	if fn == nil {
		c.notify.Store(nil)
		return
	}
	c.notify.Store(&fn)
}

func (c *Conn) callNotify() {
	if fn := c.notify.Load(); fn != nil {
		(*fn)()
	}
}

// close does the work of Close without waiting for a running tick, which
// calls it too.
func (c *Conn) close() {
	c.closeOnce.Do(func() {
		// Frames held back go out first, unless a write is stuck.
		if c.writeMu.TryLock() {
			if c.writeErr == nil {
				_ = c.SetWriteDeadline(time.Now().Add(time.Second))
				_ = c.flushPending()
			}
			c.writeMu.Unlock()
		}
		close(c.done)
		c.timer.Stop()
		_ = c.ws.WriteControl(websocket.CloseMessage,
			websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		c.closeErr = c.ws.Close()
	})
}

// Done is closed when the Conn is closed, by Close or by itself.
func (c *Conn) Done() <-chan struct{} { return c.done }

// LocalAddr returns the local network address.
func (c *Conn) LocalAddr() net.Addr { return c.ws.LocalAddr() }

// RemoteAddr returns the remote network address.
func (c *Conn) RemoteAddr() net.Addr { return c.ws.RemoteAddr() }

// SetDeadline sets both the read and the write deadline.
func (c *Conn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

// SetReadDeadline sets the read deadline. It is apart from the liveness
// check, which closes the Conn when the peer goes silent whatever the
// deadline.
func (c *Conn) SetReadDeadline(t time.Time) error {
	return c.ws.SetReadDeadline(t)
}

// SetWriteDeadline sets the write deadline for data messages. It reaches a
// Write blocked in the socket at once, and holds for a message already on
// its way.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	c.dlMu.Lock()
	defer c.dlMu.Unlock()
	c.userWriteDL = t
	// ws.SetWriteDeadline is not safe beside a running write; the next
	// message hands the stored deadline to ws, the socket's own deadline
	// stops a write that is blocked now, and deadlineTimer holds it for the
	// rest of the message being written.
	if c.inMessage && !t.IsZero() && !t.Equal(c.msgWriteDL) {
		if c.deadlineTimer == nil {
			c.deadlineTimer = time.AfterFunc(time.Until(t), c.enforceDeadline)
		} else {
			c.deadlineTimer.Reset(time.Until(t))
		}
	}
	return c.ws.NetConn().SetWriteDeadline(t)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
