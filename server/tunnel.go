package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"
	"github.com/gorilla/websocket"
	"github.com/hashicorp/yamux"

	"github.com/hookrelay/hookrelay/protocol"
	"github.com/hookrelay/hookrelay/server/dispatch"
	"github.com/hookrelay/hookrelay/server/store"
)

const handshakeTimeout = 10 * time.Second

// agentSession is one connected agent: a yamux session over a WebSocket.
type agentSession struct {
	id           string
	relay        *Relay
	principal    principal
	host         string
	agentVersion string
	baseURL      string // the relay's URL as the agent dialed it, for ingress URLs
	since        time.Time
	conn         *protocol.Conn
	sess         *yamux.Session
	slots        chan struct{} // one token per delivery in flight
	inflight     atomic.Int32
	draining     atomic.Bool // told to reconnect elsewhere: no new deliveries

	ctrlMu  sync.Mutex // one writer of the control stream
	control *yamux.Stream
	// The control stream is read on demand (wakeControl): an idle session
	// holds no goroutine for it.
	ctrlReading atomic.Bool // a readControl goroutine runs, or the session ended
	ctrlPoked   atomic.Bool // wakeControl was called: new input may be there

	healthMu sync.Mutex              // guards targets
	targets  []protocol.TargetHealth // the agent's last health message; nil: it sent none

	stateMu sync.Mutex                     // guards states, sending
	states  map[string]dispatch.GroupState // channel, group → the latest state not yet sent
	sending bool                           // a sendStates goroutine runs, or the handshake is not over

	closeOnce sync.Once
}

var wsUpgrader = websocket.Upgrader{
	// An idle session keeps its read buffer, so it is small: it holds the
	// frame headers (and control frames, up to 125 bytes), and longer
	// payloads are read straight into yamux's buffer. The write buffer is
	// lent from the pool for one message and holds a whole one, so that
	// each message is one system call.
	ReadBufferSize:  256,
	WriteBufferSize: protocol.MaxMessage,
	WriteBufferPool: &sync.Pool{},
	Subprotocols:    []string{protocol.Subprotocol},
	// tunnel checks the Origin before upgrading (Relay.sameOrigin).
	CheckOrigin: func(*http.Request) bool { return true },
	Error: func(w http.ResponseWriter, r *http.Request, status int, reason error) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = fmt.Fprintf(w, `{"error":%q,"code":"bad_upgrade"}`, reason.Error())
	},
}

// tunnel upgrades GET /tunnel to a WebSocket and runs the agent's session.
func (r *Relay) tunnel(c *gin.Context) {
	if !websocket.IsWebSocketUpgrade(c.Request) {
		abortJSON(c, http.StatusBadRequest, "bad_upgrade", "/tunnel expects a WebSocket upgrade from 'hookrelay connect'")
		return
	}
	offered := websocket.Subprotocols(c.Request)
	ok := false
	for _, p := range offered {
		ok = ok || p == protocol.Subprotocol
	}
	if !ok {
		abortJSON(c, http.StatusBadRequest, "version_mismatch",
			fmt.Sprintf("the agent did not offer subprotocol %s; upgrade hookrelay on the agent's machine", protocol.Subprotocol))
		return
	}
	// Agents are not browsers and send no Origin; a browser page on another
	// origin must not open a tunnel with a user's ambient credentials.
	if c.GetHeader("Origin") != "" && !r.sameOrigin(c.Request) {
		abortJSON(c, http.StatusForbidden, "bad_upgrade", "a browser page of another origin may not open a tunnel")
		return
	}
	// A place among the principal's tunnels is taken before the upgrade, so
	// that concurrent handshakes cannot pass the cap together.
	p := principalOf(c)
	limit, key := r.cfg.MaxAgentsPerToken, "max_agents_per_token"
	if p.Role == roleReader {
		limit, key = r.cfg.MaxAgentsPerReadKey, "max_agents_per_read_key"
	}
	if n, ok := r.hub.d.ReserveTunnel(p.TokenID, limit); !ok {
		abortJSON(c, http.StatusTooManyRequests, "limit_exceeded", fmt.Sprintf(
			"this token already has %d agents connected, the relay's %s; stop one or use another token", n, key))
		return
	}
	reserved := true
	defer func() {
		if reserved {
			r.hub.d.ReleaseTunnel(p.TokenID)
		}
	}()
	ws, err := wsUpgrader.Upgrade(c.Writer, c.Request, nil)
	if err != nil {
		return // the upgrader answered already
	}
	a := &agentSession{
		id:        newID("ses_"),
		relay:     r,
		principal: p,
		since:     time.Now().UTC(),
		baseURL:   strings.TrimSuffix(r.ingressURL(c.Request, ""), "/h/"),
		conn:      protocol.NewConn(ws, protocol.ConnConfig{}),
		sending:   true, // until run: no group state goes out before the welcome
	}
	if !r.hub.track(a.serve) {
		_ = a.conn.Close()
		return
	}
	reserved = false // serve releases it
}

