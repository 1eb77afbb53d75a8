package client

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/hashicorp/yamux"

	"github.com/hookrelay/hookrelay/protocol"
)

// maxQueuedStreams bounds the delivery streams a session may hold beyond
// Concurrency while they wait for a slot. The relay respects
// Hello.Concurrency, so the queue only fills when a draining session still
// holds slots or the relay misbehaves.
const maxQueuedStreams = 256

// goodbyeTimeout bounds the wait for the relay to end a session after the
// agent closed its control stream.
const goodbyeTimeout = time.Second

// tunnel is one session with the relay: the WebSocket, the yamux session on
// it, the control stream and the deliveries it carries.
type tunnel struct {
	a       *Agent
	sess    *yamux.Session
	ctrl    *yamux.Stream
	ctrlMu  sync.Mutex // one writer of ctrl after the handshake
	welcome *protocol.Welcome

	deliverCtx    context.Context    // the context of requests to the target
	cancelDeliver context.CancelFunc // ends them: the session is gone
	handlers      chan struct{}      // a token per stream being handled
	stopping      chan struct{}      // closed when deliveries are no longer taken
	wg            sync.WaitGroup     // every goroutine of this tunnel

	mu     sync.Mutex    // guards the three fields below
	active int           // deliveries holding a slot
	closed bool          // stopping has been closed
	idle   chan struct{} // closed when stopping and active is 0

	closeOnce sync.Once
}

// sessionEnd says why a session ended.
type sessionEnd struct {
	err   error
	drain bool // the relay asked for a reconnect elsewhere
	fatal bool // the relay sent an error a reconnect cannot fix
}

// connect dials the relay, starts a yamux session and runs the hello/welcome
// handshake.
func (a *Agent) connect(ctx context.Context) (*tunnel, error) {
	dialStart := time.Now()
	ws, err := dialTunnel(ctx, a.cfg.Dialer, a.tunnelURL, a.cfg.Token, a.cfg.AgentVersion)
	if err != nil {
		return nil, err
	}
	// The dial took two round trips or more (TCP, the upgrade, TLS): half
	// of it is a round trip at most, which sizes the window.
	window := protocol.StreamWindowFor(time.Since(dialStart) / 2)
	a.log.Debug("tunnel open", "dial", time.Since(dialStart), "stream_window", window)
	conn := protocol.NewConn(ws, protocol.ConnConfig{})
	sess, err := protocol.ClientWindow(conn, logWriter{a.log}, window)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("start session: %w", err)
	}
	deliverCtx, cancel := context.WithCancel(context.Background())
	t := &tunnel{
		a:             a,
		sess:          sess,
		deliverCtx:    deliverCtx,
		cancelDeliver: cancel,
		handlers:      make(chan struct{}, a.cfg.Concurrency+maxQueuedStreams),
		stopping:      make(chan struct{}),
		idle:          make(chan struct{}),
	}
	if err := t.handshake(ctx); err != nil {
		t.close()
		return nil, err
	}
	return t, nil
}

// dialTunnel opens the WebSocket of /tunnel at wsURL and checks its
// subprotocol. A refusal before the upgrade comes back as the relay's error.
func dialTunnel(ctx context.Context, d *websocket.Dialer, wsURL, token, agentVersion string) (*websocket.Conn, error) {
	header := http.Header{"User-Agent": {"hookrelay-agent/" + agentVersion}}
	if token != "" {
		header.Set("Authorization", "Bearer "+token)
	}
	dialer := *d
	dialer.Subprotocols = []string{protocol.Subprotocol}
	ws, resp, err := dialer.DialContext(ctx, wsURL, header)
	if err != nil {
		if resp != nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10)) // gorilla kept at most 1 KiB
			resp.Body.Close()
			return nil, httpError(resp, body)
		}
		if via := ProxyFor(dialer.Proxy, wsURL); via != "" {
			return nil, fmt.Errorf("dial %s through proxy %s: %w", wsURL, via, err)
		}
		return nil, fmt.Errorf("dial %s: %w", wsURL, err)
	}
	if got := ws.Subprotocol(); got != protocol.Subprotocol {
		ws.Close()
		return nil, fatalError{fmt.Errorf("relay at %s did not accept WebSocket subprotocol %s (got %q): is it a hookrelay relay?",
			wsURL, protocol.Subprotocol, got)}
	}
	return ws, nil
}

