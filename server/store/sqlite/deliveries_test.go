package sqlite

import (
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
