package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/server/store"
)

// prune runs Prune and fails unless it reports want.
func prune(t *testing.T, s store.Store, o store.PruneOptions, want store.PruneResult) {
	t.Helper()
	got, err := s.Prune(t.Context(), o)
	must(t, "prune", err)
	if got != want {
		t.Errorf("Prune(%+v) = %+v, want %+v", o, got, want)
	}
}

// listIDs lists the ids of all events of a channel, newest first.
func listIDs(t *testing.T, s store.Store, channelID string) []store.Event {
	t.Helper()
	es, err := s.ListEvents(t.Context(), store.EventQuery{ChannelID: channelID, Limit: 1000})
	must(t, "list events of "+channelID, err)
	return es
}

func testPruneNothing(t *testing.T, s store.Store) {
	ctx := t.Context()
	c := store.Channel{ID: "expired", ExpiresAt: baseTime()}
	must(t, "create", s.CreateChannel(ctx, c))
	mustAppend(t, s, newEvent("expired", "e1"), newEvent("expired", "e2"))
	_, err := s.EnsureGroup(ctx, "expired", "g", store.FromResume)
	must(t, "ensure", err)
	prune(t, s, store.PruneOptions{}, store.PruneResult{})
	checkIDs(t, "events after a no-op prune", listIDs(t, s, "expired"), "e2", "e1")
	gs, err := s.ListGroups(ctx, "expired")
	must(t, "list groups", err)
	if len(gs) != 1 {
		t.Errorf("groups after a no-op prune: %d, want 1", len(gs))
	}
}

func testPruneEventsBefore(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustChannel(t, s, "c")
	mustChannel(t, s, "other")
	g, err := s.EnsureGroup(ctx, "c", "g", store.FromResume)
	must(t, "ensure", err)
	for i := range 5 {
		e := newEvent("c", fmt.Sprint("e", i))
		e.ReceivedAt = baseTime().Add(time.Duration(i) * time.Minute)
		mustAppend(t, s, e)
		must(t, "record", recordOne(ctx, s, store.Delivery{ID: fmt.Sprint("d", i), EventID: e.ID,
			GroupID: g.ID, Status: 200, Done: i%2 == 0, StartedAt: e.ReceivedAt}))
	}
	o := newEvent("other", "o-old")
	o.ReceivedAt = baseTime().Add(-time.Hour)
	mustAppend(t, s, o)

	prune(t, s, store.PruneOptions{Now: baseTime().Add(time.Hour), EventsBefore: baseTime().Add(2 * time.Minute)},
		store.PruneResult{Events: 3})
	checkIDs(t, "events left", listIDs(t, s, "c"), "e4", "e3", "e2")
	checkIDs(t, "events of another channel", listIDs(t, s, "other"))
	for _, id := range []string{"e0", "e1"} {
		_, err := s.GetEvent(ctx, id)
		wantErr(t, "get pruned "+id, err, store.ErrNotFound)
		ds, err := s.Deliveries(ctx, id)
		must(t, "deliveries", err)
		if len(ds) != 0 {
			t.Errorf("deliveries of pruned %s: %d, want none", id, len(ds))
		}
	}
	ds, err := s.Deliveries(ctx, "e2")
	must(t, "deliveries", err)
	if len(ds) != 1 {
		t.Errorf("deliveries of kept e2: %d, want 1", len(ds))
	}
	checkIDs(t, "pending after prune", pending(t, s, g.ID, 0, 10), "e3")
}

func testPruneCap(t *testing.T, s store.Store) {
	mustChannel(t, s, "a")
	mustChannel(t, s, "b")
	for i := range 5 {
		e := newEvent("a", fmt.Sprint("a", i))
		e.ReceivedAt = baseTime().Add(time.Duration(-i) * time.Minute) // seq order is what counts
		mustAppend(t, s, e)
		if i < 2 {
			mustAppend(t, s, newEvent("b", fmt.Sprint("b", i)))
		}
	}
	prune(t, s, store.PruneOptions{Now: baseTime(), MaxEventsPerChannel: 3}, store.PruneResult{Events: 2})
	checkIDs(t, "channel over the cap", listIDs(t, s, "a"), "a4", "a3", "a2")
	checkIDs(t, "channel under the cap", listIDs(t, s, "b"), "b1", "b0")
	prune(t, s, store.PruneOptions{Now: baseTime(), MaxEventsPerChannel: 3}, store.PruneResult{})
	prune(t, s, store.PruneOptions{Now: baseTime(), MaxEventsPerChannel: 1}, store.PruneResult{Events: 3})
	checkIDs(t, "channel a at cap 1", listIDs(t, s, "a"), "a4")
	checkIDs(t, "channel b at cap 1", listIDs(t, s, "b"), "b1")
}

