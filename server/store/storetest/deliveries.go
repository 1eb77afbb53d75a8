package storetest

import (
	"bytes"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/server/store"
)

// checkSummary fails unless the event's delivery summary is as given.
func checkSummary(t *testing.T, s store.Store, eventID string, attempts, lastStatus int, deliveredAny bool) {
	t.Helper()
	e, err := s.GetEvent(t.Context(), eventID)
	must(t, "get "+eventID, err)
	if e.Attempts != attempts || e.LastStatus != lastStatus || e.DeliveredAny != deliveredAny {
		t.Errorf("%s summary: Attempts %d, LastStatus %d, DeliveredAny %t; want %d, %d, %t",
			eventID, e.Attempts, e.LastStatus, e.DeliveredAny, attempts, lastStatus, deliveredAny)
	}
}

func testDeliverySummary(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustChannel(t, s, "c")
	mustAppend(t, s, newEvent("c", "e"), newEvent("c", "quiet"))
	g, err := s.EnsureGroup(ctx, "c", "g", store.FromResume)
	must(t, "ensure", err)
	g2, err := s.EnsureGroup(ctx, "c", "g2", store.FromResume)
	must(t, "ensure", err)
	record := func(id string, group int64, status int, errText string, done bool) {
		t.Helper()
		must(t, "record "+id, recordOne(ctx, s, store.Delivery{ID: id, EventID: "e", GroupID: group,
			Status: status, Error: errText, Done: done, StartedAt: baseTime()}))
	}
	checkSummary(t, s, "e", 0, 0, false)

	record("d1", g.ID, 0, "connection refused", false)
	checkSummary(t, s, "e", 1, 0, false)
	checkIDs(t, "pending after a failed attempt", pending(t, s, g.ID, 0, 10), "e", "quiet")

	record("d2", g.ID, 500, "", true) // any status counts as delivered
	checkSummary(t, s, "e", 2, 500, true)
	checkIDs(t, "pending after done", pending(t, s, g.ID, 0, 10), "quiet")
	checkIDs(t, "pending of the other group", pending(t, s, g2.ID, 0, 10), "e", "quiet")

	record("d3", g2.ID, 0, "timeout", false) // a failure keeps the last status
	checkSummary(t, s, "e", 3, 500, true)
	record("d4", g2.ID, 201, "", true)
	checkSummary(t, s, "e", 4, 201, true)
	checkIDs(t, "pending of the other group after done", pending(t, s, g2.ID, 0, 10), "quiet")
	checkSummary(t, s, "quiet", 0, 0, false)

	// Given up after the attempt cap: done, but not delivered.
	mustAppend(t, s, newEvent("c", "given-up"))
	must(t, "record", recordOne(ctx, s, store.Delivery{ID: "d5", EventID: "given-up", GroupID: g.ID,
		Error: "timeout", Done: true, StartedAt: baseTime()}))
	checkSummary(t, s, "given-up", 1, 0, false)
	checkIDs(t, "pending after giving up", pending(t, s, g.ID, 0, 10), "quiet")

	// Done without an error and without a status counts as delivered.
	mustAppend(t, s, newEvent("c", "no-status"))
	must(t, "record", recordOne(ctx, s, store.Delivery{ID: "d6", EventID: "no-status", GroupID: g.ID,
		Done: true, StartedAt: baseTime()}))
	checkSummary(t, s, "no-status", 1, 0, true)
}

