package postgres

import (
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/hookrelay/hookrelay/server/store"
	"github.com/hookrelay/hookrelay/server/store/postgres/pgtest"
	"github.com/hookrelay/hookrelay/server/store/sqlite"
)

// benchmarkAppend appends 1 KiB events from 16 goroutines per CPU, spread
// over the given number of channels, and reports events/s. It is the same
// load as the SQLite store's benchmark, so the two compare.
func benchmarkAppend(b *testing.B, s store.Store, channels int) {
	ctx := b.Context()
	for c := range channels {
		if err := s.CreateChannel(ctx, store.Channel{ID: fmt.Sprint("c", c)}); err != nil {
			b.Fatal(err)
		}
	}
	body := make([]byte, 1024)
	for i := range body {
		body[i] = byte(i)
	}
	headers := []store.Header{{Name: "Content-Type", Value: "application/json"}, {Name: "X-Request-Id", Value: "abc"}}
	var n atomic.Int64
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			e := &store.Event{ID: fmt.Sprint("e", i), ChannelID: fmt.Sprint("c", i%int64(channels)),
				Method: "POST", Path: "/hook", Headers: headers, Body: body, RemoteAddr: "192.0.2.1:1234"}
			if err := s.AppendEvent(ctx, e); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkAppendEvent compares the stores in one run: SQLite with its
// default synchronous=FULL, and PostgreSQL (on HOOKRELAY_TEST_POSTGRES)
// with group commit on 1 (the default), 2 and 4 writers, and with one
// transaction per event. Run the binary several times for alternated
// rounds (see docs/deploy.md).
func BenchmarkAppendEvent(b *testing.B) {
	for _, channels := range []int{1, 16} {
		b.Run(fmt.Sprintf("channels=%d/store=sqlite", channels), func(b *testing.B) {
			s, err := sqlite.Open(filepath.Join(b.TempDir(), "hookrelay.db"), sqlite.Options{})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Close() })
			benchmarkAppend(b, s, channels)
		})
		for _, opts := range []struct {
			name string
			o    Options
		}{
			{"batched-1-writer", Options{Writers: 1}},
			{"batched-2-writers", Options{Writers: 2}},
			{"batched-4-writers", Options{Writers: 4}},
			{"one-tx-each", Options{MaxBatch: 1, Writers: 16}},
		} {
			b.Run(fmt.Sprintf("channels=%d/store=postgres-%s", channels, opts.name), func(b *testing.B) {
				s := openTest(b, pgtest.Schema(b), opts.o)
				batches0, jobs0 := s.batches.Load(), s.batchedJobs.Load()
				benchmarkAppend(b, s, channels)
				if batches := s.batches.Load() - batches0; batches > 0 {
					b.ReportMetric(float64(s.batchedJobs.Load()-jobs0)/float64(batches), "events/tx")
				}
			})
		}
	}
}
