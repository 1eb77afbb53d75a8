// Package storetest is the contract every store.Store implementation must
// pass. An implementation's tests call Run with a function that opens a
// fresh, empty store enforcing the given limits:
//
//	func TestContract(t *testing.T) {
//		storetest.Run(t, func(t *testing.T, l store.Limits) store.Store {
//			s, err := sqlite.Open(filepath.Join(t.TempDir(), "db"), sqlite.Options{Limits: l})
//			if err != nil {
//				t.Fatal(err)
//			}
//			t.Cleanup(func() { s.Close() })
//			return s
//		})
//	}
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/server/store"
)

// Run runs the contract tests as parallel subtests of t. open is called
// once per subtest and must return a new, empty store that enforces limits
// and that it closes when the subtest ends (t.Cleanup); one subtest closes
// the store itself, so Close must be safe to call twice.
func Run(t *testing.T, open func(t *testing.T, limits store.Limits) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"Channels/CRUD", testChannelsCRUD},
		{"Channels/List", testChannelsList},
		{"Channels/DeleteCascades", testDeleteChannelCascades},
		{"Events/RoundTrip", testEventRoundTrip},
		{"Events/EmptyAndNilBody", testEmptyAndNilBody},
		{"Events/Defaults", testEventDefaults},
		{"Events/Errors", testEventErrors},
		{"Events/SeqIncreasing", testSeqIncreasing},
		{"Events/SeqNotReused", testSeqNotReused},
		{"Events/ConcurrentAppend", testConcurrentAppend},
		{"Events/ListPagination", testListPagination},
		{"Events/ListFilters", testListFilters},
		{"Events/NotUTF8", testNotUTF8},
		{"Events/StartAppend", testStartAppend},
		{"Events/StartAppendFailures", testStartAppendFailures},
		{"Events/VisibleInSeqOrder", testVisibleInSeqOrder},
		{"Events/RejectedCapDefault", testRejectedCapDefault},
		{"Events/ReplayOf", testReplayOf},
		{"Groups/EnsureNew", testEnsureNewGroup},
		{"Groups/EnsureExisting", testEnsureExistingGroup},
		{"Groups/Pending", testPending},
		{"Groups/PendingHorizon", testPendingHorizon},
		{"Groups/PendingMaxBody", testPendingMaxBody},
		{"Groups/Advance", testAdvanceGroup},
		{"Groups/Touch", testTouchGroup},
		{"Deliveries/Summary", testDeliverySummary},
		{"Deliveries/RoundTripAndOrder", testDeliveriesOrder},
		{"Deliveries/Errors", testDeliveryErrors},
		{"Progress/OneReport", testProgressReport},
		{"Progress/OutOfOrder", testProgressOutOfOrder},
		{"Prune/Nothing", testPruneNothing},
		{"Prune/EventsBefore", testPruneEventsBefore},
		{"Prune/MaxEventsPerChannel", testPruneCap},
		{"Prune/IdleGroups", testPruneIdleGroups},
		{"Prune/ExpiredChannels", testPruneExpiredChannels},
		{"Teams", testTeams},
		{"Tokens", testTokens},
		{"Ping", testPing},
		{"Close", testClose},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, open(t, store.Limits{}))
		})
	}
	// Tests of a store opened with other limits than the defaults.
	limited := []struct {
		name   string
		fn     func(t *testing.T, s store.Store)
		limits store.Limits
	}{
		{"Events/RejectedCapCount", testRejectedCapCount, store.Limits{RejectedEvents: 3, RejectedBytes: -1}},
		{"Events/RejectedCapBytes", testRejectedCapBytes, store.Limits{RejectedEvents: -1, RejectedBytes: 100}},
		{"Events/RejectedNoCap", testRejectedNoCap, store.Limits{RejectedEvents: -1, RejectedBytes: -1}},
	}
	for _, tc := range limited {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, open(t, tc.limits))
		})
	}
}

// baseTime is a fixed time with microseconds, the precision stores keep.
func baseTime() time.Time { return time.Date(2025, 3, 4, 5, 6, 7, 123456000, time.UTC) }

// wantErr fails unless errors.Is(err, target).
func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s: error %v, want one wrapping %q", what, err, target)
	}
}

// must fails the test now on err.
func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// checkNow fails unless got lies between before and after, give or take a
// second for a store whose clock is a database server's.
func checkNow(t *testing.T, what string, got, before, after time.Time) {
	t.Helper()
	if got.Before(before.Add(-time.Second)) || got.After(after.Add(time.Second)) {
		t.Errorf("%s = %v, want the current time (%v .. %v)", what, got, before, after)
	}
}

// mustChannel creates a channel with that id in team "".
func mustChannel(t *testing.T, s store.Store, id string) store.Channel {
	t.Helper()
	c := store.Channel{ID: id, CreatedAt: baseTime()}
	must(t, "create channel "+id, s.CreateChannel(t.Context(), c))
	return c
}