func testDeliveriesOrder(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustChannel(t, s, "c")
	e := newEvent("c", "e")
	mustAppend(t, s, newEvent("c", "first"), e)
	g, err := s.EnsureGroup(ctx, "c", "g", store.FromResume)
	must(t, "ensure", err)

	body := make([]byte, 300)
	for i := range body {
		body[i] = byte(255 - i%256)
	}
	// Recorded out of order: Deliveries lists them by StartedAt.
	var want []store.Delivery
	for i, offset := range []time.Duration{2 * time.Second, 0, 5 * time.Second} {
		d := store.Delivery{
			ID:              fmt.Sprint("d", i),
			EventID:         "e",
			GroupID:         g.ID,
			GroupName:       "g",
			AgentID:         fmt.Sprint("agent-", i),
			Attempt:         i + 1,
			StartedAt:       baseTime().Add(offset),
			Duration:        time.Duration(i+1) * 1500 * time.Microsecond,
			Status:          200 + i,
			ResponseHeaders: []store.Header{{Name: "X-B", Value: "1"}, {Name: "x-a", Value: "2"}, {Name: "X-B", Value: "3"}},
			ResponseBody:    body[i:],
		}
		if i == 1 {
			d.Status, d.Error, d.ResponseHeaders, d.ResponseBody = 0, "dial tcp: connection refused", nil, nil
		}
		must(t, "record "+d.ID, recordOne(ctx, s, d))
		d.EventSeq, d.ChannelID = e.Seq, "c" // filled in from the event
		want = append(want, d)
	}
	want[0], want[1] = want[1], want[0] // by StartedAt: d1, d0, d2

	got, err := s.Deliveries(ctx, "e")
	must(t, "deliveries", err)
	if len(got) != len(want) {
		t.Fatalf("Deliveries returned %d, want %d", len(got), len(want))
	}
	for i := range want {
		w, g := want[i], got[i]
		if !w.StartedAt.Equal(g.StartedAt) || !headersEqual(w.ResponseHeaders, g.ResponseHeaders) ||
			!bytes.Equal(w.ResponseBody, g.ResponseBody) {
			t.Errorf("delivery %d: got %+v, want %+v", i, g, w)
			continue
		}
		w.StartedAt, g.StartedAt = time.Time{}, time.Time{}
		w.ResponseHeaders, g.ResponseHeaders = nil, nil
		w.ResponseBody, g.ResponseBody = nil, nil
		if !reflect.DeepEqual(w, g) {
			t.Errorf("delivery %d: got %+v, want %+v", i, g, w)
		}
	}
	ds, err := s.Deliveries(ctx, "first")
	must(t, "deliveries of an event without any", err)
	if len(ds) != 0 {
		t.Errorf("Deliveries of an event never delivered = %d", len(ds))
	}
}

func testDeliveryErrors(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustChannel(t, s, "c")
	mustAppend(t, s, newEvent("c", "e"))
	g, err := s.EnsureGroup(ctx, "c", "g", store.FromResume)
	must(t, "ensure", err)
	d := store.Delivery{ID: "d", EventID: "e", GroupID: g.ID, Status: 200, StartedAt: baseTime()}
	must(t, "record", recordOne(ctx, s, d))
	wantErr(t, "record a taken id", recordOne(ctx, s, d), store.ErrConflict)
	checkSummary(t, s, "e", 1, 200, true) // the failed record changed nothing

	// A taken id fails the whole report: nothing of it is written.
	mustAppend(t, s, newEvent("c", "other"))
	err = s.RecordProgress(ctx, store.Progress{GroupID: g.ID, DoneThrough: 99, Deliveries: []store.Delivery{
		{ID: "fresh", EventID: "other", Status: 201, Done: true, StartedAt: baseTime()},
		d,
	}})
	wantErr(t, "record a report holding a taken id", err, store.ErrConflict)
	checkSummary(t, s, "other", 0, 0, false)
	if gs, err := s.ListGroups(ctx, "c"); err != nil || len(gs) != 1 || gs[0].DoneThrough != 0 {
		t.Errorf("group after a failed report: %+v, %v; want DoneThrough 0", gs, err)
	}

	// A record of an event that is gone is skipped; the others are kept.
	missing := d
	missing.ID, missing.EventID = "d2", "no-such-event"
	must(t, "record a report with a missing event", s.RecordProgress(ctx, store.Progress{
		GroupID:    g.ID,
		Deliveries: []store.Delivery{missing, {ID: "d3", EventID: "other", Status: 202, StartedAt: baseTime()}},
	}))
	ds, err := s.Deliveries(ctx, "no-such-event")
	must(t, "deliveries of a missing event", err)
	if len(ds) != 0 {
		t.Errorf("Deliveries of a missing event = %+v", ds)
	}
	checkSummary(t, s, "other", 1, 202, true)

	// A group that is gone: its deliveries are still kept.
	must(t, "record for a missing group", recordOne(ctx, s, store.Delivery{ID: "d4", EventID: "e",
		GroupID: 9999, Status: 500, Done: true, StartedAt: baseTime()}))
	checkSummary(t, s, "e", 2, 500, true)
}
