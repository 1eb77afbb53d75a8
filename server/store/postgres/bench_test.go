package postgres

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/hookrelay/hookrelay/server/store/postgres/pgtest"
	"github.com/hookrelay/hookrelay/server/store/sqlite"
	"github.com/hookrelay/hookrelay/server/store/storetest"
)

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
			storetest.BenchmarkAppend(b, s, channels)
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
				storetest.BenchmarkAppend(b, s, channels)
				if batches := s.batches.Load() - batches0; batches > 0 {
					b.ReportMetric(float64(s.batchedJobs.Load()-jobs0)/float64(batches), "events/tx")
				}
			})
		}
	}
}
