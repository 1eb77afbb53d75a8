package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/client"
	"github.com/hookrelay/hookrelay/protocol"
	"github.com/hookrelay/hookrelay/server"
)

// TestSoakNoGrowth is issue 9's long test: 100,000 webhooks and 1,000
// agent reconnects through one relay, in ten rounds, and the goroutines and
// the heap after GC must not grow from the end of the first round (the
// warm-up) to the end of the last. It runs only with HOOKRELAY_SOAK=1 and
// takes a few minutes:
//
//	HOOKRELAY_SOAK=1 go test -run TestSoakNoGrowth -v -timeout 20m ./e2e/
//
// The relay, the agents and the app all run in this process, so what is
// measured is the sum of the three at quiet moments: every webhook sent has
// reached the app, one agent is connected, idle HTTP connections are
// closed. HOOKRELAY_SOAK_WEBHOOKS and HOOKRELAY_SOAK_RECONNECTS change the
// totals (each is split over ten rounds); HOOKRELAY_SOAK_HEAPPROFILE=FILE
// writes a heap profile at the end, with everything still running, for
// `go tool pprof -sample_index=inuse_space`.
func TestSoakNoGrowth(t *testing.T) {
	if os.Getenv("HOOKRELAY_SOAK") != "1" {
		t.Skip("set HOOKRELAY_SOAK=1 to run the soak test (a few minutes)")
	}
	const rounds, senders = 10, 16
	webhooks, reconnects := soakCount(t, "HOOKRELAY_SOAK_WEBHOOKS", 100_000), soakCount(t, "HOOKRELAY_SOAK_RECONNECTS", 1_000)
	perRound, reconnectsPerRound := webhooks/rounds, reconnects/rounds

	received := make([]atomic.Bool, webhooks)
	var deliveries atomic.Int64
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if n, err := strconv.Atoi(string(b)); err == nil && n >= 0 && n < len(received) {
			received[n].Store(true)
		}
		deliveries.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(app.Close)
	relay := startRelay(t, func(c *server.Config) { c.ResponseTimeout = 2 * time.Second })
	ch := relay.channel(t, client.CreateChannel{})

	// One agent at a time, replaced reconnectsPerRound times a round. Its
	// output is dropped: a test buffer would grow with every delivery.
	var agent *soakAgent
	connect := func() {
		agent = startSoakAgent(t, relay.URL, ch, app.URL)
		waitFor(t, 30*time.Second, "agent connected", func() bool { return relay.agentCount(t, ch) == 1 })
	}
	reconnect := func() {
		agent.stop()
		waitFor(t, 30*time.Second, "agent gone", func() bool { return relay.agentCount(t, ch) == 0 })
		connect()
	}
	connect()
	t.Cleanup(func() { agent.stop() })

	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: senders}}
	t.Cleanup(hc.CloseIdleConnections)
	statuses := map[int]int{}
	var statusMu sync.Mutex

	type figures struct {
		goroutines int
		heap       uint64
	}
	quiet := func(sent int) figures {
		t.Helper()
		waitFor(t, 2*time.Minute, "every webhook sent delivered", func() bool {
			for i := range sent {
				if !received[i].Load() {
					return false
				}
			}
			return true
		})
		hc.CloseIdleConnections()
		// Goroutines of closed connections end shortly; take the count
		// once it stops falling.
		var f figures
		f.goroutines = runtime.NumGoroutine()
		for range 50 {
			runtime.GC()
			time.Sleep(20 * time.Millisecond)
			n := runtime.NumGoroutine()
			if n >= f.goroutines {
				break
			}
			f.goroutines = n
		}
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		f.heap = ms.HeapAlloc
		return f
	}

	start := time.Now()
	var warm, last figures
	for round := range rounds {
		roundStart := time.Now()
		var next atomic.Int64
		next.Store(int64(round * perRound))
		end := int64((round + 1) * perRound)
		var wg sync.WaitGroup
		for range senders {
			wg.Go(func() {
				for i := next.Add(1) - 1; i < end; i = next.Add(1) - 1 {
					status, err := soakPost(hc, relay.ingress(ch), i)
					if err != nil {
						t.Errorf("webhook %d: %v", i, err)
						return
					}
					statusMu.Lock()
					statuses[status]++
					statusMu.Unlock()
				}
			})
		}
		// The agent is replaced while the senders send.
		for range reconnectsPerRound {
			reconnect()
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		last = quiet(int(end))
		t.Logf("round %d: %d webhooks and %d reconnects in %s; %d goroutines, heap %.1f MiB after GC",
			round+1, perRound, reconnectsPerRound, time.Since(roundStart).Round(time.Millisecond),
			last.goroutines, float64(last.heap)/(1<<20))
		if round == 0 {
			warm = last
		}
	}
	statusMu.Lock()
	t.Logf("%d webhooks, %d reconnects, %d deliveries (at least once), in %s; answers %v",
		webhooks, reconnects, deliveries.Load(), time.Since(start).Round(time.Millisecond), statuses)
	statusMu.Unlock()
	if path := os.Getenv("HOOKRELAY_SOAK_HEAPPROFILE"); path != "" {
		writeHeapProfile(t, path)
	}
	t.Logf("after warm-up: %d goroutines, heap %.1f MiB; at the end: %d goroutines, heap %.1f MiB",
		warm.goroutines, float64(warm.heap)/(1<<20), last.goroutines, float64(last.heap)/(1<<20))
	// Tolerances: a few goroutines of connections still closing, and heap
	// noise of a few MiB (pools, caches that are bounded).
	if last.goroutines > warm.goroutines+10 {
		t.Errorf("goroutines grew from %d after warm-up to %d at the end", warm.goroutines, last.goroutines)
	}
	if limit := warm.heap + warm.heap/2 + 8<<20; last.heap > limit {
		t.Errorf("heap after GC grew from %.1f MiB after warm-up to %.1f MiB at the end (limit %.1f MiB)",
			float64(warm.heap)/(1<<20), float64(last.heap)/(1<<20), float64(limit)/(1<<20))
	}
}

