package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/protocol"
)

func TestNewValidates(t *testing.T) {
	t.Parallel()
	good := Config{
		ServerURL:     "http://127.0.0.1:8080",
		Subscriptions: []Subscription{{Channel: "ch1"}},
		Target:        "http://localhost:3000/webhooks",
	}
	if _, err := New(good); err != nil {
		t.Fatalf("New(good): %v", err)
	}
	tests := []struct {
		name   string
		change func(*Config)
	}{
		{"no subscription", func(c *Config) { c.Subscriptions = nil }},
		{"empty channel", func(c *Config) { c.Subscriptions = []Subscription{{}} }},
		{"bad from", func(c *Config) { c.Subscriptions = []Subscription{{Channel: "c", From: "later"}} }},
		{"twice", func(c *Config) { c.Subscriptions = []Subscription{{Channel: "c"}, {Channel: "c"}} }},
		{"relative target", func(c *Config) { c.Target = "/webhooks" }},
		{"target without scheme", func(c *Config) { c.Target = "localhost:3000" }},
		{"ftp target", func(c *Config) { c.Target = "ftp://localhost/x" }},
		{"target with credentials", func(c *Config) { c.Target = "http://u:p@localhost:3000/" }},
		{"no relay", func(c *Config) { c.ServerURL = "" }},
		{"relay scheme", func(c *Config) { c.ServerURL = "tcp://relay:1" }},
		{"negative concurrency", func(c *Config) { c.Concurrency = -1 }},
		{"negative timeout", func(c *Config) { c.RequestTimeout = -time.Second }},
	}
	for _, tt := range tests {
		cfg := good
		tt.change(&cfg)
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New accepted %+v", tt.name, cfg)
		}
	}
}

