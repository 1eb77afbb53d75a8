package storetest

import (
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/server/store"
)

// pending returns what Pending returns, failing the test on error.
func pending(t *testing.T, s store.Store, groupID, afterSeq int64, limit int) []store.Event {
	t.Helper()
	es, err := pendingEvents(t.Context(), s, groupID, afterSeq, limit)
	must(t, "pending", err)
	return es
}

func testEnsureNewGroup(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustChannel(t, s, "c")
	mustChannel(t, s, "other")
	mustAppend(t, s, newEvent("c", "old1"), newEvent("c", "old2"), newEvent("other", "o"))

	before := time.Now()
	resume, err := s.EnsureGroup(ctx, "c", "resume", store.FromResume)
	must(t, "ensure resume", err)
	now, err := s.EnsureGroup(ctx, "c", "now", store.FromNow)
	must(t, "ensure now", err)
	after := time.Now()

	for _, g := range []store.Group{resume, now} {
		if g.ID == 0 || g.ChannelID != "c" {
			t.Errorf("group %+v: want an id and channel c", g)
		}
		checkNow(t, g.Name+" CreatedAt", g.CreatedAt, before, after)
		checkNow(t, g.Name+" LastSeenAt", g.LastSeenAt, before, after)
	}
	if resume.ID == now.ID {
		t.Errorf("two groups share id %d", now.ID)
	}
	maxSeq, err := s.MaxSeq(ctx)
	must(t, "max seq", err)
	if now.DoneThrough < maxSeq {
		t.Errorf("new FromNow group DoneThrough = %d, want >= MaxSeq %d", now.DoneThrough, maxSeq)
	}
	checkIDs(t, "pending of a new FromResume group", pending(t, s, resume.ID, 0, 10), "old1", "old2")
	checkIDs(t, "pending of a new FromNow group", pending(t, s, now.ID, 0, 10))

	mustAppend(t, s, newEvent("c", "new"))
	checkIDs(t, "pending of the FromResume group", pending(t, s, resume.ID, 0, 10), "old1", "old2", "new")
	checkIDs(t, "pending of the FromNow group", pending(t, s, now.ID, 0, 10), "new")

	gs, err := s.ListGroups(ctx, "c")
	must(t, "list groups", err)
	if len(gs) != 2 || gs[0].ID != resume.ID || gs[1].ID != now.ID {
		t.Errorf("ListGroups = %+v, want the resume and now groups, oldest first", gs)
	}
	gs, err = s.ListGroups(ctx, "other")
	must(t, "list groups", err)
	if len(gs) != 0 {
		t.Errorf("ListGroups of a channel without groups = %+v", gs)
	}

	_, err = s.EnsureGroup(ctx, "missing", "g", store.FromResume)
	wantErr(t, "ensure a group of a missing channel", err, store.ErrNotFound)
}

func testEnsureExistingGroup(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustChannel(t, s, "c")
	e1, e2, e3 := newEvent("c", "e1"), newEvent("c", "e2"), newEvent("c", "e3")
	mustAppend(t, s, e1, e2, e3)
	g, err := s.EnsureGroup(ctx, "c", "g", store.FromResume)
	must(t, "ensure", err)
	must(t, "advance", advance(ctx, s, g.ID, e1.Seq))
	must(t, "touch", touch(ctx, s, g.ID, baseTime()))

	// FromResume: returned as is, but seen now.
	before := time.Now()
	again, err := s.EnsureGroup(ctx, "c", "g", store.FromResume)
	must(t, "ensure again", err)
	after := time.Now()
	if again.ID != g.ID || again.DoneThrough != e1.Seq || !again.CreatedAt.Equal(g.CreatedAt) {
		t.Errorf("existing group with FromResume = %+v, want id %d, DoneThrough %d, CreatedAt %v",
			again, g.ID, e1.Seq, g.CreatedAt)
	}
	checkNow(t, "LastSeenAt", again.LastSeenAt, before, after)
	checkIDs(t, "pending after resume", pending(t, s, g.ID, 0, 10), "e2", "e3")

	// FromNow: skips to MaxSeq.
	skipped, err := s.EnsureGroup(ctx, "c", "g", store.FromNow)
	must(t, "ensure from now", err)
	if skipped.ID != g.ID || skipped.DoneThrough < e3.Seq {
		t.Errorf("existing group with FromNow = %+v, want id %d, DoneThrough >= %d", skipped, g.ID, e3.Seq)
	}
	checkIDs(t, "pending after FromNow", pending(t, s, g.ID, 0, 10))
	gs, err := s.ListGroups(ctx, "c")
	must(t, "list groups", err)
	if len(gs) != 1 || gs[0].DoneThrough != skipped.DoneThrough {
		t.Errorf("ListGroups = %+v, want one group with DoneThrough %d", gs, skipped.DoneThrough)
	}
}