// serve runs the handshake and registration, then returns: the session
// holds no goroutine of its own while idle. yamux's two goroutines carry
// it; the control stream is read by readControl, which wakeControl starts
// when the tunnel brought something in (protocol.Conn's notify) and which
// returns after controlIdle without a control message. The session keeps
// its place among the hub's jobs (hold) until finish.
func (a *agentSession) serve() {
	r := a.relay
	if !a.handshake() {
		a.end()
		return
	}
	if !r.hub.hold() { // the relay is closing
		r.hub.d.Unregister(a)
		a.end()
		return
	}
	r.remote.agentsChanged()
	r.metrics.agentsConnected.Inc()
	r.hub.track(a.sendStates) // what came during the handshake; ends at once when nothing did
	a.conn.SetNotify(a.wakeControl)
	a.wakeControl()
}

// finish is the end of a session that was running: the last readControl
// calls it once the control stream or the session has ended.
func (a *agentSession) finish() {
	r := a.relay
	a.conn.SetNotify(nil)
	r.log.Info("agent disconnected", "session", a.id)
	r.hub.d.Unregister(a)
	r.remote.agentsChanged() // after Unregister: the other nodes' lists
	r.metrics.agentsConnected.Dec()
	a.end()
	r.hub.release()
}

// controlIdle is how long readControl waits for a control message before
// it returns; wakeControl starts it again when the tunnel brings input.
const controlIdle = time.Second

// wakeControl starts readControl unless it runs. It is protocol.Conn's
// notify: it runs after every message the tunnel received was handed to
// yamux (so a control frame among them is in the control stream's buffer),
// and when the connection closes. It must not block.
func (a *agentSession) wakeControl() {
	a.ctrlPoked.Store(true)
	if a.ctrlReading.CompareAndSwap(false, true) {
		go a.readControl() // owned by the session, which the hub counts (hold) until finish
	}
}

// readControl handles control messages until none came for controlIdle,
// or, when the control stream or the session ended, finishes the session.
func (a *agentSession) readControl() {
	for {
		if !a.controlLoop() {
			a.finish() // ctrlReading stays set: no other readControl starts
			return
		}
		// Parked. A wakeControl since the poll in nextControl cleared
		// ctrlPoked may have found ctrlReading still set: look again.
		a.ctrlReading.Store(false)
		if !a.ctrlPoked.Load() || !a.ctrlReading.CompareAndSwap(false, true) {
			return
		}
	}
}