func testPruneIdleGroups(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustChannel(t, s, "c")
	mustAppend(t, s, newEvent("c", "e"))
	idle, err := s.EnsureGroup(ctx, "c", "idle", store.FromResume)
	must(t, "ensure", err)
	live, err := s.EnsureGroup(ctx, "c", "live", store.FromResume)
	must(t, "ensure", err)
	must(t, "touch", touch(ctx, s, idle.ID, baseTime()))
	must(t, "touch", touch(ctx, s, live.ID, baseTime().Add(2*time.Hour)))
	must(t, "record", recordOne(ctx, s, store.Delivery{ID: "d", EventID: "e", GroupID: idle.ID,
		Status: 200, Done: true, StartedAt: baseTime()}))

	prune(t, s, store.PruneOptions{Now: baseTime().Add(3 * time.Hour), GroupsIdleBefore: baseTime().Add(time.Hour)},
		store.PruneResult{Groups: 1})
	gs, err := s.ListGroups(ctx, "c")
	must(t, "list groups", err)
	if len(gs) != 1 || gs[0].ID != live.ID {
		t.Errorf("groups after prune = %+v, want only %q", gs, "live")
	}
	_, err = pendingEvents(ctx, s, idle.ID, 0, 10)
	wantErr(t, "pending of a pruned group", err, store.ErrNotFound)
	checkIDs(t, "events are kept", listIDs(t, s, "c"), "e")
	ds, err := s.Deliveries(ctx, "e")
	must(t, "deliveries", err)
	if len(ds) != 1 {
		t.Errorf("deliveries of a pruned group: %d, want them kept", len(ds))
	}
	// The name is free again: a group created with it starts afresh.
	again, err := s.EnsureGroup(ctx, "c", "idle", store.FromResume)
	must(t, "ensure", err)
	if again.ID == idle.ID {
		t.Errorf("group recreated after prune reuses id %d", idle.ID)
	}
	checkIDs(t, "pending of the recreated group", pending(t, s, again.ID, 0, 10), "e")
}

func testPruneExpiredChannels(t *testing.T, s store.Store) {
	ctx := t.Context()
	for _, c := range []store.Channel{
		{ID: "expired", ExpiresAt: baseTime().Add(time.Hour)},
		{ID: "later", ExpiresAt: baseTime().Add(3 * time.Hour)},
		{ID: "forever"},
	} {
		must(t, "create "+c.ID, s.CreateChannel(ctx, c))
		mustAppend(t, s, newEvent(c.ID, c.ID+"-1"), newEvent(c.ID, c.ID+"-2"))
		g, err := s.EnsureGroup(ctx, c.ID, "g", store.FromResume)
		must(t, "ensure", err)
		must(t, "record", recordOne(ctx, s, store.Delivery{ID: c.ID + "-d", EventID: c.ID + "-1",
			GroupID: g.ID, Status: 200, Done: true, StartedAt: baseTime()}))
	}
	prune(t, s, store.PruneOptions{Now: baseTime().Add(2 * time.Hour)},
		store.PruneResult{Channels: 1, Events: 2, Groups: 1})
	_, err := s.GetChannel(ctx, "expired")
	wantErr(t, "get an expired channel", err, store.ErrNotFound)
	_, err = s.GetEvent(ctx, "expired-1")
	wantErr(t, "get an event of an expired channel", err, store.ErrNotFound)
	gs, err := s.ListGroups(ctx, "expired")
	must(t, "list groups", err)
	if len(gs) != 0 {
		t.Errorf("groups of an expired channel: %d", len(gs))
	}
	for _, id := range []string{"later", "forever"} {
		if _, err := s.GetChannel(ctx, id); err != nil {
			t.Errorf("get %s: %v", id, err)
		}
		checkIDs(t, "events of "+id, listIDs(t, s, id), id+"-2", id+"-1")
	}
	cs, err := s.ListChannels(ctx, "*")
	must(t, "list channels", err)
	if len(cs) != 2 {
		t.Errorf("channels after prune: %d, want 2", len(cs))
	}
}
