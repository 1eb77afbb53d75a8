package storetest

import (
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/server/store"
)

// channelsEqual reports whether got equals want (times with Equal, nil and
// empty CIDR lists alike).
func channelsEqual(want, got store.Channel) bool {
	if !want.ExpiresAt.Equal(got.ExpiresAt) || !want.CreatedAt.Equal(got.CreatedAt) ||
		!slices.Equal(want.AllowedCIDRs, got.AllowedCIDRs) {
		return false
	}
	want.ExpiresAt, got.ExpiresAt = time.Time{}, time.Time{}
	want.CreatedAt, got.CreatedAt = time.Time{}, time.Time{}
	want.AllowedCIDRs, got.AllowedCIDRs = nil, nil
	return reflect.DeepEqual(want, got)
}

func checkChannel(t *testing.T, what string, want, got store.Channel) {
	t.Helper()
	if !channelsEqual(want, got) {
		t.Errorf("%s:\n got %+v\nwant %+v", what, got, want)
	}
}

func testChannelsCRUD(t *testing.T, s store.Store) {
	ctx := t.Context()
	full := store.Channel{
		ID:           "ch-full",
		TeamID:       "team-1",
		Async:        true,
		ExpiresAt:    baseTime().Add(48 * time.Hour),
		CreatedAt:    baseTime(),
		ReadKeyHash:  "abc123",
		VerifyScheme: "hmac",
		VerifySecret: "s3cret\x00\xff",
		VerifyHeader: "X-Signature",
		AllowedCIDRs: []string{"192.0.2.0/24", "2001:db8::/32"},
		RateLimit:    12.5,
	}
	must(t, "create", s.CreateChannel(ctx, full))
	got, err := s.GetChannel(ctx, full.ID)
	must(t, "get", err)
	checkChannel(t, "get after create", full, got)

	wantErr(t, "create with a taken id", s.CreateChannel(ctx, store.Channel{ID: full.ID}), store.ErrConflict)
	_, err = s.GetChannel(ctx, "missing")
	wantErr(t, "get a missing channel", err, store.ErrNotFound)

	// Update replaces every field but ID and CreatedAt.
	upd := store.Channel{
		ID:           full.ID,
		TeamID:       "team-2",
		CreatedAt:    baseTime().Add(time.Hour), // ignored
		VerifyScheme: "github",
		VerifySecret: "other",
		RateLimit:    3,
	}
	must(t, "update", s.UpdateChannel(ctx, upd))
	got, err = s.GetChannel(ctx, full.ID)
	must(t, "get after update", err)
	upd.CreatedAt = full.CreatedAt
	checkChannel(t, "get after update", upd, got)
	wantErr(t, "update a missing channel", s.UpdateChannel(ctx, store.Channel{ID: "missing"}), store.ErrNotFound)

	// A zero CreatedAt is set to now; a zero ExpiresAt stays zero.
	before := time.Now()
	must(t, "create with zero times", s.CreateChannel(ctx, store.Channel{ID: "ch-zero"}))
	after := time.Now()
	got, err = s.GetChannel(ctx, "ch-zero")
	must(t, "get ch-zero", err)
	checkNow(t, "CreatedAt", got.CreatedAt, before, after)
	if !got.ExpiresAt.IsZero() {
		t.Errorf("ExpiresAt = %v, want zero", got.ExpiresAt)
	}

	must(t, "delete", s.DeleteChannel(ctx, full.ID))
	_, err = s.GetChannel(ctx, full.ID)
	wantErr(t, "get after delete", err, store.ErrNotFound)
	wantErr(t, "delete again", s.DeleteChannel(ctx, full.ID), store.ErrNotFound)
}