// nextControl reads the next control message. It reports idle, with no
// message, when none began within controlIdle and none is buffered.
func (a *agentSession) nextControl() (msg *protocol.ControlMessage, idle bool, err error) {
	var first [1]byte
	_ = a.control.SetReadDeadline(time.Now().Add(controlIdle))
	n, err := a.control.Read(first[:])
	if errors.Is(err, yamux.ErrTimeout) {
		// A poll: a wakeControl after this sees ctrlReading cleared or
		// ctrlPoked set (readControl), so no input is left unread.
		a.ctrlPoked.Store(false)
		_ = a.control.SetReadDeadline(time.Now())
		n, err = a.control.Read(first[:])
		if errors.Is(err, yamux.ErrTimeout) && !a.sess.IsClosed() {
			a.control.Shrink()
			return nil, true, nil
		}
		if errors.Is(err, yamux.ErrTimeout) {
			return nil, false, io.EOF // the session ended
		}
	}
	if err != nil {
		return nil, false, err
	}
	// A message has begun: the rest comes with it, within the handshake's bound.
	_ = a.control.SetReadDeadline(time.Now().Add(handshakeTimeout))
	msg, err = protocol.ReadControl(io.MultiReader(bytes.NewReader(first[:n]), a.control))
	a.control.Shrink() // an idle session keeps no drained receive buffer
	return msg, false, err
}

// end closes the session and gives back its place among the principal's
// tunnels.
func (a *agentSession) end() {
	a.close()
	a.relay.hub.d.ReleaseTunnel(a.principal.TokenID)
}

// handshake reads the hello, answers it, and on success registers the
// session and reports true. On failure the session is not registered.
func (a *agentSession) handshake() bool {
	r := a.relay
	sess, err := protocol.Server(a.conn, nil)
	if err != nil {
		r.log.Warn("start tunnel session", "err", err)
		return false
	}
	a.sess = sess
	ctx, cancel := context.WithTimeout(r.ctx, handshakeTimeout)
	ctrl, err := sess.AcceptStreamWithContext(ctx)
	cancel()
	if err != nil {
		r.log.Info("agent opened no control stream", "err", err)
		return false
	}
	// The control stream is the only one an agent may open: from now on
	// yamux resets any other at once, holding nothing for it.
	if err := sess.GoAway(); err != nil {
		return false
	}
	a.control = ctrl
	_ = ctrl.SetDeadline(time.Now().Add(handshakeTimeout))
	msg, err := protocol.ReadControl(ctrl)
	if err != nil {
		a.sendError(protocol.CodeBadRequest, "could not read hello: "+err.Error())
		return false
	}
	ctrl.Shrink() // yamux keeps a stream's drained receive buffer otherwise
	if msg.Type != protocol.TypeHello {
		a.sendError(protocol.CodeBadRequest, "the first control message must be hello, not "+msg.Type)
		return false
	}
	hello := msg.Hello
	if hello.Version != protocol.Version {
		a.sendControl(&protocol.ControlMessage{Type: protocol.TypeError, Error: protocol.VersionError(hello.Version)})
		return false
	}
	if len(hello.Subscriptions) == 0 {
		a.sendError(protocol.CodeBadRequest, "hello names no channel")
		return false
	}
	a.host, a.agentVersion = hello.Host, hello.AgentVersion
	concurrency := hello.Concurrency
	if concurrency <= 0 || concurrency > r.cfg.MaxConcurrency {
		concurrency = min(32, r.cfg.MaxConcurrency)
		if hello.Concurrency > r.cfg.MaxConcurrency {
			concurrency = r.cfg.MaxConcurrency
		}
	}
	a.slots = make(chan struct{}, concurrency)

	groups, infos, perr := a.resolve(hello.Subscriptions)
	if perr != nil {
		a.sendControl(&protocol.ControlMessage{Type: protocol.TypeError, Error: perr})
		return false
	}
	welcome := &protocol.ControlMessage{Type: protocol.TypeWelcome, Welcome: &protocol.Welcome{
		SessionID: a.id,
		Channels:  infos,
		Limits:    protocol.Limits{MaxBody: r.cfg.MaxBody, MaxConcurrency: concurrency},
		Node:      r.cfg.NodeName,
	}}
	// Register before the welcome: once the agent says "connected", the
	// relay must already deliver to it (sync senders check for agents).
	if !r.hub.d.Register(a, groups) {
		return false
	}
	if err := a.sendControl(welcome); err != nil {
		r.hub.d.Unregister(a)
		return false
	}
	_ = ctrl.SetDeadline(time.Time{})
	if err := a.refuseStrayStreams(); err != nil {
		r.log.Info("agent did not answer a ping after the handshake", "session", a.id, "err", err)
		r.hub.d.Unregister(a)
		return false
	}
	r.log.Info("agent connected", "session", a.id, "host", a.host, "version", a.agentVersion, "channels", len(infos))
	return true
}

