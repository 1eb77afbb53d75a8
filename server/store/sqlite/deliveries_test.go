package sqlite

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/hookrelay/hookrelay/server/store"
)

// TestRecordProgressBySeq records deliveries that name their event's seq
// and channel (the one-statement insert), one whose seq is another
// event's (found by its id instead), and one of a deleted event (skipped).
func TestRecordProgressBySeq(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := openTest(t, filepath.Join(t.TempDir(), "hookrelay.db"), Options{})
	for _, ch := range []string{"c", "gone"} {
		if err := s.CreateChannel(ctx, store.Channel{ID: ch}); err != nil {
			t.Fatal(err)
		}
	}
	g, err := s.EnsureGroup(ctx, "c", "g", store.FromResume)
	if err != nil {
		t.Fatal(err)
	}
	events := map[string]*store.Event{}
	for _, id := range []string{"e1", "e2", "e3"} {
		e := &store.Event{ID: id, ChannelID: "c", Method: "POST", Path: "/"}
		if id == "e3" {
			e.ChannelID = "gone"
		}
		if err := s.AppendEvent(ctx, e); err != nil {
			t.Fatal(err)
		}
		events[id] = e
	}
	if err := s.DeleteChannel(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	p := store.Progress{GroupID: g.ID, Deliveries: []store.Delivery{
		{ID: "d1", EventID: "e1", EventSeq: events["e1"].Seq, ChannelID: "c", Attempt: 1, Status: 200, Done: true},
		{ID: "d2", EventID: "e2", EventSeq: events["e1"].Seq, ChannelID: "c", Attempt: 1, Status: 500},
		{ID: "d3", EventID: "e3", EventSeq: events["e3"].Seq, ChannelID: "gone", Attempt: 1, Status: 200, Done: true},
	}}
	if err := s.RecordProgress(ctx, p); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]struct {
		seq    int64
		status int
		count  int
	}{"e1": {events["e1"].Seq, 200, 1}, "e2": {events["e2"].Seq, 500, 1}, "e3": {0, 0, 0}} {
		ds, err := s.Deliveries(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if len(ds) != want.count || (want.count == 1 && (ds[0].EventSeq != want.seq || ds[0].Status != want.status)) {
			t.Errorf("deliveries of %s: %+v, want %d with seq %d, status %d", id, ds, want.count, want.seq, want.status)
		}
	}
}

// TestLazyBatchesSkipTheFsync checks the synchronous setting batches run
// with: NORMAL for a batch of lazy jobs only (progress), the store's FULL
// for any other, and NORMAL throughout on a store opened with NORMAL.
func TestLazyBatchesSkipTheFsync(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	for _, tc := range []struct {
		store         string
		lazy, durable int // PRAGMA synchronous: 1 NORMAL, 2 FULL
	}{{"FULL", 1, 2}, {"NORMAL", 1, 1}} {
		s := openTest(t, filepath.Join(t.TempDir(), "hookrelay.db"), Options{Synchronous: tc.store})
		read := func(write func(context.Context, int, func(*writeConn) error) error) int {
			var mode int
			if err := write(ctx, 0, func(w *writeConn) error { return w.row(`PRAGMA synchronous`).Scan(&mode) }); err != nil {
				t.Fatal(err)
			}
			return mode
		}
		// Alternated, so that each switch is seen both ways.
		for range 2 {
			if got := read(s.writeLazy); got != tc.lazy {
				t.Errorf("store %s: a lazy batch runs with synchronous %d, want %d", tc.store, got, tc.lazy)
			}
			if got := read(s.write); got != tc.durable {
				t.Errorf("store %s: a durable batch runs with synchronous %d, want %d", tc.store, got, tc.durable)
			}
		}
	}
}