func testChannelsList(t *testing.T, s store.Store) {
	ctx := t.Context()
	cs, err := s.ListChannels(ctx, "*")
	must(t, "list empty", err)
	if len(cs) != 0 {
		t.Fatalf("new store lists %d channels, want none", len(cs))
	}
	// Created out of CreatedAt order: lists are oldest first.
	for _, c := range []store.Channel{
		{ID: "b", TeamID: "t1", CreatedAt: baseTime().Add(2 * time.Second)},
		{ID: "a", TeamID: "t1", CreatedAt: baseTime().Add(1 * time.Second)},
		{ID: "c", TeamID: "t2", CreatedAt: baseTime().Add(3 * time.Second)},
		{ID: "d", TeamID: "", CreatedAt: baseTime()},
	} {
		must(t, "create "+c.ID, s.CreateChannel(ctx, c))
	}
	for _, tc := range []struct {
		team string
		want []string
	}{
		{"t1", []string{"a", "b"}},
		{"t2", []string{"c"}},
		{"", []string{"d"}},
		{"*", []string{"d", "a", "b", "c"}},
		{"nobody", nil},
	} {
		cs, err := s.ListChannels(ctx, tc.team)
		must(t, "list "+tc.team, err)
		var got []string
		for _, c := range cs {
			got = append(got, c.ID)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("ListChannels(%q) = %q, want %q", tc.team, got, tc.want)
		}
	}
}

func testDeleteChannelCascades(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustChannel(t, s, "gone")
	mustChannel(t, s, "kept")
	e1, e2, k1 := newEvent("gone", "e1"), newEvent("gone", "e2"), newEvent("kept", "k1")
	mustAppend(t, s, e1, e2, k1)
	g, err := s.EnsureGroup(ctx, "gone", "g", store.FromResume)
	must(t, "ensure group", err)
	kg, err := s.EnsureGroup(ctx, "kept", "g", store.FromResume)
	must(t, "ensure group", err)
	must(t, "record", recordOne(ctx, s, store.Delivery{ID: "d1", EventID: "e1", GroupID: g.ID,
		Status: 200, Done: true, StartedAt: baseTime()}))
	must(t, "record", recordOne(ctx, s, store.Delivery{ID: "dk", EventID: "k1", GroupID: kg.ID,
		Status: 200, Done: true, StartedAt: baseTime()}))

	must(t, "delete channel", s.DeleteChannel(ctx, "gone"))

	for _, id := range []string{"e1", "e2"} {
		_, err := s.GetEvent(ctx, id)
		wantErr(t, "get event "+id+" of a deleted channel", err, store.ErrNotFound)
	}
	ds, err := s.Deliveries(ctx, "e1")
	must(t, "deliveries", err)
	if len(ds) != 0 {
		t.Errorf("deliveries of a deleted event: %d, want none", len(ds))
	}
	gs, err := s.ListGroups(ctx, "gone")
	must(t, "list groups", err)
	if len(gs) != 0 {
		t.Errorf("groups of a deleted channel: %d, want none", len(gs))
	}
	_, err = pendingEvents(ctx, s, g.ID, 0, 10)
	wantErr(t, "pending of a deleted group", err, store.ErrNotFound)
	es, err := s.ListEvents(ctx, store.EventQuery{ChannelID: "gone"})
	must(t, "list events", err)
	checkIDs(t, "events of a deleted channel", es)

	// The other channel keeps everything.
	if _, err := s.GetEvent(ctx, "k1"); err != nil {
		t.Errorf("event of another channel: %v", err)
	}
	ds, err = s.Deliveries(ctx, "k1")
	must(t, "deliveries of k1", err)
	if len(ds) != 1 {
		t.Errorf("deliveries of another channel's event: %d, want 1", len(ds))
	}

	// A channel created again with the same id starts empty.
	mustChannel(t, s, "gone")
	es, err = s.ListEvents(ctx, store.EventQuery{ChannelID: "gone"})
	must(t, "list events", err)
	checkIDs(t, "events of the recreated channel", es)
	g2, err := s.EnsureGroup(ctx, "gone", "g", store.FromResume)
	must(t, "ensure group", err)
	if g2.ID == g.ID {
		t.Errorf("recreated group has the deleted group's id %d", g.ID)
	}
}