// strayStreamWait bounds the wait for a stream already in the accept queue.
const strayStreamWait = 10 * time.Millisecond

// refuseStrayStreams closes the streams the agent opened besides the
// control stream before the GoAway reached it. A ping's answer comes after
// every frame the agent sent before it, so once it is back such streams
// sit in the accept queue (of one place; yamux reset the others).
func (a *agentSession) refuseStrayStreams() error {
	if _, err := a.sess.Ping(); err != nil {
		return err
	}
	for {
		ctx, cancel := context.WithTimeout(a.relay.ctx, strayStreamWait)
		st, err := a.sess.AcceptStreamWithContext(ctx)
		cancel()
		if err != nil {
			return nil
		}
		_ = st.Close()
	}
}

// resolve checks each subscription (the channel exists and the principal
// may read it) and finds or creates its group.
func (a *agentSession) resolve(subs []protocol.Subscription) ([]store.Group, []protocol.ChannelInfo, *protocol.Error) {
	r := a.relay
	ctx, cancel := context.WithTimeout(r.ctx, handshakeTimeout)
	defer cancel()
	var groups []store.Group
	var infos []protocol.ChannelInfo
	for _, s := range subs {
		ch, err := r.store.GetChannel(ctx, s.Channel)
		if err == nil && !a.principal.canAccess(ch) {
			err = store.ErrNotFound // other teams' channels do not exist for you
		}
		if err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return nil, nil, &protocol.Error{Code: protocol.CodeChannelNotFound,
					Message: fmt.Sprintf("channel %q does not exist; create it with 'hookrelay channel create'", s.Channel)}
			}
			return nil, nil, &protocol.Error{Code: protocol.CodeInternal, Message: "the relay's store failed: " + err.Error()}
		}
		name := s.Group
		if name == "" {
			name = protocol.DefaultGroup(a.principal.TokenID, a.host)
		}
		from := store.FromResume
		if s.From == "now" {
			from = store.FromNow
		}
		g, err := r.store.EnsureGroup(ctx, ch.ID, name, from)
		if err != nil {
			return nil, nil, &protocol.Error{Code: protocol.CodeInternal, Message: "the relay's store failed: " + err.Error()}
		}
		groups = append(groups, g)
		infos = append(infos, protocol.ChannelInfo{Channel: ch.ID, Group: name, URL: a.baseURL + "/h/" + ch.ID})
	}
	return groups, infos, nil
}

// controlLoop handles control messages until none comes for controlIdle
// (it reports true: the session goes on) or the stream or session ends
// (false).
func (a *agentSession) controlLoop() bool {
	for {
		msg, idle, err := a.nextControl()
		if idle {
			return true
		}
		if errors.Is(err, protocol.ErrUnknownType) {
			continue // a newer agent's message this relay does not know: ignored, as SPEC.md says
		}
		if errors.Is(err, io.EOF) {
			// The agent's goodbye: answer its close with ours before the
			// session ends. An agent whose half-closed control stream never
			// hears back keeps the stream, and with it the session and the
			// WebSocket's buffers, until yamux's StreamCloseTimeout.
			_ = a.control.Close()
			return false
		}
		if err != nil {
			if !a.sess.IsClosed() {
				a.sendError(protocol.CodeBadRequest, "bad control message: "+err.Error())
			}
			return false
		}
		switch msg.Type {
		case protocol.TypeSubscribe:
			groups, infos, perr := a.resolve(msg.Subscribe)
			if perr != nil {
				a.sendControl(&protocol.ControlMessage{Type: protocol.TypeError, Error: perr})
				continue
			}
			a.relay.hub.d.Join(a, groups)
			a.relay.remote.agentsChanged()
			a.sendControl(&protocol.ControlMessage{Type: protocol.TypeSubscribed, Subscribed: infos})
		case protocol.TypeUnsubscribe:
			a.relay.hub.d.Leave(a, unsubscribes(msg.Unsubscribe))
			a.relay.remote.agentsChanged()
		case protocol.TypeHealth:
			a.setHealth(msg.Health.Targets)
			if _, failing := a.health(); !failing {
				// A paused group of this agent need not wait for its next
				// probe: the agent found its targets up.
				a.relay.hub.d.TargetUp(a)
			}
		default:
			a.sendError(protocol.CodeBadRequest, "unexpected control message "+msg.Type)
			return false
		}
	}
}