func testPending(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustChannel(t, s, "c")
	mustChannel(t, s, "other")
	g, err := s.EnsureGroup(ctx, "c", "g", store.FromResume)
	must(t, "ensure", err)
	g2, err := s.EnsureGroup(ctx, "c", "g2", store.FromResume)
	must(t, "ensure", err)

	a1, a2, a3, a4 := newEvent("c", "a1"), newEvent("c", "a2"), newEvent("c", "a3"), newEvent("c", "a4")
	r1 := newEvent("c", "r1")
	r1.State, r1.RejectReason = store.EventRejected, "bad signature"
	mustAppend(t, s, a1, r1, a2, newEvent("other", "o1"), a3, a4)

	// a2 is done for g (not for g2); a failed attempt on a3 does not count.
	must(t, "record done", recordOne(ctx, s, store.Delivery{ID: "d1", EventID: "a2", GroupID: g.ID,
		Status: 204, Done: true, StartedAt: baseTime()}))
	must(t, "record failed", recordOne(ctx, s, store.Delivery{ID: "d2", EventID: "a3", GroupID: g.ID,
		Error: "connection refused", StartedAt: baseTime()}))

	checkIDs(t, "pending", pending(t, s, g.ID, 0, 10), "a1", "a3", "a4")
	for _, e := range pending(t, s, g.ID, 0, 10) {
		if want := map[string]int{"a3": 1}[e.ID]; e.GroupAttempts != want {
			t.Errorf("pending %s: GroupAttempts = %d, want %d", e.ID, e.GroupAttempts, want)
		}
	}
	for _, e := range pending(t, s, g2.ID, 0, 10) {
		if e.GroupAttempts != 0 {
			t.Errorf("pending of another group: %s GroupAttempts = %d, want 0", e.ID, e.GroupAttempts)
		}
	}
	checkIDs(t, "pending of another group", pending(t, s, g2.ID, 0, 10), "a1", "a2", "a3", "a4")
	checkIDs(t, "pending with limit", pending(t, s, g.ID, 0, 2), "a1", "a3")
	checkIDs(t, "pending after a1", pending(t, s, g.ID, a1.Seq, 10), "a3", "a4")
	checkIDs(t, "pending after a3", pending(t, s, g.ID, a3.Seq, 10), "a4")
	checkIDs(t, "pending after a4", pending(t, s, g.ID, a4.Seq, 10))

	es := pending(t, s, g.ID, 0, 1)
	if len(es) == 1 {
		if d := diffEvent(*a1, es[0]); d != "" {
			t.Errorf("pending event: %s", d)
		}
	}

	// DoneThrough bounds it too, whichever of afterSeq and DoneThrough is higher.
	must(t, "advance", advance(ctx, s, g.ID, a3.Seq))
	checkIDs(t, "pending after advancing past a3", pending(t, s, g.ID, 0, 10), "a4")
	checkIDs(t, "pending with a lower afterSeq", pending(t, s, g.ID, a1.Seq, 10), "a4")
	must(t, "record done a4", recordOne(ctx, s, store.Delivery{ID: "d3", EventID: "a4", GroupID: g.ID,
		Status: 200, Done: true, StartedAt: baseTime()}))
	checkIDs(t, "pending when all are done", pending(t, s, g.ID, 0, 10))

	_, err = pendingEvents(ctx, s, 9999, 0, 10)
	wantErr(t, "pending of a missing group", err, store.ErrNotFound)
}

func testAdvanceGroup(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustChannel(t, s, "c")
	g, err := s.EnsureGroup(ctx, "c", "g", store.FromResume)
	must(t, "ensure", err)
	doneThrough := func() int64 { return groupState(t, s, "c").DoneThrough }
	must(t, "advance to 5", advance(ctx, s, g.ID, 5))
	if d := doneThrough(); d != 5 {
		t.Errorf("DoneThrough = %d after advancing to 5", d)
	}
	must(t, "advance to 3", advance(ctx, s, g.ID, 3))
	if d := doneThrough(); d != 5 {
		t.Errorf("DoneThrough = %d after advancing to 3, want it to stay 5", d)
	}
	must(t, "advance to 9", advance(ctx, s, g.ID, 9))
	if d := doneThrough(); d != 9 {
		t.Errorf("DoneThrough = %d after advancing to 9", d)
	}
	must(t, "advance a missing group", advance(ctx, s, 9999, 1)) // skipped, not an error
}

func testTouchGroup(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustChannel(t, s, "c")
	g, err := s.EnsureGroup(ctx, "c", "g", store.FromResume)
	must(t, "ensure", err)
	at := baseTime().Add(time.Hour)
	must(t, "touch", touch(ctx, s, g.ID, at))
	gs, err := s.ListGroups(ctx, "c")
	must(t, "list", err)
	if len(gs) != 1 || !gs[0].LastSeenAt.Equal(at) {
		t.Errorf("ListGroups after RecordProgress with SeenAt %v = %+v", at, gs)
	}
	// Neither field set: the group is left as it was.
	must(t, "empty progress", s.RecordProgress(ctx, store.Progress{GroupID: g.ID}))
	gs, err = s.ListGroups(ctx, "c")
	must(t, "list", err)
	if len(gs) != 1 || !gs[0].LastSeenAt.Equal(at) || gs[0].DoneThrough != 0 {
		t.Errorf("ListGroups after an empty RecordProgress = %+v, want LastSeenAt %v and DoneThrough 0", gs, at)
	}
	must(t, "touch a missing group", touch(ctx, s, 9999, at)) // skipped, not an error
}