func writeHeapProfile(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	runtime.GC()
	if err := pprof.WriteHeapProfile(f); err != nil {
		t.Fatal(err)
	}
}

func soakCount(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 10 {
		t.Fatalf("%s=%q: want a whole number of at least 10", name, v)
	}
	return n
}

// soakPost sends webhook n (its body is n) and returns the status.
func soakPost(hc *http.Client, url string, n int64) (int, error) {
	resp, err := hc.Post(url, "text/plain", bytes.NewReader(strconv.AppendInt(nil, n, 10)))
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNoContent, http.StatusAccepted:
		return resp.StatusCode, nil
	}
	return resp.StatusCode, fmt.Errorf("status %d", resp.StatusCode)
}

// soakAgent is an agent run by the soak test, with its output dropped.
type soakAgent struct {
	cancel context.CancelFunc
	done   chan error
}

func startSoakAgent(t *testing.T, relayURL, channel, target string) *soakAgent {
	t.Helper()
	a, err := client.New(client.Config{
		ServerURL:     relayURL,
		Token:         adminToken,
		Subscriptions: []protocol.Subscription{{Channel: channel}},
		Target:        target,
		Out:           io.Discard,
		Host:          "soak-host",
		AgentVersion:  "test",
		MaxBackoff:    500 * time.Millisecond,
		ShutdownGrace: 5 * time.Second,
	})
	if err != nil {
		t.Fatalf("new agent: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	sa := &soakAgent{cancel: cancel, done: make(chan error, 1)}
	go func() { sa.done <- a.Run(ctx) }()
	return sa
}

func (a *soakAgent) stop() {
	if a.cancel != nil {
		a.cancel()
		<-a.done
		a.cancel = nil
	}
}