// CheckTunnel opens the tunnel's WebSocket as an agent does (token,
// subprotocol, TLS, proxy) and closes it at once: a check that the relay
// takes tunnels from here. It returns the URL it dialed and the proxy it
// went through ("" for none).
func CheckTunnel(ctx context.Context, serverURL, token string, tlsConfig *tls.Config, proxy ProxyFunc) (wsURL, via string, err error) {
	wsURL, err = tunnelURL(serverURL)
	if err != nil {
		return "", "", err
	}
	d := *websocket.DefaultDialer
	d.HandshakeTimeout, d.Proxy, d.TLSClientConfig = handshakeTimeout, proxy, tlsConfig
	ws, err := dialTunnel(ctx, &d, wsURL, token, "doctor")
	if err != nil {
		return wsURL, ProxyFor(proxy, wsURL), err
	}
	_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	return wsURL, ProxyFor(proxy, wsURL), ws.Close()
}

// handshake opens the control stream, sends Hello and reads the answer. The
// session is closed if ctx ends first.
func (t *tunnel) handshake(ctx context.Context) error {
	done := make(chan struct{})
	var watch sync.WaitGroup
	watch.Go(func() {
		select {
		case <-ctx.Done():
			t.sess.Close()
		case <-done:
		}
	})
	defer watch.Wait()
	defer close(done)

	ctrl, err := t.sess.OpenStream()
	if err != nil {
		return fmt.Errorf("open control stream: %w", err)
	}
	t.ctrl = ctrl
	_ = ctrl.SetDeadline(time.Now().Add(handshakeTimeout)) // yamux streams never fail it
	cfg := t.a.cfg
	hello := &protocol.ControlMessage{Type: protocol.TypeHello, Hello: &protocol.Hello{
		Version:       protocol.Version,
		AgentVersion:  cfg.AgentVersion,
		Host:          cfg.Host,
		Concurrency:   cfg.Concurrency,
		Subscriptions: cfg.Subscriptions,
	}}
	writeErr := protocol.WriteControl(ctrl, hello)
	// Read the answer even when the write failed: a relay that refuses the
	// hello closes the session at once, and yamux may report that to the
	// write although the relay's error is waiting on the stream.
	m, readErr := protocol.ReadControl(ctrl)
	switch {
	case readErr == nil && m.Type == protocol.TypeError:
		return relayError(m.Error)
	case writeErr != nil:
		return fmt.Errorf("send hello: %w", writeErr)
	case readErr != nil:
		return fmt.Errorf("read welcome: %w", readErr)
	case m.Type != protocol.TypeWelcome:
		return fmt.Errorf("relay answered hello with %q instead of welcome", m.Type)
	}
	t.welcome = m.Welcome
	_ = ctrl.SetDeadline(time.Time{})
	return nil
}

// serve runs the control reader and the accept loop until the session ends
// or ctx is done, and says why it ended. The caller then calls shutdown or
// close.
func (t *tunnel) serve(ctx context.Context) sessionEnd {
	ended := make(chan sessionEnd, 1)
	t.wg.Go(func() { ended <- t.readControl() })
	t.wg.Go(t.acceptLoop)
	if t.a.cfg.Handler == nil {
		t.wg.Go(t.reportHealth)
	}
	select {
	case <-ctx.Done():
		return sessionEnd{err: ctx.Err()}
	case end := <-ended:
		return end
	}
}

// readControl reads control messages until the stream ends or one ends the
// session. Messages of unknown types are skipped, as newer relays may send
// them (SPEC.md, 5.6).
func (t *tunnel) readControl() sessionEnd {
	for {
		m, err := protocol.ReadControl(t.ctrl)
		switch {
		case errors.Is(err, protocol.ErrUnknownType):
			t.a.log.Debug("ignoring control message", "err", err)
			continue
		case errors.Is(err, io.EOF):
			return sessionEnd{err: errors.New("the connection to the relay ended")}
		case err != nil:
			return sessionEnd{err: fmt.Errorf("control stream: %w", err)}
		}
		switch m.Type {
		case protocol.TypeDrain:
			reason := m.Drain
			if reason == "" {
				reason = "the relay is going away"
			}
			return sessionEnd{err: errors.New(reason), drain: true}
		case protocol.TypeError:
			err := relayError(m.Error)
			t.a.out.relayError(err)
			return sessionEnd{err: err, fatal: isFatal(err)}
		case protocol.TypeGroupState:
			t.a.groupState(m.GroupState)
		default:
			t.a.log.Debug("ignoring control message", "type", m.Type)
		}
	}
}

// reportHealth tells the relay how the targets are doing (SPEC.md 5.7):
// once after the welcome and again at every change, until the session ends
// or stops taking deliveries.
func (t *tunnel) reportHealth() {
	targets := t.a.targets
	for {
		changed := targets.changes()
		if h := targets.health(); len(h.Targets) > 0 {
			if err := t.writeControl(&protocol.ControlMessage{Type: protocol.TypeHealth, Health: h}); err != nil {
				if !t.sess.IsClosed() {
					t.a.log.Debug("send health to the relay", "err", err)
				}
				return
			}
		}
		select {
		case <-changed:
		case <-t.stopping:
			return
		case <-t.sess.CloseChan():
			return
		}
	}
}