// newEvent returns an accepted event of the channel with a small body.
func newEvent(channelID, id string) *store.Event {
	return &store.Event{
		ID:         id,
		ChannelID:  channelID,
		Method:     "POST",
		Path:       "/hook",
		Headers:    []store.Header{{Name: "Content-Type", Value: "application/json"}},
		Body:       []byte(`{"id":"` + id + `"}`),
		RemoteAddr: "192.0.2.1:4321",
		ReceivedAt: baseTime(),
		State:      store.EventAccepted,
	}
}

// mustAppend appends events and fails the test now on error.
func mustAppend(t *testing.T, s store.Store, es ...*store.Event) {
	t.Helper()
	for _, e := range es {
		must(t, "append event "+e.ID, s.AppendEvent(t.Context(), e))
	}
}

// diffEvent describes how got differs from want ("" when equal). Times
// compare with Equal; nil and empty header lists are equal; bodies compare
// byte for byte, and a nil body only equals a nil body.
func diffEvent(want, got store.Event) string {
	var d []string
	add := func(field string, w, g any) { d = append(d, fmt.Sprintf("%s = %#v, want %#v", field, g, w)) }
	if want.ID != got.ID {
		add("ID", want.ID, got.ID)
	}
	if want.Seq != got.Seq {
		add("Seq", want.Seq, got.Seq)
	}
	if want.ChannelID != got.ChannelID {
		add("ChannelID", want.ChannelID, got.ChannelID)
	}
	if want.Method != got.Method {
		add("Method", want.Method, got.Method)
	}
	if want.Path != got.Path {
		add("Path", want.Path, got.Path)
	}
	if want.RawQuery != got.RawQuery {
		add("RawQuery", want.RawQuery, got.RawQuery)
	}
	if !headersEqual(want.Headers, got.Headers) {
		add("Headers", want.Headers, got.Headers)
	}
	if (want.Body == nil) != (got.Body == nil) || !bytes.Equal(want.Body, got.Body) {
		d = append(d, fmt.Sprintf("Body = %q (nil: %t), want %q (nil: %t)",
			got.Body, got.Body == nil, want.Body, want.Body == nil))
	}
	if want.RemoteAddr != got.RemoteAddr {
		add("RemoteAddr", want.RemoteAddr, got.RemoteAddr)
	}
	if !want.ReceivedAt.Equal(got.ReceivedAt) {
		add("ReceivedAt", want.ReceivedAt, got.ReceivedAt)
	}
	if want.State != got.State {
		add("State", want.State, got.State)
	}
	if want.RejectReason != got.RejectReason {
		add("RejectReason", want.RejectReason, got.RejectReason)
	}
	if want.ReplayOf != got.ReplayOf {
		add("ReplayOf", want.ReplayOf, got.ReplayOf)
	}
	if want.LastStatus != got.LastStatus {
		add("LastStatus", want.LastStatus, got.LastStatus)
	}
	if want.Attempts != got.Attempts {
		add("Attempts", want.Attempts, got.Attempts)
	}
	if want.DeliveredAny != got.DeliveredAny {
		add("DeliveredAny", want.DeliveredAny, got.DeliveredAny)
	}
	if len(d) == 0 {
		return ""
	}
	return fmt.Sprint(d)
}

func headersEqual(a, b []store.Header) bool {
	return len(a) == len(b) && (len(a) == 0 || reflect.DeepEqual(a, b))
}

// withoutBody returns e as ListEvents without WithBody returns it.
func withoutBody(e store.Event) store.Event {
	e.Body = nil
	return e
}

// seqs returns the Seq of each event.
func seqs(es []store.Event) []int64 {
	out := make([]int64, len(es))
	for i, e := range es {
		out[i] = e.Seq
	}
	return out
}

// ids returns the ID of each event.
func ids(es []store.Event) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.ID
	}
	return out
}

// checkIDs fails unless the events have exactly these ids, in order.
func checkIDs(t *testing.T, what string, got []store.Event, want ...string) {
	t.Helper()
	if g := ids(got); !slices.Equal(g, want) && (len(g) != 0 || len(want) != 0) {
		t.Errorf("%s: got events %q, want %q", what, g, want)
	}
}

// recordOne records one delivery on its own (RecordProgress with nothing else).
func recordOne(ctx context.Context, s store.Store, d store.Delivery) error {
	return s.RecordProgress(ctx, store.Progress{GroupID: d.GroupID, Deliveries: []store.Delivery{d}})
}

// advance raises a group's DoneThrough on its own.
func advance(ctx context.Context, s store.Store, groupID, seq int64) error {
	return s.RecordProgress(ctx, store.Progress{GroupID: groupID, DoneThrough: seq})
}

// touch sets a group's LastSeenAt on its own.
func touch(ctx context.Context, s store.Store, groupID int64, at time.Time) error {
	return s.RecordProgress(ctx, store.Progress{GroupID: groupID, SeenAt: at})
}

// pendingEvents returns the events of a Pending page with every body.
func pendingEvents(ctx context.Context, s store.Store, groupID, afterSeq int64, limit int) ([]store.Event, error) {
	page, err := s.Pending(ctx, store.PendingQuery{GroupID: groupID, AfterSeq: afterSeq, Limit: limit})
	return page.Events, err
}
