package e2e

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/client"
)

// blast sends total POSTs of body to url from senders goroutines and
// returns requests per second and the latency of each request.
func blast(tb testing.TB, url string, senders, total int, body []byte) (float64, []time.Duration) {
	tr := &http.Transport{MaxIdleConnsPerHost: senders, MaxConnsPerHost: senders}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	var next atomic.Int64
	lat := make([]time.Duration, total)
	var wg sync.WaitGroup
	var failures atomic.Int64
	start := time.Now()
	for range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(total) {
					return
				}
				t0 := time.Now()
				resp, err := hc.Post(url, "application/octet-stream", bytes.NewReader(body))
				if err != nil {
					failures.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					failures.Add(1)
				}
				lat[i] = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if f := failures.Load(); f > 0 {
		tb.Fatalf("%d of %d requests failed", f, total)
	}
	return float64(total) / elapsed.Seconds(), lat
}

// cpuTime is the CPU time (user and system) this process has used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// ratioMeter adds up rates and CPU time of direct and relayed rounds.
// Rates move with what else runs on the machine; CPU time per request
// (the process's: senders, relay, agent and target) moves much less, so
// its ratio says what relay ÷ direct would be on a machine of its own,
// where both are CPU-bound.
type ratioMeter struct {
	directRate, relayRate float64
	directCPU, relayCPU   time.Duration
	directN, relayN       int
}

// run sends one round straight to direct and one through relayed.
func (m *ratioMeter) run(b *testing.B, direct, relayed string, senders, total int, body []byte) {
	c0 := cpuTime()
	d, _ := blast(b, direct, senders, total, body)
	c1 := cpuTime()
	r, _ := blast(b, relayed, senders, total, body)
	c2 := cpuTime()
	m.directRate += d
	m.relayRate += r
	m.directCPU += c1 - c0
	m.relayCPU += c2 - c1
	m.directN += total
	m.relayN += total
}

func (m *ratioMeter) report(b *testing.B) {
	b.ReportMetric(m.directRate/float64(b.N), "direct-req/s")
	b.ReportMetric(m.relayRate/float64(b.N), "relay-req/s")
	b.ReportMetric(m.relayRate/m.directRate, "relay/direct")
	directCPU := float64(m.directCPU.Microseconds()) / float64(m.directN)
	relayCPU := float64(m.relayCPU.Microseconds()) / float64(m.relayN)
	b.ReportMetric(directCPU, "direct-cpu-µs/req")
	b.ReportMetric(relayCPU, "relay-cpu-µs/req")
	b.ReportMetric(directCPU/relayCPU, "cpu-direct/relay")
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// benchSetup starts a target that answers 200 at once, a relay and an agent.
func benchSetup(b *testing.B) (direct, relayed string) {
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusOK)
	}))
	b.Cleanup(target.Close)
	relay := startRelay(b)
	ch := relay.channel(b, client.CreateChannel{})
	relay.startAgent(b, ch, target.URL)
	return target.URL, relay.ingress(ch)
}

// BenchmarkThroughput32Senders1KiB sends the same load straight to the
// target and through relay+agent in one run and reports both rates and
// their ratio (relay ÷ direct).
//
//	go test ./e2e -run '^$' -bench Throughput -benchtime 3x
func BenchmarkThroughput32Senders1KiB(b *testing.B) {
	direct, relayed := benchSetup(b)
	body := bytes.Repeat([]byte("x"), 1024)
	const total = 3000
	blast(b, relayed, 32, 200, body) // warm up connections
	var directRate, relayRate float64
	for b.Loop() {
		d, _ := blast(b, direct, 32, total, body)
		r, _ := blast(b, relayed, 32, total, body)
		directRate += d
		relayRate += r
	}
	b.ReportMetric(directRate/float64(b.N), "direct-req/s")
	b.ReportMetric(relayRate/float64(b.N), "relay-req/s")
	b.ReportMetric(relayRate/directRate, "relay/direct")
}

// BenchmarkLatencyOneSender reports the median latency of one sender
// straight to the target and through the relay, and what the relay adds.
//
//	go test ./e2e -run '^$' -bench Latency -benchtime 3x
func BenchmarkLatencyOneSender(b *testing.B) {
	direct, relayed := benchSetup(b)
	body := bytes.Repeat([]byte("x"), 1024)
	const total = 500
	blast(b, relayed, 1, 50, body)
	var directMed, relayMed time.Duration
	for b.Loop() {
		_, dl := blast(b, direct, 1, total, body)
		_, rl := blast(b, relayed, 1, total, body)
		directMed += median(dl)
		relayMed += median(rl)
	}
	n := time.Duration(b.N)
	b.ReportMetric(float64((directMed / n).Microseconds()), "direct-p50-µs")
	b.ReportMetric(float64((relayMed / n).Microseconds()), "relay-p50-µs")
	b.ReportMetric(float64((relayMed/n - directMed/n).Microseconds()), "added-p50-µs")
}

// BenchmarkThroughput2Senders1MiB is BenchmarkThroughput32Senders1KiB
// with 1 MiB bodies from two senders: what large bodies cost. It also
// reports the process's CPU time per request each way and their ratio
// (cpu-direct/relay), which the machine's other load moves less.
//
//	go test ./e2e -run '^$' -bench 2Senders1MiB -benchtime 3x
func BenchmarkThroughput2Senders1MiB(b *testing.B) {
	direct, relayed := benchSetup(b)
	body := bytes.Repeat([]byte("x"), 1<<20)
	const total = 100
	blast(b, relayed, 2, 4, body)
	var m ratioMeter
	for b.Loop() {
		m.run(b, direct, relayed, 2, total, body)
	}
	m.report(b)
}
