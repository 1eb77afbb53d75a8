package storetest

import (
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/server/store"
)

// groupState returns the channel's only group as ListGroups shows it.
func groupState(t *testing.T, s store.Store, channelID string) store.Group {
	t.Helper()
	gs, err := s.ListGroups(t.Context(), channelID)
	must(t, "list groups", err)
	if len(gs) != 1 {
		t.Fatalf("ListGroups(%s) = %+v, want one group", channelID, gs)
	}
	return gs[0]
}

// testProgressReport writes deliveries, a watermark and a seen time in one
// RecordProgress call.
func testProgressReport(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustChannel(t, s, "c")
	e1, e2, e3, e4 := newEvent("c", "e1"), newEvent("c", "e2"), newEvent("c", "e3"), newEvent("c", "e4")
	mustAppend(t, s, e1, e2, e3, e4)
	g, err := s.EnsureGroup(ctx, "c", "g", store.FromResume)
	must(t, "ensure", err)
	seen := baseTime().Add(time.Hour)
	must(t, "record progress", s.RecordProgress(ctx, store.Progress{
		GroupID: g.ID,
		Deliveries: []store.Delivery{
			{ID: "d1", EventID: "e1", GroupID: 12345 /* taken from Progress */, GroupName: "g", Attempt: 1,
				Status: 200, Done: true, StartedAt: baseTime()},
			{ID: "d2", EventID: "e2", Attempt: 1, Error: "connection refused", StartedAt: baseTime()},
			{ID: "d3", EventID: "e2", Attempt: 2, Status: 503, Done: true, StartedAt: baseTime().Add(time.Second)},
			// Three attempts of e4 in one report: the last status wins.
			{ID: "d4", EventID: "e4", Attempt: 1, Status: 500, StartedAt: baseTime()},
			{ID: "d5", EventID: "e4", Attempt: 2, Status: 502, StartedAt: baseTime()},
			{ID: "d6", EventID: "e4", Attempt: 3, Error: "timeout", StartedAt: baseTime()},
		},
		DoneThrough: e2.Seq,
		SeenAt:      seen,
	}))
	checkSummary(t, s, "e1", 1, 200, true)
	checkSummary(t, s, "e2", 2, 503, true)
	checkSummary(t, s, "e3", 0, 0, false)
	checkSummary(t, s, "e4", 3, 502, true)
	if ds, err := s.Deliveries(ctx, "e4"); err != nil || len(ds) != 3 || ds[0].ID != "d4" || ds[1].ID != "d5" || ds[2].ID != "d6" {
		t.Errorf("deliveries of e4 = %+v, %v; want d4, d5, d6 (same start: in the order reported)", ds, err)
	}
	if got := groupState(t, s, "c"); got.DoneThrough != e2.Seq || !got.LastSeenAt.Equal(seen) {
		t.Errorf("group after the report: DoneThrough %d, LastSeenAt %v; want %d, %v",
			got.DoneThrough, got.LastSeenAt, e2.Seq, seen)
	}
	ds, err := s.Deliveries(ctx, "e2")
	must(t, "deliveries", err)
	if len(ds) != 2 || ds[0].ID != "d2" || ds[1].ID != "d3" || ds[1].GroupID != g.ID || ds[1].EventSeq != e2.Seq {
		t.Errorf("deliveries of e2 = %+v, want d2 then d3 of group %d", ds, g.ID)
	}
	if ds, err := s.Deliveries(ctx, "e1"); err != nil || len(ds) != 1 || ds[0].GroupID != g.ID {
		t.Errorf("deliveries of e1 = %+v, %v; want one, of group %d", ds, err, g.ID)
	}
	checkIDs(t, "pending after the report", pending(t, s, g.ID, 0, 10), "e3", "e4")
}

