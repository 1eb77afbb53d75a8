package sqlite

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/server/store"
	"github.com/hookrelay/hookrelay/server/store/storetest"
)

// benchmarkAppend runs storetest.BenchmarkAppend on one channel and also
// reports the mean number of events per transaction.
func benchmarkAppend(b *testing.B, opts Options) {
	s := openTest(b, filepath.Join(b.TempDir(), "hookrelay.db"), opts)
	batches0, jobs0 := s.batches.Load(), s.batchedJobs.Load()
	storetest.BenchmarkAppend(b, s, 1)
	if batches := s.batches.Load() - batches0; batches > 0 {
		b.ReportMetric(float64(s.batchedJobs.Load()-jobs0)/float64(batches), "events/tx")
	}
}

// BenchmarkAppendEventBatched appends with group commit (the default).
func BenchmarkAppendEventBatched(b *testing.B) {
	for _, sync := range []string{"FULL", "NORMAL"} {
		b.Run("sync="+sync, func(b *testing.B) {
			benchmarkAppend(b, Options{Synchronous: sync})
		})
	}
}

// BenchmarkAppendEventOneTxEach makes the same appends, each committed in
// its own transaction (MaxBatch 1), to show what group commit buys.
func BenchmarkAppendEventOneTxEach(b *testing.B) {
	for _, sync := range []string{"FULL", "NORMAL"} {
		b.Run("sync="+sync, func(b *testing.B) {
			benchmarkAppend(b, Options{Synchronous: sync, MaxBatch: 1})
		})
	}
}

// BenchmarkPruneDelivered deletes by retention events of 4 KiB that each
// had one delivery (half of them marked done above the watermark), and
// reports the time per deleted event.
func BenchmarkPruneDelivered(b *testing.B) {
	ctx := b.Context()
	s := openTest(b, filepath.Join(b.TempDir(), "hookrelay.db"), Options{Synchronous: "NORMAL"})
	if err := s.CreateChannel(ctx, store.Channel{ID: "c"}); err != nil {
		b.Fatal(err)
	}
	g, err := s.EnsureGroup(ctx, "c", "g", store.FromResume)
	if err != nil {
		b.Fatal(err)
	}
	body := make([]byte, 4096)
	old := time.Now().Add(-time.Hour)
	for i := range b.N {
		id := fmt.Sprint("e", i)
		if err := s.AppendEvent(ctx, &store.Event{ID: id, ChannelID: "c", Method: "POST", Path: "/", Body: body, ReceivedAt: old}); err != nil {
			b.Fatal(err)
		}
		d := store.Delivery{ID: fmt.Sprint("d", i), EventID: id, Status: 200, Done: i%2 == 0, ResponseBody: []byte("ok")}
		if err := s.RecordProgress(ctx, store.Progress{GroupID: g.ID, Deliveries: []store.Delivery{d}}); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	res, err := s.Prune(ctx, store.PruneOptions{Now: time.Now(), EventsBefore: time.Now()})
	if err != nil || res.Events != b.N {
		b.Fatalf("prune: %+v, %v", res, err)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/event")
}

// BenchmarkListEventsOrigin lists 50 events with 1 MiB bodies, half of
// them edited replays, reading their seqs and origins (Event.ReplayOf) but
// not their bodies: from the event_origins table, as ListEvents does, and
// from a column that ALTER TABLE ADD COLUMN would have put after the body.
// An empty value costs nothing to read wherever it sits, but a non-empty
// one after the body makes SQLite walk the body's overflow pages: the
// measure behind keeping origins apart. Compare the two ns/op.
func BenchmarkListEventsOrigin(b *testing.B) {
	ctx := b.Context()
	s := openTest(b, filepath.Join(b.TempDir(), "hookrelay.db"), Options{Synchronous: "NORMAL"})
	if err := s.CreateChannel(ctx, store.Channel{ID: "c"}); err != nil {
		b.Fatal(err)
	}
	// Added before the events, so that each row holds the column, after its
	// body (rows written before an ALTER TABLE lack it and read the default).
	err := s.write(ctx, 0, func(w *writeConn) error {
		_, err := w.exec(`ALTER TABLE events ADD COLUMN origin_after_body TEXT NOT NULL DEFAULT ''`)
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	body := make([]byte, 1<<20)
	for i := range 50 {
		e := &store.Event{ID: fmt.Sprint("e", i), ChannelID: "c", Method: "POST", Path: "/", Body: body}
		if i%2 == 1 {
			e.ReplayOf = fmt.Sprint("e", i-1)
		}
		if err := s.AppendEvent(ctx, e); err != nil {
			b.Fatal(err)
		}
	}
	// The replays name their origin in the column too.
	err = s.write(ctx, 0, func(w *writeConn) error {
		_, err := w.exec(`UPDATE events SET origin_after_body = 'e' || (seq - 2) WHERE seq % 2 = 0`)
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct{ name, origin string }{
		{"table", `coalesce(o.replay_of, '')`}, // as eventColumns reads it
		{"column-after-body", `e.origin_after_body`},
	} {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				rows, err := s.rdb.QueryContext(ctx, `SELECT e.seq, `+tc.origin+`
					FROM events AS e LEFT JOIN event_origins AS o ON o.event_seq = e.seq
					WHERE e.channel_id = ? ORDER BY e.seq DESC LIMIT 50`, "c")
				if err != nil {
					b.Fatal(err)
				}
				n := 0
				for rows.Next() {
					var seq int64
					var origin string
					if err := rows.Scan(&seq, &origin); err != nil {
						b.Fatal(err)
					}
					n++
				}
				if err := rows.Close(); err != nil || n != 50 {
					b.Fatalf("%d rows, %v", n, err)
				}
			}
		})
	}
}