// setHealth keeps what the agent said about its targets (SPEC.md 5.7).
func (a *agentSession) setHealth(targets []protocol.TargetHealth) {
	a.healthMu.Lock()
	defer a.healthMu.Unlock()
	a.targets = append([]protocol.TargetHealth{}, targets...)
}

// health returns the agent's targets and whether one of them is down; nil
// when the agent never said.
func (a *agentSession) health() ([]protocol.TargetHealth, bool) {
	a.healthMu.Lock()
	defer a.healthMu.Unlock()
	failing := false
	for _, t := range a.targets {
		failing = failing || !t.Up
	}
	return a.targets, failing
}

func (a *agentSession) sendControl(m *protocol.ControlMessage) error {
	a.ctrlMu.Lock()
	defer a.ctrlMu.Unlock()
	if a.control == nil {
		return errors.New("no control stream")
	}
	_ = a.control.SetWriteDeadline(time.Now().Add(handshakeTimeout))
	return protocol.WriteControl(a.control, m)
}

func (a *agentSession) sendError(code, msg string) {
	_ = a.sendControl(&protocol.ControlMessage{Type: protocol.TypeError, Error: &protocol.Error{Code: code, Message: msg}})
}

// close ends the session; serve then unregisters it.
func (a *agentSession) close() {
	a.closeOnce.Do(func() {
		if a.sess != nil {
			_ = a.sess.Close()
		}
		_ = a.conn.Close()
	})
}

// ID is the session id (dispatch.Agent).
func (a *agentSession) ID() string { return a.id }

// TryAcquire takes a delivery slot if one is free (dispatch.Agent).
func (a *agentSession) TryAcquire() bool {
	if a.draining.Load() {
		return false
	}
	select {
	case a.slots <- struct{}{}:
		a.inflight.Add(1)
		return true
	default:
		return false
	}
}

// Release gives back a slot (dispatch.Agent).
func (a *agentSession) Release() {
	a.inflight.Add(-1)
	<-a.slots
}

// FreeSlots counts the free delivery slots (dispatch.Agent).
func (a *agentSession) FreeSlots() int { return cap(a.slots) - len(a.slots) }

// GroupState tells the agent how one of its groups is doing
// (dispatch.Agent): sendStates writes it, the latest of each group only.
// It starts sendStates when none runs, so an idle session holds no
// goroutine for it.
func (a *agentSession) GroupState(st dispatch.GroupState) {
	a.stateMu.Lock()
	if a.states == nil {
		a.states = make(map[string]dispatch.GroupState)
	}
	a.states[st.ChannelID+"\x00"+st.Group] = st
	start := !a.sending
	a.sending = true
	a.stateMu.Unlock()
	if start && !a.relay.hub.track(a.sendStates) {
		a.stateMu.Lock()
		a.sending = false
		a.stateMu.Unlock()
	}
}

// sendStates writes the group states the workers handed over (GroupState)
// as group_state control messages, and returns when none is left or the
// control stream fails (the session is ending: no other starts then).
func (a *agentSession) sendStates() {
	for {
		a.stateMu.Lock()
		states := a.states
		a.states = nil
		a.sending = len(states) > 0
		a.stateMu.Unlock()
		if len(states) == 0 {
			return
		}
		for _, st := range states {
			if err := a.sendControl(&protocol.ControlMessage{Type: protocol.TypeGroupState, GroupState: groupStateMessage(st)}); err != nil {
				return
			}
		}
	}
}