// writeControl writes one control message after the handshake.
func (t *tunnel) writeControl(m *protocol.ControlMessage) error {
	t.ctrlMu.Lock()
	defer t.ctrlMu.Unlock()
	_ = t.ctrl.SetWriteDeadline(time.Now().Add(handshakeTimeout))
	return protocol.WriteControl(t.ctrl, m)
}

// acceptLoop accepts delivery streams at once (yamux closes the relay's
// session when a stream stays unacknowledged) and hands each to a goroutine
// that waits for a delivery slot.
func (t *tunnel) acceptLoop() {
	for {
		select {
		case t.handlers <- struct{}{}:
		case <-t.sess.CloseChan():
			return
		}
		st, err := t.sess.AcceptStream()
		if err != nil {
			<-t.handlers
			if !t.sess.IsClosed() {
				t.a.log.Warn("accept delivery stream", "err", err)
			}
			return
		}
		t.wg.Go(func() {
			defer func() { <-t.handlers }()
			t.handle(st)
		})
	}
}

// handle delivers one stream, or refuses it when the tunnel stops first.
func (t *tunnel) handle(st *yamux.Stream) {
	defer st.Close()
	select {
	case t.a.sem <- struct{}{}:
	case <-t.stopping:
		t.refuse(st)
		return
	case <-t.sess.CloseChan():
		return
	}
	defer func() { <-t.a.sem }()
	if !t.begin() {
		t.refuse(st)
		return
	}
	defer t.end()
	t.deliver(st)
}

// begin counts a delivery in flight unless the tunnel is stopping.
func (t *tunnel) begin() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.active++
	return true
}

func (t *tunnel) end() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.active--
	if t.closed && t.active == 0 {
		close(t.idle)
	}
}

// stopAccepting refuses new deliveries: yamux resets streams opened after
// the GoAway, and streams already accepted are answered agent_stopping.
func (t *tunnel) stopAccepting() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	t.closed = true
	close(t.stopping)
	if t.active == 0 {
		close(t.idle)
	}
	// GoAway waits for the send; close unblocks it if the network is stuck.
	t.wg.Go(func() {
		if err := t.sess.GoAway(); err != nil && !t.sess.IsClosed() {
			t.a.log.Debug("send go away", "err", err)
		}
	})
}

// shutdown stops taking deliveries, waits for those in flight for up to
// limit (or grace once ctx is done, if that comes first), then closes the
// session and waits for every goroutine.
func (t *tunnel) shutdown(ctx context.Context, limit, grace time.Duration) {
	t.stopAccepting()
	limitTimer := time.NewTimer(limit)
	defer limitTimer.Stop()
	ctxDone := ctx.Done()
	var graceC <-chan time.Time
wait:
	for {
		select {
		case <-t.idle:
			break wait
		case <-limitTimer.C:
			break wait
		case <-ctxDone:
			ctxDone = nil
			graceTimer := time.NewTimer(grace)
			defer graceTimer.Stop()
			graceC = graceTimer.C
		case <-graceC:
			break wait
		}
	}
	t.close()
}

// close ends the deliveries' requests, says goodbye, closes the session
// and waits for the tunnel's goroutines.
func (t *tunnel) close() {
	t.closeOnce.Do(func() {
		t.cancelDeliver()
		t.goodbye()
		t.sess.Close()
	})
	t.wg.Wait()
}

// goodbye closes the control stream and waits a little for the relay to
// end the session, as it does when its control stream ends: the relay has
// then let go of this agent (its group, its slots) before Run returns, and
// a new agent of the same group is not mistaken for this one.
func (t *tunnel) goodbye() {
	if t.ctrl == nil || t.sess.IsClosed() {
		return
	}
	t.ctrlMu.Lock()
	_ = t.ctrl.Close()
	t.ctrlMu.Unlock()
	timer := time.NewTimer(goodbyeTimeout)
	defer timer.Stop()
	select {
	case <-t.sess.CloseChan():
	case <-timer.C:
		t.a.log.Debug("the relay did not end the session after goodbye")
	}
}

// relayMessage extracts the message of a JSON error body
// {"error": "...", "code": "..."}, or returns the body as text.
func relayMessage(body []byte) string {
	var e struct {
		Error string `json:"error"`
		Code  string `json:"code"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		if e.Code != "" {
			return fmt.Sprintf("%s (%s)", e.Error, e.Code)
		}
		return e.Error
	}
	if s := strings.TrimSpace(string(body)); s != "" {
		return s
	}
	return "no message"
}

// logWriter sends yamux's log lines to slog at debug level: they mostly
// repeat why a session ended, which the agent reports itself.
type logWriter struct{ log *slog.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	w.log.Debug(strings.TrimSpace(string(p)))
	return len(p), nil
}
