package loadtest

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/hookrelay/hookrelay/client"
	"github.com/hookrelay/hookrelay/server"
	"github.com/hookrelay/hookrelay/server/store/sqlite"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// Idle keep-alive connections of http.DefaultTransport (httptest).
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
	)
}

const adminToken = "hr_load_test_admin_token"

// startRelay runs a relay on 127.0.0.1 with SQLite in a temp dir and
// returns its base URL; it stops at cleanup.
func startRelay(t *testing.T) string {
	t.Helper()
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "hookrelay.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := server.New(server.Config{Store: st, AdminToken: adminToken, ResponseTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- r.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("relay serve: %v", err)
		}
		_ = r.Close()
		_ = st.Close()
	})
	return "http://" + ln.Addr().String()
}

func TestHistogramQuantiles(t *testing.T) {
	t.Parallel()
	var h histogram
	for i := 1; i <= 1000; i++ {
		h.add(time.Duration(i) * time.Millisecond)
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Millisecond}, {0.9, 900 * time.Millisecond}, {0.99, 990 * time.Millisecond}, {1, time.Second}} {
		got := h.quantile(tc.q)
		if diff := float64(got-tc.want) / float64(tc.want); diff < -0.01 || diff > 0.01 {
			t.Errorf("quantile(%v) = %v, want %v within 1%%", tc.q, got, tc.want)
		}
	}
	if h.min != time.Millisecond || h.max != time.Second {
		t.Errorf("min %v max %v", h.min, h.max)
	}
	var other histogram
	other.add(0)
	other.add(20 * time.Hour) // past the last bucket: counted there
	h.merge(&other)
	if h.n != 1002 || h.min != 0 || h.max != 20*time.Hour || h.quantile(1) != 20*time.Hour {
		t.Errorf("after merge: n %d min %v max %v q1 %v", h.n, h.min, h.max, h.quantile(1))
	}
	var empty histogram
	if empty.quantile(0.5) != 0 || empty.mean() != 0 {
		t.Error("an empty histogram has no quantiles")
	}
}

func TestParseMetrics(t *testing.T) {
	t.Parallel()
	in := `# HELP go_goroutines Number of goroutines.
# TYPE go_goroutines gauge
go_goroutines 42
go_memstats_heap_inuse_bytes 1.2345e+07
go_gc_duration_seconds{quantile="0.5"} 0.001
process_resident_memory_bytes 3.3e+07
garbage line
`
	m, err := ParseMetrics(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := Metrics{"go_goroutines": 42, "go_memstats_heap_inuse_bytes": 12345000, "process_resident_memory_bytes": 33e6}
	if len(m) != len(want) {
		t.Fatalf("got %v, want %v", m, want)
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v, want %v", k, m[k], v)
		}
	}
}

func TestSendConfigErrors(t *testing.T) {
	t.Parallel()
	for _, cfg := range []SendConfig{
		{},
		{URL: "ftp://x", Requests: 1},
		{URL: "http://127.0.0.1:1"},
		{URL: "http://127.0.0.1:1", Requests: -1},
	} {
		if _, err := Send(context.Background(), cfg); err == nil {
			t.Errorf("Send(%+v) did not fail", cfg)
		}
	}
}