// groupStateMessage is a group's state as SPEC.md 5.8 says it.
func groupStateMessage(st dispatch.GroupState) *protocol.GroupState {
	m := &protocol.GroupState{Channel: st.ChannelID, Group: st.Group, State: protocol.GroupFlowing}
	if st.Paused {
		m.State = protocol.GroupPaused
		m.RetryInMS = max(time.Until(st.NextTry), 0).Milliseconds()
		m.Error = truncateUTF8(st.Reason, 1024)
	}
	return m
}

// truncateUTF8 cuts s to at most n bytes without splitting a character.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// unsubscribes matches the groups an unsubscribe message names.
func unsubscribes(subs []protocol.Subscription) func(store.Group) bool {
	return func(g store.Group) bool {
		for _, s := range subs {
			if s.Channel == g.ChannelID && (s.Group == "" || s.Group == g.Name) {
				return true
			}
		}
		return false
	}
}

// Deliver runs one delivery on a new stream and returns the agent's answer
// (dispatch.Agent). An error means the agent never answered (it went away
// or broke the protocol); target failures come back as a response with
// Error set. body holds the req.BodyLength body bytes; Deliver does not
// keep it.
func (a *agentSession) Deliver(ctx context.Context, req *protocol.DeliveryRequest, body []byte) (*protocol.DeliveryResponse, []byte, error) {
	// Encoding checks req (the one check of the delivery on the relay)
	// before a stream is opened for it.
	frame, err := protocol.EncodeRequest(req, body)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", dispatch.ErrUndeliverable, err)
	}
	defer frame.Release()
	stream, err := a.sess.OpenStream()
	if errors.Is(err, yamux.ErrRemoteGoAway) {
		a.draining.Store(true)
		return nil, nil, dispatch.ErrAgentStopping
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%w: open stream: %v", dispatch.ErrAgentGone, err)
	}
	defer stream.Close()
	stop := context.AfterFunc(ctx, func() { _ = stream.SetDeadline(time.Now()) })
	defer stop()
	_ = stream.SetDeadline(time.Now().Add(a.relay.cfg.DeliveryTimeout))
	_, writeErr := frame.WriteTo(stream)
	frame.Release()
	if writeErr != nil {
		// yamux may report a write as failed when the session shut down
		// right after the agent had the bytes: the agent's answer can still
		// be in the stream's buffer, and it is the truth when it is there.
		_ = stream.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	}
	resp, err := protocol.ReadResponse(stream)
	if err != nil {
		if writeErr != nil {
			return nil, nil, fmt.Errorf("%w: send request: %v", dispatch.ErrAgentGone, writeErr)
		}
		return nil, nil, fmt.Errorf("%w: read response: %v", dispatch.ErrAgentGone, err)
	}
	if resp.ErrorCode == protocol.ErrCodeAgentStopping {
		a.draining.Store(true)
		return nil, nil, dispatch.ErrAgentStopping
	}
	if resp.BodyLength > a.relay.cfg.MaxBody {
		return nil, nil, fmt.Errorf("%w: response body of %d bytes is over max_body", dispatch.ErrAgentGone, resp.BodyLength)
	}
	// Grown as the bytes come, not allocated as announced: an agent that
	// announces 25 MiB and sends nothing holds nothing.
	buf := bytes.NewBuffer(make([]byte, 0, min(resp.BodyLength, 64<<10)))
	if _, err := io.CopyN(buf, stream, resp.BodyLength); err != nil {
		return nil, nil, fmt.Errorf("%w: read response body: %v", dispatch.ErrAgentGone, err)
	}
	return resp, buf.Bytes(), nil
}

// subscribes reports whether the session receives the channel's events.
func (a *agentSession) subscribes(channelID string) bool {
	return a.relay.hub.d.Subscribes(a.id, channelID)
}
