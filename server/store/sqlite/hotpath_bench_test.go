package sqlite

import (
	"crypto/rand"
	"encoding/base32"
	"fmt"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/server/store"
)

var benchIDEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// randomID is an id of 128 random bits, as the relay made them before
// time-ordered ids.
func randomID(prefix string) string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return prefix + benchIDEncoding.EncodeToString(b[:])
}

// cpuTime is the CPU time (user and system) the process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkHotPath writes what one synchronous webhook costs the store:
// its event (appended by 16 senders at once, as ingress does) and, per 8
// events, one progress write of their deliveries (as a group's worker
// does), with ids made as the relay makes them. It reports the process's
// CPU time per event (cpu-µs/event), the figure the relay's profile
// charges to the writer, besides the wall time. Compare ids=random (ids
// of 128 random bits, whose index inserts land on random pages) with
// ids=ordered (time-ordered ids, whose inserts land on the last page).
func BenchmarkHotPath(b *testing.B) {
	for _, size := range []int{1 << 10, 1 << 20} {
		for _, ids := range []struct {
			name string
			make func(string) string
		}{{"random", randomID}, {"ordered", store.NewID}} {
			b.Run(fmt.Sprintf("body=%dKiB/ids=%s", size>>10, ids.name), func(b *testing.B) {
				benchmarkHotPath(b, size, ids.make, Options{})
			})
		}
	}
}

// BenchmarkHotPathPages compares the page size of a new file (4 KiB,
// SQLite's default, and 16 KiB, the store's) and the checkpoint goroutine
// against SQLite's automatic checkpoint in the writer's commits, with 1 KiB
// bodies from one sender and 1 MiB bodies from 16.
func BenchmarkHotPathPages(b *testing.B) {
	for _, tc := range []struct {
		size, parallelism int
	}{{1 << 10, 1}, {1 << 20, 8}} {
		for _, pageSize := range []int{4096, 16384} {
			for _, auto := range []bool{false, true} {
				name := fmt.Sprintf("body=%dKiB/senders=%d/page=%d/autocheckpoint=%v", tc.size>>10,
					tc.parallelism*runtime.GOMAXPROCS(0), pageSize, auto)
				b.Run(name, func(b *testing.B) {
					benchmarkHotPathN(b, tc.size, store.NewID, Options{pageSize: pageSize, noCheckpointer: auto}, tc.parallelism)
				})
			}
		}
	}
}

func benchmarkHotPath(b *testing.B, size int, newID func(string) string, opts Options) {
	benchmarkHotPathN(b, size, newID, opts, 8)
}

// benchmarkHotPathN runs BenchmarkHotPath's load with parallelism
// goroutines per GOMAXPROCS appending.
func benchmarkHotPathN(b *testing.B, size int, newID func(string) string, opts Options, parallelism int) {
	ctx := b.Context()
	s := openTest(b, filepath.Join(b.TempDir(), "hookrelay.db"), opts)
	if err := s.CreateChannel(ctx, store.Channel{ID: "c"}); err != nil {
		b.Fatal(err)
	}
	g, err := s.EnsureGroup(ctx, "c", "g", store.FromResume)
	if err != nil {
		b.Fatal(err)
	}
	// Some history, so that the id indexes have more than a few pages.
	warm := func(n int) {
		for range n / 256 {
			var wg sync.WaitGroup
			for range 256 {
				wg.Go(func() {
					e := &store.Event{ID: newID("evt_"), ChannelID: "c", Method: "POST", Path: "/", Body: []byte("{}")}
					if err := s.AppendEvent(ctx, e); err != nil {
						b.Error(err)
					}
				})
			}
			wg.Wait()
		}
	}
	warm(20000)
	body := make([]byte, size)
	_, _ = rand.Read(body)
	headers := []store.Header{{Name: "Host", Value: "relay.example"}, {Name: "User-Agent", Value: "GitHub-Hookshot/abc"},
		{Name: "Content-Type", Value: "application/json"}, {Name: "X-GitHub-Event", Value: "push"},
		{Name: "X-GitHub-Delivery", Value: "72d3162e-cc78-11e3-81ab-4c9367dc0958"},
		{Name: "X-Hub-Signature-256", Value: "sha256=d57c68ca6f92289e6987922ff26938930f6e66a2d161ef06abdf1859230aa23c"}}
	results := make(chan store.Delivery, 64)
	var progress sync.WaitGroup
	progress.Go(func() { // the group's worker: one progress write per 8 deliveries
		var batch []store.Delivery
		flush := func() {
			if len(batch) == 0 {
				return
			}
			p := store.Progress{GroupID: g.ID, Deliveries: batch, DoneThrough: batch[len(batch)-1].EventSeq, SeenAt: time.Now()}
			if err := s.RecordProgress(ctx, p); err != nil {
				b.Error(err)
			}
			batch = nil
		}
		for d := range results {
			if batch = append(batch, d); len(batch) == 8 {
				flush()
			}
		}
		flush()
	})
	b.SetParallelism(parallelism)
	cpu0, batches0, jobs0 := cpuTime(b), s.batches.Load(), s.batchedJobs.Load()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			e := &store.Event{ID: newID("evt_"), ChannelID: "c", Method: "POST", Path: "/hook", Headers: headers,
				Body: body, RemoteAddr: "192.0.2.1", ReceivedAt: time.Now()}
			if err := s.AppendEvent(ctx, e); err != nil {
				b.Error(err)
				return
			}
			results <- store.Delivery{ID: newID("dlv_"), EventID: e.ID, EventSeq: e.Seq, ChannelID: "c", GroupName: "g",
				AgentID: "ses_1", Attempt: 1, StartedAt: time.Now(), Duration: time.Millisecond, Status: 200, Done: true,
				ResponseHeaders: []store.Header{{Name: "Content-Type", Value: "text/plain"}}, ResponseBody: []byte("ok")}
		}
	})
	close(results)
	progress.Wait()
	b.StopTimer()
	b.ReportMetric(float64((cpuTime(b)-cpu0).Microseconds())/float64(b.N), "cpu-µs/event")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(s.batchedJobs.Load()-jobs0)/float64(s.batches.Load()-batches0), "jobs/tx")
}