// TestSendRelayAndDirect sends the same load through a real relay and agent
// and straight to the target, and compares the two.
func TestSendRelayAndDirect(t *testing.T) {
	t.Parallel()
	target := httptest.NewServer(TargetHandler(http.StatusOK, 0))
	t.Cleanup(target.Close)
	relayURL := startRelay(t)
	api := client.NewAPI(relayURL, adminToken)
	ch, err := api.CreateChannel(context.Background(), client.CreateChannel{})
	if err != nil {
		t.Fatal(err)
	}
	agent, err := client.New(client.Config{
		ServerURL: relayURL, Token: adminToken, Target: target.URL,
		Subscriptions: []client.Subscription{{Channel: ch.ID}},
		Out:           &strings.Builder{}, Host: "load-test",
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- agent.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-ran
	})
	select {
	case <-agent.Connected():
	case <-time.After(10 * time.Second):
		t.Fatalf("agent did not connect: %+v", agent.State())
	}

	cfg := SendConfig{URL: ch.URL, Concurrency: 8, Requests: 200, BodySize: 1024, Warmup: 16}
	relayed, err := Send(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.URL = target.URL
	direct, err := Send(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []*SendResult{relayed, direct} {
		if r.Responses != 200 || r.Errors != 0 || r.Status[http.StatusOK] != 200 {
			t.Errorf("%s: %d responses, %d errors (%s), status %v", r.URL, r.Responses, r.Errors, r.FirstError, r.Status)
		}
		if r.Rate() <= 0 || r.Latency(0.5) <= 0 || r.Latency(0.5) > r.Latency(0.99) || r.Latency(0.99) > r.MaxLatency() {
			t.Errorf("%s: rate %v, p50 %v, p99 %v, max %v", r.URL, r.Rate(), r.Latency(0.5), r.Latency(0.99), r.MaxLatency())
		}
	}
	cmp := Comparison{First: relayed, Second: direct}
	if cmp.ThroughputRatio() <= 0 {
		t.Errorf("ratio %v", cmp.ThroughputRatio())
	}
	var report strings.Builder
	_ = relayed.WriteReport(&report)
	_ = cmp.WriteReport(&report)
	for _, want := range []string{"8 senders, 1 KiB bodies", "200 answered", "req/s", "p50", "p99", "200 ×200", "errors    0", "first ÷ second: throughput"} {
		if !strings.Contains(report.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, report.String())
		}
	}
	t.Logf("\n%s", report.String())
}

func TestSendDurationAndErrors(t *testing.T) {
	t.Parallel()
	target := httptest.NewServer(TargetHandler(http.StatusTeapot, time.Millisecond))
	t.Cleanup(target.Close)
	res, err := Send(context.Background(), SendConfig{URL: target.URL, Concurrency: 4, Duration: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Responses == 0 || res.Status[http.StatusTeapot] != res.Responses || res.Elapsed < 100*time.Millisecond {
		t.Errorf("duration run: %d responses, status %v, elapsed %v", res.Responses, res.Status, res.Elapsed)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()
	res, err = Send(context.Background(), SendConfig{URL: closed, Concurrency: 2, Requests: 10})
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors != 10 || res.Responses != 0 || !strings.Contains(res.FirstError, "refused") {
		t.Errorf("closed port: %d errors (%s), %d responses", res.Errors, res.FirstError, res.Responses)
	}
	var report strings.Builder
	_ = res.WriteReport(&report)
	if !strings.Contains(report.String(), "errors    10 (first:") {
		t.Errorf("report:\n%s", report.String())
	}
}

// TestAgents connects a few idle agents to a real relay and reads its
// memory before and after.
func TestAgents(t *testing.T) {
	t.Parallel()
	relayURL := startRelay(t)
	var progress strings.Builder
	res, err := Agents(context.Background(), AgentsConfig{
		Server: relayURL, Token: adminToken, Count: 20, DialConcurrency: 5,
		Settle: 10 * time.Millisecond, Timeout: 20 * time.Second, Progress: &progress,
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	if res.Count != 20 || res.Channel == "" || res.ConnectTime <= 0 {
		t.Errorf("result %+v", res)
	}
	// Each agent costs the relay goroutines of its own (session, pinger,
	// control loop, group worker), and they end when it leaves.
	if per := res.PerAgent("go_goroutines"); per < 2 {
		t.Errorf("%.1f goroutines per agent; before %v with %v", per, res.Before["go_goroutines"], res.With["go_goroutines"])
	}
	if res.After["go_goroutines"] >= res.With["go_goroutines"] {
		t.Errorf("goroutines did not go down after the agents left: with %v after %v", res.With["go_goroutines"], res.After["go_goroutines"])
	}
	var report strings.Builder
	_ = res.WriteReport(&report)
	for _, want := range append([]string{"20 idle agents", "per agent", "heap+stack"}, MemoryMetrics[1:]...) {
		if !strings.Contains(report.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, report.String())
		}
	}
	t.Logf("\n%s%s", progress.String(), report.String())

	// The channel made for the run is gone.
	_, err = client.NewAPI(relayURL, adminToken).ListEvents(context.Background(), res.Channel, nil)
	if !client.IsStatus(err, http.StatusNotFound) {
		t.Errorf("the run's channel still exists: %v", err)
	}
}

func TestAgentsBadToken(t *testing.T) {
	t.Parallel()
	relayURL := startRelay(t)
	_, err := Agents(context.Background(), AgentsConfig{Server: relayURL, Token: "wrong", Count: 2, Settle: time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("wrong token: %v", err)
	}
	api := client.NewAPI(relayURL, adminToken)
	ch, err := api.CreateChannel(context.Background(), client.CreateChannel{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = Agents(context.Background(), AgentsConfig{Server: relayURL, Token: adminToken, Channel: ch.ID + "-nope", Count: 2})
	if err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("unknown channel: %v", err)
	}
}