// testProgressOutOfOrder checks the done marks of events that finish above
// the group's watermark.
func testProgressOutOfOrder(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustChannel(t, s, "c")
	mustChannel(t, s, "other")
	e1, e2, e3, e4 := newEvent("c", "e1"), newEvent("c", "e2"), newEvent("c", "e3"), newEvent("c", "e4")
	o1 := newEvent("other", "o1")
	mustAppend(t, s, e1, e2, e3, o1, e4)
	g, err := s.EnsureGroup(ctx, "c", "g", store.FromResume)
	must(t, "ensure", err)
	og, err := s.EnsureGroup(ctx, "other", "g", store.FromResume)
	must(t, "ensure", err)
	done := func(id, eventID string) store.Delivery {
		return store.Delivery{ID: id, EventID: eventID, Status: 200, Done: true, StartedAt: baseTime()}
	}

	// e1 and e3 finish; e2 is still out: the watermark stays below e2, and
	// e3 needs a mark.
	must(t, "report 1", s.RecordProgress(ctx, store.Progress{GroupID: g.ID,
		Deliveries: []store.Delivery{done("d1", "e1"), done("d3", "e3")}, DoneThrough: e1.Seq}))
	checkIDs(t, "pending with e3 done out of order", pending(t, s, g.ID, 0, 10), "e2", "e4")
	checkIDs(t, "pending after e1 with e3 done", pending(t, s, g.ID, e1.Seq, 10), "e2", "e4")

	// e2 finishes: the watermark passes e3.
	must(t, "report 2", s.RecordProgress(ctx, store.Progress{GroupID: g.ID,
		Deliveries: []store.Delivery{done("d2", "e2")}, DoneThrough: e3.Seq}))
	checkIDs(t, "pending after the watermark passed e3", pending(t, s, g.ID, 0, 10), "e4")
	if got := groupState(t, s, "c"); got.DoneThrough != e3.Seq {
		t.Errorf("DoneThrough = %d, want %d", got.DoneThrough, e3.Seq)
	}

	// A done delivery of another channel's event marks nothing of that
	// channel's groups.
	must(t, "report 3", s.RecordProgress(ctx, store.Progress{GroupID: g.ID,
		Deliveries: []store.Delivery{done("dx", "o1")}}))
	checkIDs(t, "pending of the other channel", pending(t, s, og.ID, 0, 10), "o1")

	// A report whose watermark covers its own done deliveries.
	must(t, "report 4", s.RecordProgress(ctx, store.Progress{GroupID: g.ID,
		Deliveries: []store.Delivery{done("d4", "e4")}, DoneThrough: e4.Seq}))
	checkIDs(t, "pending when all are done", pending(t, s, g.ID, 0, 10))
	e5 := newEvent("c", "e5")
	mustAppend(t, s, e5)
	checkIDs(t, "pending after a new event", pending(t, s, g.ID, 0, 10), "e5")
}

func testPendingHorizon(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustChannel(t, s, "c")
	mustChannel(t, s, "other")
	g, err := s.EnsureGroup(ctx, "c", "g", store.FromResume)
	must(t, "ensure", err)
	horizon := func(what string, q store.PendingQuery, want int64) {
		t.Helper()
		q.GroupID = g.ID
		page, err := s.Pending(ctx, q)
		must(t, "pending", err)
		if page.Horizon != want {
			t.Errorf("%s: Horizon = %d, want %d", what, page.Horizon, want)
		}
	}
	horizon("empty channel", store.PendingQuery{}, 0)
	a1, a2 := newEvent("c", "a1"), newEvent("c", "a2")
	r1 := rejected("c", "r1", 3)
	mustAppend(t, s, a1, r1, a2, newEvent("other", "o1"))
	horizon("after appends", store.PendingQuery{}, a2.Seq)
	r2 := rejected("c", "r2", 3)
	mustAppend(t, s, r2)
	horizon("after a rejected event", store.PendingQuery{}, r2.Seq)
	horizon("a page of one", store.PendingQuery{Limit: 1}, r2.Seq)
	horizon("after the last event", store.PendingQuery{AfterSeq: r2.Seq}, r2.Seq)
	must(t, "advance", advance(ctx, s, g.ID, r2.Seq))
	horizon("all done", store.PendingQuery{}, r2.Seq)
}

func testPendingMaxBody(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustChannel(t, s, "c")
	sized := func(id string, n int) *store.Event {
		e := newEvent("c", id)
		e.Body = make([]byte, n)
		for i := range e.Body {
			e.Body[i] = byte(i)
		}
		return e
	}
	empty, small, edge, large := sized("empty", 0), sized("small", 5), sized("edge", 10), sized("large", 11)
	mustAppend(t, s, empty, small, edge, large)
	g, err := s.EnsureGroup(ctx, "c", "g", store.FromResume)
	must(t, "ensure", err)

	page, err := s.Pending(ctx, store.PendingQuery{GroupID: g.ID, MaxBody: 10})
	must(t, "pending", err)
	checkIDs(t, "pending with MaxBody", page.Events, "empty", "small", "edge", "large")
	for i, want := range []*store.Event{empty, small, edge, withoutBodyPtr(large)} {
		if i < len(page.Events) {
			if d := diffEvent(*want, page.Events[i]); d != "" {
				t.Errorf("pending with MaxBody 10, %s: %s", want.ID, d)
			}
		}
	}
	if len(page.Events) == 4 && page.Events[3].Size != 11 {
		t.Errorf("event over MaxBody: Size = %d, want 11", page.Events[3].Size)
	}
	page, err = s.Pending(ctx, store.PendingQuery{GroupID: g.ID})
	must(t, "pending", err)
	for _, e := range page.Events {
		if e.Body == nil || len(e.Body) != e.Size {
			t.Errorf("pending without MaxBody: %s has %d of %d body bytes (nil: %t)", e.ID, len(e.Body), e.Size, e.Body == nil)
		}
	}
}

func withoutBodyPtr(e *store.Event) *store.Event {
	c := withoutBody(*e)
	return &c
}
