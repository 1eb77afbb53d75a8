package storetest

import (
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/server/store"
)

// testReplayOf: an edited replay is a new event that names the event it was
// made from; every read returns the name, and it outlives the original.
func testReplayOf(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustChannel(t, s, "c")
	orig := newEvent("c", "orig")
	orig.ReceivedAt = baseTime()
	replay := newEvent("c", "replay")
	replay.ReplayOf = orig.ID
	replay.Body = []byte(`{"edited":true}`)
	replay.ReceivedAt = baseTime().Add(time.Second)
	mustAppend(t, s, orig, replay)

	got, err := s.GetEvent(ctx, replay.ID)
	must(t, "get", err)
	if got.ReplayOf != orig.ID {
		t.Errorf("GetEvent: ReplayOf = %q, want %q", got.ReplayOf, orig.ID)
	}
	for _, withBody := range []bool{false, true} {
		es, err := s.ListEvents(ctx, store.EventQuery{ChannelID: "c", WithBody: withBody})
		must(t, "list", err)
		checkIDs(t, "list", es, "replay", "orig")
		if es[0].ReplayOf != orig.ID || es[1].ReplayOf != "" {
			t.Errorf("ListEvents (bodies %t): ReplayOf = %q, %q; want %q, \"\"", withBody, es[0].ReplayOf, es[1].ReplayOf, orig.ID)
		}
	}
	g, err := s.EnsureGroup(ctx, "c", "g", store.FromResume)
	must(t, "ensure group", err)
	page, err := s.Pending(ctx, store.PendingQuery{GroupID: g.ID})
	must(t, "pending", err)
	checkIDs(t, "pending", page.Events, "orig", "replay")
	if page.Events[1].ReplayOf != orig.ID {
		t.Errorf("Pending: ReplayOf = %q, want %q", page.Events[1].ReplayOf, orig.ID)
	}

	// The original goes (retention); the replay keeps naming it.
	_, err = s.Prune(ctx, store.PruneOptions{Now: baseTime().Add(time.Hour), EventsBefore: baseTime().Add(time.Millisecond)})
	must(t, "prune", err)
	got, err = s.GetEvent(ctx, replay.ID)
	must(t, "get after prune", err)
	if got.ReplayOf != orig.ID {
		t.Errorf("after the original was pruned: ReplayOf = %q, want %q", got.ReplayOf, orig.ID)
	}
	// Once every event is pruned, a new one has no origin.
	_, err = s.Prune(ctx, store.PruneOptions{Now: baseTime().Add(time.Hour), EventsBefore: baseTime().Add(time.Hour)})
	must(t, "prune all", err)
	again := newEvent("c", "again")
	mustAppend(t, s, again)
	got, err = s.GetEvent(ctx, again.ID)
	must(t, "get new", err)
	if got.ReplayOf != "" {
		t.Errorf("a new event has ReplayOf %q", got.ReplayOf)
	}
}
