package e2e

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/hookrelay/hookrelay/client"
	"github.com/hookrelay/hookrelay/protocol"
	"github.com/hookrelay/hookrelay/server"
	"github.com/hookrelay/hookrelay/server/store"
	"github.com/hookrelay/hookrelay/server/store/sqlite"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// net/http's idle keep-alive connections of the default transport.
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
	)
}

const adminToken = "hr_test_admin_token"

// relayEnv is a relay on 127.0.0.1 backed by SQLite in a temp dir, or by
// the store openStore opens.
type relayEnv struct {
	t         testing.TB
	openStore func() (store.Store, error) // called by every start
	addr      string
	URL       string
	Relay     *server.Relay
	store     store.Store
	cfg       server.Config
	stop      context.CancelFunc
	served    chan error
	stopped   bool
}

type relayOption func(*server.Config)

// startRelay starts a relay; it is stopped at cleanup.
func startRelay(t testing.TB, opts ...relayOption) *relayEnv {
	return startRelayDB(t, sqlite.Options{}, opts...)
}

// startRelayDB starts a relay whose store has the given options.
func startRelayDB(t testing.TB, dbOpts sqlite.Options, opts ...relayOption) *relayEnv {
	t.Helper()
	path := t.TempDir() + "/hookrelay.db"
	return startRelayOn(t, func() (store.Store, error) { return sqlite.Open(path, dbOpts) }, opts...)
}

// startRelayOn starts a relay on the store that open opens (again at each
// Restart).
func startRelayOn(t testing.TB, open func() (store.Store, error), opts ...relayOption) *relayEnv {
	t.Helper()
	e := &relayEnv{t: t, openStore: open}
	e.cfg = server.Config{AdminToken: adminToken, ResponseTimeout: 10 * time.Second}
	for _, o := range opts {
		o(&e.cfg)
	}
	e.start("127.0.0.1:0")
	t.Cleanup(e.Stop)
	return e
}

func (e *relayEnv) start(addr string) {
	e.t.Helper()
	st, err := e.openStore()
	if err != nil {
		e.t.Fatalf("open store: %v", err)
	}
	var ln net.Listener
	deadline := time.Now().Add(5 * time.Second)
	for {
		ln, err = net.Listen("tcp", addr)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond) // the old socket may linger for a moment after a restart
	}
	if err != nil {
		e.t.Fatalf("listen: %v", err)
	}
	cfg := e.cfg
	cfg.Store = st
	r, err := server.New(cfg)
	if err != nil {
		e.t.Fatalf("new relay: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.store, e.Relay, e.stop, e.stopped = st, r, cancel, false
	e.addr = ln.Addr().String()
	e.URL = "http://" + e.addr
	e.served = make(chan error, 1)
	go func() { e.served <- r.Serve(ctx, ln) }()
}

// Stop stops the relay (idempotent).
func (e *relayEnv) Stop() {
	if e.stopped {
		return
	}
	e.stopped = true
	e.stop()
	if err := <-e.served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		e.t.Errorf("relay serve: %v", err)
	}
	_ = e.Relay.Close()
	_ = e.store.Close()
}

// Restart stops the relay and starts a new one on the same address and data.
func (e *relayEnv) Restart() {
	e.Stop()
	e.start(e.addr)
}

func (e *relayEnv) api() *client.API { return client.NewAPI(e.URL, adminToken) }

// channel creates a channel and returns its id.
func (e *relayEnv) channel(t testing.TB, in client.CreateChannel) string {
	t.Helper()
	ch, err := e.api().CreateChannel(context.Background(), in)
	if err != nil {
		t.Fatalf("create channel: %v", err)
	}
	return ch.ID
}

// ingress is the channel's public URL.
func (e *relayEnv) ingress(channel string) string { return e.URL + "/h/" + channel }

// agentEnv is an agent running in the test process.
type agentEnv struct {
	Agent  *client.Agent
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	out    *syncBuffer
}

type agentOption func(*client.Config)

func group(name string) agentOption {
	return func(c *client.Config) {
		for i := range c.Subscriptions {
			c.Subscriptions[i].Group = name
		}
	}
}

// startAgent runs an agent for channel → target and waits until the relay
// lists it among the channel's agents.
func (e *relayEnv) startAgent(t testing.TB, channel, target string, opts ...agentOption) *agentEnv {
	t.Helper()
	out := &syncBuffer{}
	cfg := client.Config{
		ServerURL:     e.URL,
		Token:         adminToken,
		Subscriptions: []protocol.Subscription{{Channel: channel}},
		Target:        target,
		Out:           out,
		Host:          "test-host",
		AgentVersion:  "test",
		MaxBackoff:    500 * time.Millisecond,
		ShutdownGrace: 5 * time.Second,
	}
	for _, o := range opts {
		o(&cfg)
	}
	a, err := client.New(cfg)
	if err != nil {
		t.Fatalf("new agent: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ae := &agentEnv{Agent: a, cancel: cancel, done: make(chan error, 1), out: out}
	before := e.agentCount(t, channel)
	go func() { ae.done <- a.Run(ctx) }()
	t.Cleanup(ae.Stop)
	waitFor(t, 10*time.Second, "agent connected", func() bool { return e.agentCount(t, channel) > before })
	return ae
}

// Stop cancels the agent and waits for Run to return.
func (a *agentEnv) Stop() {
	a.once.Do(func() {
		a.cancel()
		<-a.done
	})
}

func (e *relayEnv) agentCount(t testing.TB, channel string) int {
	var out struct {
		Agents []agentJSON `json:"agents"`
	}
	err := e.api().Do(context.Background(), http.MethodGet, "/api/v1/channels/"+channel+"/agents", nil, &out)
	if err != nil {
		return -1
	}
	return len(out.Agents)
}

type agentJSON struct {
	Group string `json:"group"`
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// post sends a webhook and returns the response with its body read.
func post(t testing.TB, url, contentType string, body []byte) (*http.Response, []byte) {
	t.Helper()
	return do(t, http.MethodPost, url, map[string]string{"Content-Type": contentType}, body)
}

func do(t testing.TB, method, url string, headers map[string]string, body []byte) (*http.Response, []byte) {
	t.Helper()
	var r io.Reader
	if body != nil {
		r = strings.NewReader(string(body))
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// syncBuffer is an io.Writer safe for concurrent use (agent output).
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