func TestTunnelURL(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"http://relay:8080":           "ws://relay:8080/tunnel",
		"https://relay.example/":      "wss://relay.example/tunnel",
		"https://relay.example/r?x=1": "wss://relay.example/r/tunnel",
		"ws://relay":                  "ws://relay/tunnel",
	} {
		if got, err := tunnelURL(in); err != nil || got != want {
			t.Errorf("tunnelURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestBackoffDelay(t *testing.T) {
	t.Parallel()
	initial, maxDelay := 100*time.Millisecond, 2*time.Second
	for attempt := 1; attempt <= 12; attempt++ {
		ceiling := min(initial<<(attempt-1), maxDelay)
		for range 200 {
			if d := backoffDelay(initial, maxDelay, attempt); d < 0 || d >= ceiling {
				t.Fatalf("attempt %d: delay %s outside [0, %s)", attempt, d, ceiling)
			}
		}
	}
	if d := backoffDelay(initial, maxDelay, 1000); d >= maxDelay {
		t.Errorf("attempt 1000: delay %s not capped at %s", d, maxDelay)
	}
}

func TestHello(t *testing.T) {
	t.Parallel()
	relay := newFakeRelay(t, nil)
	cfg := testConfig(t, relay, "http://127.0.0.1:1/")
	cfg.Subscriptions = []Subscription{{Channel: "ch1", Group: "ci", From: "now"}, {Channel: "ch2"}}
	cfg.Concurrency = 7
	out := cfg.Out.(*syncBuffer)
	agent := startAgent(t, cfg)
	agent.waitConnected(t)
	rs := relay.next(t)
	h := rs.hello
	if h.Version != protocol.Version || h.AgentVersion != "test" || h.Host != "test-host" || h.Concurrency != 7 ||
		len(h.Subscriptions) != 2 || h.Subscriptions[0] != cfg.Subscriptions[0] {
		t.Errorf("hello %+v", h)
	}
	if auth := <-relay.auths; auth != "Bearer "+relay.token {
		t.Errorf("Authorization %q", auth)
	}
	st := agent.State()
	if st.Status != StatusConnected || st.SessionID != "sess-1" || len(st.Channels) != 2 {
		t.Errorf("state %+v", st)
	}
	want := fmt.Sprintf("connected to %s: channel ch1 (group ci) %s/h/ch1 → http://127.0.0.1:1/", relay.srv.URL, relay.srv.URL)
	waitFor(t, "the connected line", func() bool { return strings.Contains(out.String(), want) })
}

func TestUnauthorized(t *testing.T) {
	t.Parallel()
	relay := newFakeRelay(t, nil)
	cfg := testConfig(t, relay, "http://127.0.0.1:1/")
	cfg.Token = "wrong"
	agent := startAgent(t, cfg)
	err := agent.wait(t)
	if !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("Run = %v, want ErrUnauthorized", err)
	}
	if want := "relay answered 401: the token was rejected; check --token or HOOKRELAY_TOKEN"; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	if st := agent.State(); st.Status != StatusStopped || st.Err == nil {
		t.Errorf("state %+v", st)
	}
}

func TestFatalRelayErrors(t *testing.T) {
	t.Parallel()
	for _, code := range []string{protocol.CodeChannelNotFound, protocol.CodeVersionMismatch, protocol.CodeUnauthorized} {
		t.Run(code, func(t *testing.T) {
			t.Parallel()
			relay := newFakeRelay(t, func(*protocol.Hello) *protocol.Error {
				return &protocol.Error{Code: code, Message: "no"}
			})
			agent := startAgent(t, testConfig(t, relay, "http://127.0.0.1:1/"))
			err := agent.wait(t)
			var perr *protocol.Error
			if !errors.As(err, &perr) || perr.Code != code {
				t.Fatalf("Run = %v, want a %s error", err, code)
			}
			if code == protocol.CodeUnauthorized && !errors.Is(err, ErrUnauthorized) {
				t.Errorf("Run = %v, want ErrUnauthorized", err)
			}
			if n := relay.hellos.Load(); n != 1 {
				t.Errorf("%d hellos, want 1: a fatal error must not be retried", n)
			}
		})
	}
}

func TestRetriesOtherRelayErrors(t *testing.T) {
	t.Parallel()
	relay := newFakeRelay(t, func(*protocol.Hello) *protocol.Error {
		return &protocol.Error{Code: protocol.CodeInternal, Message: "database is down"}
	})
	cfg := testConfig(t, relay, "http://127.0.0.1:1/")
	out := cfg.Out.(*syncBuffer)
	agent := startAgent(t, cfg)
	waitFor(t, "three hellos", func() bool { return relay.hellos.Load() >= 3 })
	if err := agent.stop(t); err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
	if !strings.Contains(out.String(), "(attempt 2): relay error: internal: database is down") {
		t.Errorf("output lacks the reconnect line:\n%s", out)
	}
}

func TestReconnectsAfterSessionEnds(t *testing.T) {
	t.Parallel()
	target, _ := recordingTarget(t)
	relay := newFakeRelay(t, nil)
	var mu sync.Mutex
	var statuses []Status
	cfg := testConfig(t, relay, target.URL)
	cfg.OnState = func(s State) {
		mu.Lock()
		defer mu.Unlock()
		statuses = append(statuses, s.Status)
	}
	agent := startAgent(t, cfg)
	agent.waitConnected(t)
	first := relay.next(t)
	first.sess.Close()

	second := relay.next(t)
	if n := relay.hellos.Load(); n != 2 {
		t.Errorf("%d hellos, want 2", n)
	}
	agent.waitConnected(t)
	resp, _ := second.mustDeliver(t, newRequest("evt-2", "POST", "/"), nil)
	if resp.Status != 200 {
		t.Errorf("response on the new session %+v", resp)
	}
	if err := agent.stop(t); err != nil {
		t.Errorf("Run = %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []Status{StatusConnecting, StatusConnected, StatusReconnecting, StatusConnected, StatusStopping, StatusStopped}
	if fmt.Sprint(statuses) != fmt.Sprint(want) {
		t.Errorf("states %v, want %v", statuses, want)
	}
}

// blockingTarget holds every request until release is closed, and counts
// the requests it holds at once.
type blockingTarget struct {
	*httptest.Server
	arrived chan string // event ids
	release chan struct{}
	active  atomic.Int32
	peak    atomic.Int32
}

func newBlockingTarget(t *testing.T) *blockingTarget {
	bt := &blockingTarget{arrived: make(chan string, 256), release: make(chan struct{})}
	bt.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		n := bt.active.Add(1)
		defer bt.active.Add(-1)
		for {
			peak := bt.peak.Load()
			if n <= peak || bt.peak.CompareAndSwap(peak, n) {
				break
			}
		}
		bt.arrived <- r.Header.Get(HeaderEventID)
		select {
		case <-bt.release:
			w.WriteHeader(http.StatusAccepted)
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(bt.Close)
	t.Cleanup(bt.open) // before Close: let held handlers end
	return bt
}

func (bt *blockingTarget) open() {
	select {
	case <-bt.release:
	default:
		close(bt.release)
	}
}

func (bt *blockingTarget) waitArrived(t *testing.T) string {
	t.Helper()
	select {
	case id := <-bt.arrived:
		return id
	case <-time.After(testTimeout):
		t.Fatal("no request reached the target")
		return ""
	}
}

type delivered struct {
	resp *protocol.DeliveryResponse
	err  error
}

// deliverAsync delivers on its own goroutine, which the test waits for by
// receiving from the returned channel.
func deliverAsync(rs *relaySession, req *protocol.DeliveryRequest, body []byte) <-chan delivered {
	ch := make(chan delivered, 1)
	go func() {
		resp, _, err := rs.deliver(req, body)
		ch <- delivered{resp, err}
	}()
	return ch
}

func TestConcurrencyBound(t *testing.T) {
	t.Parallel()
	const limit = 3
	target := newBlockingTarget(t)
	relay := newFakeRelay(t, nil)
	cfg := testConfig(t, relay, target.URL)
	cfg.Concurrency = limit
	agent := startAgent(t, cfg)
	agent.waitConnected(t)
	rs := relay.next(t)
	var results []<-chan delivered
	for i := range 3 * limit {
		results = append(results, deliverAsync(rs, newRequest(fmt.Sprint("evt-", i), "POST", "/"), []byte("x")))
	}
	for range limit {
		target.waitArrived(t)
	}
	// All 3×limit streams are open; only limit requests may be at the target.
	waitFor(t, "the agent to hold the other streams", func() bool { return rs.sess.NumStreams() >= 3*limit })
	if n := target.active.Load(); n != limit {
		t.Errorf("%d requests at the target, want %d", n, limit)
	}
	target.open()
	for _, ch := range results {
		if d := <-ch; d.err != nil || d.resp.Status != http.StatusAccepted {
			t.Errorf("delivery: %+v %v", d.resp, d.err)
		}
	}
	if p := target.peak.Load(); p != limit {
		t.Errorf("peak of %d requests at the target, want %d", p, limit)
	}
}

func TestShutdownFinishesInFlight(t *testing.T) {
	t.Parallel()
	target := newBlockingTarget(t)
	relay := newFakeRelay(t, nil)
	cfg := testConfig(t, relay, target.URL)
	cfg.ShutdownGrace = testTimeout
	agent := startAgent(t, cfg)
	agent.waitConnected(t)
	rs := relay.next(t)
	result := deliverAsync(rs, newRequest("evt-inflight", "POST", "/"), []byte("payload"))
	target.waitArrived(t)

	agent.cancel()
	waitFor(t, "the stopping state", func() bool { return agent.State().Status == StatusStopping })
	// New deliveries are refused now, by yamux or by the agent.
	if resp, _, err := rs.deliver(newRequest("evt-late", "POST", "/"), nil); err == nil && resp.ErrorCode != protocol.ErrCodeAgentStopping {
		t.Errorf("late delivery answered %+v, want refused", resp)
	}
	select {
	case <-agent.done:
		t.Fatal("Run returned with a delivery in flight")
	default:
	}
	target.open()
	if err := agent.wait(t); err != nil {
		t.Errorf("Run = %v", err)
	}
	d := <-result
	if d.err != nil || d.resp.Status != http.StatusAccepted {
		t.Errorf("in-flight delivery: %+v %v", d.resp, d.err)
	}
}

func TestShutdownGraceEnds(t *testing.T) {
	t.Parallel()
	target := newBlockingTarget(t)
	relay := newFakeRelay(t, nil)
	cfg := testConfig(t, relay, target.URL)
	cfg.ShutdownGrace = 50 * time.Millisecond
	agent := startAgent(t, cfg)
	agent.waitConnected(t)
	rs := relay.next(t)
	result := deliverAsync(rs, newRequest("evt-stuck", "POST", "/"), []byte("x"))
	target.waitArrived(t)
	if err := agent.stop(t); err != nil { // returns although the target never answers
		t.Errorf("Run = %v", err)
	}
	// The session may end before the answer is written; if it is, the
	// request was started, so it is no agent_stopping.
	if d := <-result; d.err == nil && d.resp.ErrorCode != protocol.ErrCodeTarget {
		t.Errorf("stuck delivery answered %+v", d.resp)
	}
}

// TestDrain: the relay asks the agent to leave; it reconnects at once (the
// backoff is an hour) while the old session finishes its delivery.
func TestDrain(t *testing.T) {
	t.Parallel()
	target := newBlockingTarget(t)
	relay := newFakeRelay(t, nil)
	cfg := testConfig(t, relay, target.URL)
	cfg.InitialBackoff, cfg.MaxBackoff = time.Hour, time.Hour
	agent := startAgent(t, cfg)
	agent.waitConnected(t)
	old := relay.next(t)
	result := deliverAsync(old, newRequest("evt-old", "POST", "/"), []byte("x"))
	target.waitArrived(t)

	if err := protocol.WriteControl(old.ctrl, &protocol.ControlMessage{Type: protocol.TypeDrain, Drain: "relay restarting"}); err != nil {
		t.Fatal(err)
	}
	fresh := relay.next(t)
	agent.waitConnected(t)
	target.open()
	if d := <-result; d.err != nil || d.resp.Status != http.StatusAccepted {
		t.Errorf("delivery on the draining session: %+v %v", d.resp, d.err)
	}
	resp, _ := fresh.mustDeliver(t, newRequest("evt-new", "POST", "/"), nil)
	if resp.Status != http.StatusAccepted {
		t.Errorf("delivery on the new session: %+v", resp)
	}
	waitFor(t, "the old session to close", old.sess.IsClosed)
}

func TestRunTwice(t *testing.T) {
	t.Parallel()
	relay := newFakeRelay(t, nil)
	agent := startAgent(t, testConfig(t, relay, "http://127.0.0.1:1/"))
	agent.waitConnected(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := agent.Run(ctx); err == nil {
		t.Error("second Run returned nil")
	}
}

// TestHTTPRefusals: SPEC.md section 1. 400 and 403 stop the agent with the
// relay's message; 429 and 5xx are retried.
func TestHTTPRefusals(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		status int
		fatal  bool
	}{
		{http.StatusBadRequest, true},
		{http.StatusForbidden, true},
		{http.StatusTooManyRequests, false},
		{http.StatusServiceUnavailable, false},
	} {
		t.Run(fmt.Sprint(tt.status), func(t *testing.T) {
			t.Parallel()
			relay := newFakeRelay(t, nil)
			relay.status = func() int { return tt.status }
			agent := startAgent(t, testConfig(t, relay, "http://127.0.0.1:1/"))
			if tt.fatal {
				err := agent.wait(t)
				if want := fmt.Sprintf("relay answered %d: refused with %d (test)", tt.status, tt.status); err == nil || err.Error() != want {
					t.Errorf("Run = %v, want %q", err, want)
				}
				return
			}
			waitFor(t, "three attempts", func() bool { return relay.hellos.Load() >= 3 })
			if st := agent.State(); st.Status != StatusReconnecting || !strings.Contains(fmt.Sprint(st.Err), "refused with") {
				t.Errorf("state %+v", st)
			}
			if err := agent.stop(t); err != nil {
				t.Errorf("Run = %v", err)
			}
		})
	}
}

// TestDrainingRefusal: a relay that answers hello with draining is retried
// at once, whatever the backoff.
func TestDrainingRefusal(t *testing.T) {
	t.Parallel()
	var refused atomic.Bool
	relay := newFakeRelay(t, func(*protocol.Hello) *protocol.Error {
		if refused.CompareAndSwap(false, true) {
			return &protocol.Error{Code: protocol.CodeDraining, Message: "shutting down"}
		}
		return nil
	})
	cfg := testConfig(t, relay, "http://127.0.0.1:1/")
	cfg.InitialBackoff, cfg.MaxBackoff = time.Hour, time.Hour
	agent := startAgent(t, cfg)
	agent.waitConnected(t)
	if n := relay.hellos.Load(); n != 2 {
		t.Errorf("%d hellos, want 2", n)
	}
}

// TestUnknownControlMessage: a control message of a type this agent does
// not know is skipped; the session goes on.
func TestUnknownControlMessage(t *testing.T) {
	t.Parallel()
	target, _ := recordingTarget(t)
	relay := newFakeRelay(t, nil)
	agent := startAgent(t, testConfig(t, relay, target.URL))
	agent.waitConnected(t)
	rs := relay.next(t)
	if err := protocol.WriteFrame(rs.ctrl, map[string]any{"type": "from_the_future", "x": 1}, protocol.MaxControlFrame); err != nil {
		t.Fatal(err)
	}
	if err := protocol.WriteControl(rs.ctrl, &protocol.ControlMessage{Type: protocol.TypeSubscribed,
		Subscribed: []protocol.ChannelInfo{{Channel: "ch9", Group: "g", URL: "u"}}}); err != nil {
		t.Fatal(err)
	}
	if resp, _ := rs.mustDeliver(t, newRequest("evt-after", "POST", "/"), nil); resp.Status != 200 {
		t.Errorf("response %+v", resp)
	}
	if n := relay.hellos.Load(); n != 1 || agent.State().Status != StatusConnected {
		t.Errorf("%d hellos, state %v: the agent reconnected", n, agent.State().Status)
	}
}

// TestRelayErrorEndsSession: an error on the control stream after the
// welcome ends the session; a fatal code stops the agent.
func TestRelayErrorEndsSession(t *testing.T) {
	t.Parallel()
	relay := newFakeRelay(t, nil)
	cfg := testConfig(t, relay, "http://127.0.0.1:1/")
	out := cfg.Out.(*syncBuffer)
	agent := startAgent(t, cfg)
	agent.waitConnected(t)
	// The agent may read an error and end the session before yamux returns
	// from writing it, which then reports the session's end: the outcome
	// below says whether the message arrived.
	rs := relay.next(t)
	_ = protocol.WriteControl(rs.ctrl, &protocol.ControlMessage{Type: protocol.TypeError,
		Error: &protocol.Error{Code: protocol.CodeInternal, Message: "store failed"}})
	rs = relay.next(t) // reconnected
	_ = protocol.WriteControl(rs.ctrl, &protocol.ControlMessage{Type: protocol.TypeError,
		Error: &protocol.Error{Code: protocol.CodeRevoked, Message: "token revoked"}})
	if err := agent.wait(t); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("Run = %v, want ErrUnauthorized", err)
	}
	if !strings.Contains(out.String(), "relay error: internal: store failed") {
		t.Errorf("output:\n%s", out)
	}
}
