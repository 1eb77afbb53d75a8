package client

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/hashicorp/yamux"

	"github.com/hookrelay/hookrelay/protocol"
)

// testTimeout bounds every wait in these tests.
const testTimeout = 30 * time.Second

// fakeRelay is a small relay built from the real wire: an HTTP server with
// a WebSocket upgrader on /tunnel, protocol.Conn and a yamux server session.
// It answers each hello with a welcome (or with refuse's error) and hands the
// session to the test, which opens delivery streams on it.
type fakeRelay struct {
	t      *testing.T
	srv    *httptest.Server
	token  string
	refuse func(*protocol.Hello) *protocol.Error // nil answer: welcome
	// status, when set and not 0, is the HTTP status of a refused upgrade.
	status  func() int
	maxBody int64 // welcome.limits.max_body

	hellos   atomic.Int32
	auths    chan string // the Authorization header of each upgrade
	sessions chan *relaySession
	health   chan *protocol.Health // the agents' health messages

	mu  sync.Mutex
	all []*relaySession
}

// relaySession is the relay's side of one agent session.
type relaySession struct {
	sess  *yamux.Session
	ctrl  *yamux.Stream
	hello *protocol.Hello
}

func newFakeRelay(t *testing.T, refuse func(*protocol.Hello) *protocol.Error) *fakeRelay {
	t.Helper()
	r := &fakeRelay{
		t:        t,
		token:    "secret-token",
		refuse:   refuse,
		maxBody:  25 << 20,
		auths:    make(chan string, 64),
		sessions: make(chan *relaySession, 64),
		health:   make(chan *protocol.Health, 64),
	}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serveTunnel))
	t.Cleanup(func() {
		r.mu.Lock()
		all := r.all
		r.mu.Unlock()
		for _, rs := range all {
			rs.sess.Close()
		}
		r.srv.Close()
	})
	return r
}

