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
	// PongTimeout is how long a ping may take to be written, and how much
	// longer than PingInterval a Read waits with nothing received before the
	// peer is declared dead and the connection closed.
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
// was waiting. The Conn has closed itself by then.
var ErrPeerUnresponsive = errors.New("protocol: the peer stopped answering pings")

// Conn is a net.Conn whose bytes travel in binary WebSocket messages. It is
// safe for one reader and any number of writers at once; the bytes of one
// Write call stay together. It pings the peer every PingInterval and closes
// itself when a Read has waited PingInterval + PongTimeout without anything
// (data, ping or pong) arriving. As with gorilla/websocket, a failed read,
// including one past the read deadline, breaks reading for good: every
// later Read returns the same error. The same holds for writes.
type Conn struct {
	ws  *websocket.Conn
	cfg ConnConfig

	readMu  sync.Mutex // one Read at a time; guards reader and readErr
	reader  io.Reader  // the current message, nil between messages
	readErr error      // once set, every Read returns it without touching ws

	writeMu sync.Mutex // one writer of data messages at a time; guards ws's write deadline and held
	held    []byte     // a yamux data-frame header waiting for its body (see Write)

	deadlineMu  sync.Mutex   // held while computing and setting the read deadline
	lastSeen    atomic.Int64 // unix nanos: a frame arrived, or a Read began waiting
	lastHeard   atomic.Int64 // unix nanos: a frame arrived (LastHeard)
	userReadDL  atomic.Int64 // unix nanos, 0: none
	userWriteDL atomic.Int64 // unix nanos, 0: none

	closeOnce     sync.Once
	closeErr      error
	done          chan struct{}
	pingerStopped chan struct{}
}

var _ net.Conn = (*Conn)(nil)

// NewConn wraps ws, which the Conn owns from now on: it sets ws's read limit
// to MaxMessage, installs ping and pong handlers, and starts the pinger,
// which Close (or the Conn closing itself) stops.
func NewConn(ws *websocket.Conn, cfg ConnConfig) *Conn {
	c := &Conn{ws: ws, cfg: cfg.withDefaults(), done: make(chan struct{}), pingerStopped: make(chan struct{})}
	c.heard()
	ws.SetReadLimit(MaxMessage)
	ws.SetPongHandler(func(string) error {
		c.heard()
		return c.applyReadDeadline()
	})
	ws.SetPingHandler(func(data string) error {
		c.heard()
		err := ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(c.cfg.PongTimeout))
		if err != nil && !errors.Is(err, websocket.ErrCloseSent) && !isTimeout(err) {
			return err
		}
		return c.applyReadDeadline()
	})
	_ = c.applyReadDeadline()
	go c.pinger()
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

// applyReadDeadline sets the WebSocket read deadline to the earlier of the
// liveness deadline and the deadline the user set.
func (c *Conn) applyReadDeadline() error {
	c.deadlineMu.Lock()
	defer c.deadlineMu.Unlock()
	dl := time.Unix(0, c.lastSeen.Load()).Add(c.cfg.PingInterval + c.cfg.PongTimeout)
	if u := c.userReadDL.Load(); u != 0 && time.Unix(0, u).Before(dl) {
		dl = time.Unix(0, u)
	}
	return c.ws.SetReadDeadline(dl)
}

func (c *Conn) pinger() {
	defer close(c.pingerStopped)
	t := time.NewTicker(c.cfg.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
			// A ping that times out is not fatal here: the peer's silence
			// ends the connection through the read deadline.
			if err := c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(c.cfg.PongTimeout)); err != nil && !isTimeout(err) {
				c.close()
				return
			}
		}
	}
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
	if err := c.applyReadDeadline(); err != nil {
		return 0, c.readFailed(err)
	}
	for {
		if c.reader == nil {
			kind, r, err := c.ws.NextReader()
			if err != nil {
				return 0, c.readFailed(err)
			}
			c.heard()
			if err := c.applyReadDeadline(); err != nil {
				return 0, c.readFailed(err)
			}
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

// readFailed turns a read error into the one Read reports from now on. A
// timeout before the user's deadline is the peer's silence: the Conn closes.
func (c *Conn) readFailed(err error) error {
	var ce *websocket.CloseError
	switch {
	case c.isClosed():
		err = net.ErrClosed
	case errors.As(err, &ce) && (ce.Code == websocket.CloseNormalClosure || ce.Code == websocket.CloseGoingAway):
		err = io.EOF
	case isTimeout(err):
		if u := c.userReadDL.Load(); u != 0 && !time.Now().Before(time.Unix(0, u)) {
			err = c.deadlineError("read")
		} else {
			err = fmt.Errorf("%w: nothing arrived for %v", ErrPeerUnresponsive, c.cfg.PingInterval+c.cfg.PongTimeout)
			c.close()
		}
	}
	c.readErr = err
	return err
}

// Write sends p as one or more binary messages of at most MaxMessage bytes.
// Concurrent Writes do not interleave their bytes.
//
// yamux writes a data frame as two writes, its 12-byte header and then its
// body. Write holds such a header back and sends it in one message with the
// start of the body that follows, which halves the messages (and system
// calls) of a busy tunnel. The reader sees the same bytes either way.
func (c *Conn) Write(p []byte) (int, error) {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if len(c.held) == 0 && isMuxDataHeader(p) {
		c.held = append(c.held, p...)
		return len(p), nil
	}
	written := 0
	for len(p) > 0 || len(c.held) > 0 {
		msg := p[:min(len(p), MaxMessage)]
		n := len(msg)
		if len(c.held) > 0 {
			n = min(len(p), MaxMessage-len(c.held))
			msg = append(c.held, p[:n]...)
		}
		_ = c.ws.SetWriteDeadline(c.writeDeadline())
		err := c.ws.WriteMessage(websocket.BinaryMessage, msg)
		c.held = c.held[:0]
		if err != nil {
			return written, c.writeFailed(err)
		}
		written += n
		p = p[n:]
	}
	return written, nil
}

// isMuxDataHeader reports whether p is exactly a yamux frame header of a
// data frame that announces a body (version 0, type 0, length > 0).
func isMuxDataHeader(p []byte) bool {
	return len(p) == muxHeaderSize && p[0] == 0 && p[1] == 0 && binary.BigEndian.Uint32(p[8:12]) > 0
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
// pinger. It returns once the pinger has ended.
func (c *Conn) Close() error {
	c.close()
	<-c.pingerStopped
	return c.closeErr
}

// close does the work of Close without waiting for the pinger, which calls
// it too.
func (c *Conn) close() {
	c.closeOnce.Do(func() {
		close(c.done)
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

// SetReadDeadline sets the read deadline; the liveness deadline still applies
// when it is earlier.
func (c *Conn) SetReadDeadline(t time.Time) error {
	if t.IsZero() {
		c.userReadDL.Store(0)
	} else {
		c.userReadDL.Store(t.UnixNano())
	}
	return c.applyReadDeadline()
}

// SetWriteDeadline sets the write deadline for data messages. It reaches a
// Write blocked in the socket at once.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	if t.IsZero() {
		c.userWriteDL.Store(0)
	} else {
		c.userWriteDL.Store(t.UnixNano())
	}
	// ws.SetWriteDeadline is not safe beside a running write; Write hands
	// the stored deadline to ws, and the socket's own deadline stops a
	// write that is blocked now.
	return c.ws.NetConn().SetWriteDeadline(t)
}

func (c *Conn) writeDeadline() time.Time {
	if u := c.userWriteDL.Load(); u != 0 {
		return time.Unix(0, u)
	}
	return time.Time{}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
