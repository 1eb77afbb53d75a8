package e2e

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/client"
	"github.com/hookrelay/hookrelay/protocol"
	"github.com/hookrelay/hookrelay/server"
	"github.com/hookrelay/hookrelay/server/store"
	"github.com/hookrelay/hookrelay/server/store/memstore"
	"github.com/hookrelay/hookrelay/server/store/sqlite"
)

// BenchmarkThroughputStoreVsMemory sends the load of
// BenchmarkThroughput32Senders1KiB through two relays in one run, one on
// the SQLite store and one on memstore, and reports both rates and their
// ratio (sqlite ÷ memory): what durable storage costs the relay.
//
//	go test ./e2e -run '^$' -bench StoreVsMemory -benchtime 3x
func BenchmarkThroughputStoreVsMemory(b *testing.B) {
	st, err := sqlite.Open(filepath.Join(b.TempDir(), "hookrelay.db"), sqlite.Options{})
	if err != nil {
		b.Fatalf("open store: %v", err)
	}
	alternate(b, &relayRun{name: "sqlite", url: startRelayOnStore(b, st)},
		&relayRun{name: "memory", url: startRelayOnStore(b, memstore.New(store.Limits{}))})
}

// relayRun is one relay of an alternated throughput comparison.
type relayRun struct {
	name string // the prefix of its metric
	url  string // the ingress URL of a channel with an agent
	rate float64
}

// alternate sends the load of BenchmarkThroughput32Senders1KiB (32
// senders, 1 KiB bodies, 3,000 webhooks) through each relay in turn, b.N
// rounds, and reports each one's mean rate (NAME-req/s) and the first's ÷
// the second's (FIRST/SECOND).
func alternate(b *testing.B, runs ...*relayRun) {
	body := bytes.Repeat([]byte("x"), 1024)
	const senders, total = 32, 3000
	for _, run := range runs {
		blast(b, run.url, senders, 200, body) // warm up connections
	}
	order := slices.Clone(runs)
	for b.Loop() {
		for _, run := range order {
			r, _ := blast(b, run.url, senders, total, body)
			run.rate += r
		}
		// Alternate which relay goes first, so neither always meets the
		// other's leftovers (garbage, a WAL checkpoint).
		slices.Reverse(order)
	}
	for _, run := range runs {
		b.ReportMetric(run.rate/float64(b.N), run.name+"-req/s")
	}
	b.ReportMetric(runs[0].rate/runs[1].rate, runs[0].name+"/"+runs[1].name)
}

// startRelayOnStore starts a relay on st (on 127.0.0.1), a target that
// answers 200 at once, and an agent forwarding a new channel to the target;
// it returns the channel's ingress URL once the relay lists the agent. At
// cleanup the agent, the relay and the target stop, in that order, and st
// is closed.
func startRelayOnStore(tb testing.TB, st store.Store) string {
	tb.Helper()
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusOK)
	}))
	tb.Cleanup(target.Close)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = st.Close()
		tb.Fatalf("listen: %v", err)
	}
	r, err := server.New(server.Config{Store: st, AdminToken: adminToken, ResponseTimeout: 10 * time.Second})
	if err != nil {
		_ = ln.Close()
		_ = st.Close()
		tb.Fatalf("new relay: %v", err)
	}
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- r.Serve(ctx, ln) }()
	tb.Cleanup(func() {
		stop()
		if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
			tb.Errorf("relay serve: %v", err)
		}
		if err := r.Close(); err != nil {
			tb.Errorf("close relay: %v", err)
		}
		if err := st.Close(); err != nil {
			tb.Errorf("close store: %v", err)
		}
	})

	url := "http://" + ln.Addr().String()
	api := client.NewAPI(url, adminToken)
	ch, err := api.CreateChannel(context.Background(), client.CreateChannel{})
	if err != nil {
		tb.Fatalf("create channel: %v", err)
	}
	agent, err := client.New(client.Config{
		ServerURL:     url,
		Token:         adminToken,
		Subscriptions: []protocol.Subscription{{Channel: ch.ID}},
		Target:        target.URL,
		Out:           io.Discard,
	})
	if err != nil {
		tb.Fatalf("new agent: %v", err)
	}
	agentCtx, stopAgent := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- agent.Run(agentCtx) }()
	tb.Cleanup(func() {
		stopAgent()
		if err := <-ran; err != nil {
			tb.Errorf("agent run: %v", err)
		}
	})
	waitFor(tb, 10*time.Second, "agent connected", func() bool {
		var out struct {
			Agents []agentJSON `json:"agents"`
		}
		err := api.Do(context.Background(), http.MethodGet, "/api/v1/channels/"+ch.ID+"/agents", nil, &out)
		return err == nil && len(out.Agents) > 0
	})
	return url + "/h/" + ch.ID
}

// BenchmarkTunnelThroughput sends loads straight to a target and through a
// relay on memstore in one run and reports relay ÷ direct. With no disk in
// the path it measures what ingress, the tunnel and the agent cost; the
// gap to BenchmarkThroughput32Senders1KiB is the store's share.
//
//	go test ./e2e -run '^$' -bench TunnelThroughput -benchtime 3x
func BenchmarkTunnelThroughput(b *testing.B) {
	for _, load := range []struct {
		name           string
		senders, total int
		size           int
	}{
		{"32x1KiB", 32, 3000, 1 << 10},
		{"2x1MiB", 2, 100, 1 << 20},
	} {
		b.Run(load.name, func(b *testing.B) {
			target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				w.WriteHeader(http.StatusOK)
			}))
			b.Cleanup(target.Close)
			relayed := startRelayOnStore(b, memstore.New(store.Limits{}))
			body := bytes.Repeat([]byte("x"), load.size)
			blast(b, relayed, load.senders, 2*load.senders, body) // warm up connections
			blast(b, target.URL, load.senders, 2*load.senders, body)
			var m ratioMeter
			for b.Loop() {
				m.run(b, target.URL, relayed, load.senders, load.total, body)
			}
			m.report(b)
		})
	}
}