func (r *fakeRelay) serveTunnel(w http.ResponseWriter, req *http.Request) {
	if req.URL.Path != "/tunnel" {
		http.Error(w, `{"error":"not found","code":"not_found"}`, http.StatusNotFound)
		return
	}
	select {
	case r.auths <- req.Header.Get("Authorization"):
	default:
	}
	if r.status != nil {
		if code := r.status(); code != 0 {
			r.hellos.Add(1) // counts attempts too
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			fmt.Fprintf(w, `{"error":"refused with %d","code":"test"}`, code)
			return
		}
	}
	if req.Header.Get("Authorization") != "Bearer "+r.token {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"error":"the token is not valid","code":"unauthorized"}`)
		return
	}
	up := websocket.Upgrader{Subprotocols: []string{protocol.Subprotocol}}
	ws, err := up.Upgrade(w, req, nil)
	if err != nil {
		r.t.Errorf("fake relay: upgrade: %v", err)
		return
	}
	sess, err := protocol.Server(protocol.NewConn(ws, protocol.ConnConfig{}), nil)
	if err != nil {
		r.t.Errorf("fake relay: session: %v", err)
		ws.Close()
		return
	}
	rs := &relaySession{sess: sess}
	r.mu.Lock()
	r.all = append(r.all, rs)
	r.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	// An agent stopped in its handshake ends the session before its hello.
	ctrl, err := sess.AcceptStreamWithContext(ctx)
	if err != nil {
		if !sess.IsClosed() {
			r.t.Errorf("fake relay: accept control stream: %v", err)
		}
		sess.Close()
		return
	}
	rs.ctrl = ctrl
	m, err := protocol.ReadControl(ctrl)
	if err != nil || m.Type != protocol.TypeHello {
		if !errors.Is(err, io.EOF) && !sess.IsClosed() {
			r.t.Errorf("fake relay: read hello: %v (%+v)", err, m)
		}
		sess.Close()
		return
	}
	r.hellos.Add(1)
	rs.hello = m.Hello
	if r.refuse != nil {
		if e := r.refuse(m.Hello); e != nil {
			_ = protocol.WriteControl(ctrl, &protocol.ControlMessage{Type: protocol.TypeError, Error: e})
			sess.Close() // as SPEC.md 5.1 says: an error ends the session
			return
		}
	}
	welcome := &protocol.Welcome{SessionID: fmt.Sprintf("sess-%d", r.hellos.Load()),
		Limits: protocol.Limits{MaxBody: r.maxBody, MaxConcurrency: m.Hello.Concurrency}}
	for _, s := range m.Hello.Subscriptions {
		group := s.Group
		if group == "" {
			group = "default"
		}
		welcome.Channels = append(welcome.Channels,
			protocol.ChannelInfo{Channel: s.Channel, Group: group, URL: r.srv.URL + "/h/" + s.Channel})
	}
	if err := protocol.WriteControl(ctrl, &protocol.ControlMessage{Type: protocol.TypeWelcome, Welcome: welcome}); err != nil {
		r.t.Errorf("fake relay: write welcome: %v", err)
		return
	}
	select {
	case r.sessions <- rs:
	default: // no test waits for that many sessions
	}
	// Like the relay, end the session when the agent closes its control
	// stream. Tests write control messages of their own meanwhile.
	for {
		m, err := protocol.ReadControl(ctrl)
		if err != nil && !errors.Is(err, protocol.ErrUnknownType) {
			sess.Close()
			return
		}
		if err == nil && m.Type == protocol.TypeHealth {
			select {
			case r.health <- m.Health:
			default:
			}
		}
	}
}

// next waits for the next welcomed session.
func (r *fakeRelay) next(t *testing.T) *relaySession {
	t.Helper()
	select {
	case rs := <-r.sessions:
		return rs
	case <-time.After(testTimeout):
		t.Fatal("no agent session arrived")
		return nil
	}
}

// deliver sends one delivery on a new stream and reads the whole response.
func (rs *relaySession) deliver(req *protocol.DeliveryRequest, body []byte) (*protocol.DeliveryResponse, []byte, error) {
	req.BodyLength = int64(len(body))
	st, err := rs.sess.OpenStream()
	if err != nil {
		return nil, nil, err
	}
	defer st.Close()
	_ = st.SetDeadline(time.Now().Add(testTimeout))
	if err := protocol.WriteRequest(st, req, body); err != nil {
		return nil, nil, fmt.Errorf("write request: %w", err)
	}
	return readDeliveryResponse(st)
}

func readDeliveryResponse(st io.Reader) (*protocol.DeliveryResponse, []byte, error) {
	resp, err := protocol.ReadResponse(st)
	if err != nil {
		return nil, nil, fmt.Errorf("read response: %w", err)
	}
	body := make([]byte, resp.BodyLength)
	if _, err := io.ReadFull(st, body); err != nil {
		return nil, nil, fmt.Errorf("read response body: %w", err)
	}
	return resp, body, nil
}

// mustDeliver is deliver that fails the test on a transport error.
func (rs *relaySession) mustDeliver(t *testing.T, req *protocol.DeliveryRequest, body []byte) (*protocol.DeliveryResponse, []byte) {
	t.Helper()
	resp, respBody, err := rs.deliver(req, body)
	if err != nil {
		t.Fatalf("deliver %s: %v", req.EventID, err)
	}
	return resp, respBody
}

// newRequest returns a delivery request with usual fields.
func newRequest(id, method, path string, headers ...protocol.Header) *protocol.DeliveryRequest {
	return &protocol.DeliveryRequest{
		EventID:    id,
		DeliveryID: "dlv-" + id,
		Attempt:    1,
		Channel:    "ch1",
		Method:     method,
		Path:       path,
		Headers:    headers,
		ReceivedAt: time.Date(2026, 11, 26, 10, 41, 2, 0, time.UTC),
		RemoteAddr: "203.0.113.7:51234",
	}
}

// syncBuffer is a bytes.Buffer safe for the agent's writes and the test's
// reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testConfig returns a config for an agent of relay that forwards to target.
func testConfig(t *testing.T, relay *fakeRelay, target string) Config {
	return Config{
		ServerURL:      relay.srv.URL,
		Token:          relay.token,
		Subscriptions:  []Subscription{{Channel: "ch1"}},
		Target:         target,
		Out:            &syncBuffer{},
		Logger:         slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
		AgentVersion:   "test",
		Host:           "test-host",
		InitialBackoff: 10 * time.Millisecond,
		MaxBackoff:     50 * time.Millisecond,
		RequestTimeout: 10 * time.Second,
	}
}

// runningAgent is an agent whose Run goroutine the test owns.
type runningAgent struct {
	*Agent
	cancel context.CancelFunc
	done   chan struct{}
	err    error // Run's result, set before done is closed
}

// startAgent runs an agent until the test ends or stop is called.
func startAgent(t *testing.T, cfg Config) *runningAgent {
	t.Helper()
	a, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ra := &runningAgent{Agent: a, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(ra.done)
		ra.err = a.Run(ctx)
	}()
	t.Cleanup(func() { ra.stop(t) })
	return ra
}

// stop cancels Run and waits for it to return.
func (ra *runningAgent) stop(t *testing.T) error {
	t.Helper()
	ra.cancel()
	return ra.wait(t)
}

// wait waits for Run to return.
func (ra *runningAgent) wait(t *testing.T) error {
	t.Helper()
	select {
	case <-ra.done:
		return ra.err
	case <-time.After(testTimeout):
		t.Fatal("Run did not return")
		return nil
	}
}

func (ra *runningAgent) waitConnected(t *testing.T) {
	t.Helper()
	select {
	case <-ra.Connected():
	case <-ra.done:
		t.Fatalf("Run returned before connecting: %v", ra.err)
	case <-time.After(testTimeout):
		t.Fatal("agent did not connect")
	}
}

// waitFor polls cond until it holds or the test times out.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

// rawTarget is a TCP server that records each request's bytes as sent: the
// request line, the header lines in order and the body. It answers 200 "ok"
// and closes the connection.
type rawTarget struct {
	ln   net.Listener
	reqs chan rawRequest
	wg   sync.WaitGroup
}

type rawRequest struct {
	line    string   // the request line
	headers []string // header lines as sent, in order
	body    []byte
	err     error
}

func newRawTarget(t *testing.T) *rawTarget {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rt := &rawTarget{ln: ln, reqs: make(chan rawRequest, 16)}
	rt.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			rt.wg.Go(func() { rt.serve(c) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		rt.wg.Wait()
	})
	return rt
}

func (rt *rawTarget) url() string { return "http://" + rt.ln.Addr().String() }

func (rt *rawTarget) serve(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(testTimeout))
	br := bufio.NewReader(c)
	var req rawRequest
	line, err := br.ReadString('\n')
	if err != nil {
		return // a connection opened and closed by the transport
	}
	req.line = strings.TrimSuffix(line, "\r\n")
	length := 0
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			req.err = err
			break
		}
		line = strings.TrimSuffix(line, "\r\n")
		if line == "" {
			break
		}
		req.headers = append(req.headers, line)
		if name, value, _ := strings.Cut(line, ":"); strings.EqualFold(name, "Content-Length") {
			length, _ = strconv.Atoi(strings.TrimSpace(value))
		}
	}
	if req.err == nil {
		req.body = make([]byte, length)
		_, req.err = io.ReadFull(br, req.body)
	}
	io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
	rt.reqs <- req
}

func (rt *rawTarget) next(t *testing.T) rawRequest {
	t.Helper()
	select {
	case r := <-rt.reqs:
		if r.err != nil {
			t.Fatalf("raw target: %v", r.err)
		}
		return r
	case <-time.After(testTimeout):
		t.Fatal("raw target got no request")
		return rawRequest{}
	}
}
