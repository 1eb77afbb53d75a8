package storetest

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/hookrelay/hookrelay/server/store"
)

// testNotUTF8 checks that header values, response header values and the
// raw query are kept as exact bytes when they are not valid UTF-8.
func testNotUTF8(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustChannel(t, s, "c")
	e := newEvent("c", "e")
	e.RawQuery = "sig=a\xffb&x=%ff"
	e.Headers = []store.Header{
		{Name: "X-Sig", Value: "a\xffb"},
		{Name: "X-Latin", Value: "caf\xe9"},
		{Name: "X-Broken", Value: "\xc3\x28 ok \xe2\x82"},
		{Name: "X-Plain", Value: "caf\u00e9"},
	}
	mustAppend(t, s, e)
	want := *e

	got, err := s.GetEvent(ctx, "e")
	must(t, "get", err)
	if d := diffEvent(want, got); d != "" {
		t.Errorf("GetEvent: %s", d)
	}
	es, err := s.ListEvents(ctx, store.EventQuery{ChannelID: "c"})
	must(t, "list", err)
	if len(es) != 1 {
		t.Fatalf("ListEvents returned %d events, want 1", len(es))
	}
	if d := diffEvent(withoutBody(want), es[0]); d != "" {
		t.Errorf("ListEvents: %s", d)
	}
	g, err := s.EnsureGroup(ctx, "c", "g", store.FromResume)
	must(t, "ensure group", err)
	es = pending(t, s, g.ID, 0, 10)
	if len(es) != 1 {
		t.Fatalf("Pending returned %d events, want 1", len(es))
	}
	if d := diffEvent(want, es[0]); d != "" {
		t.Errorf("Pending: %s", d)
	}

	respHeaders := []store.Header{{Name: "X-Resp", Value: "\xfe\xff"}, {Name: "X-Ok", Value: "fine"}}
	must(t, "record", recordOne(ctx, s, store.Delivery{ID: "d", EventID: "e", GroupID: g.ID, Status: 200,
		ResponseHeaders: respHeaders, ResponseBody: []byte("\xff"), StartedAt: baseTime()}))
	ds, err := s.Deliveries(ctx, "e")
	must(t, "deliveries", err)
	if len(ds) != 1 || !headersEqual(ds[0].ResponseHeaders, respHeaders) || !bytes.Equal(ds[0].ResponseBody, []byte("\xff")) {
		t.Errorf("Deliveries = %+v, want response headers %q and body \\xff", ds, respHeaders)
	}

	for _, text := range []string{"a\xffb", "CAF\xe9", "\xe2\x82"} {
		es, err := s.ListEvents(ctx, store.EventQuery{ChannelID: "c", Text: text})
		must(t, "search", err)
		checkIDs(t, fmt.Sprintf("ListEvents with Text %q", text), es, "e")
	}
}

func testStartAppend(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustChannel(t, s, "c")
	e := newEvent("c", "e")
	commit, err := s.StartAppend(ctx, e)
	must(t, "start append", err)
	if e.Seq <= 0 || e.Size != len(e.Body) || e.State != store.EventAccepted {
		t.Errorf("after StartAppend: Seq %d, Size %d, State %q; want a seq, size %d, accepted",
			e.Seq, e.Size, e.State, len(e.Body))
	}
	must(t, "wait for the commit", commit.Wait(ctx))
	select {
	case <-commit.Done():
	default:
		t.Error("Done is not closed after Wait returned")
	}
	if err := commit.Err(); err != nil {
		t.Errorf("Err after a successful commit: %v", err)
	}
	got, err := s.GetEvent(ctx, "e")
	must(t, "get", err)
	if got.Seq != e.Seq {
		t.Errorf("stored Seq = %d, StartAppend said %d", got.Seq, e.Seq)
	}

	// Many in flight at once: each learns its seq before any commit is
	// awaited, in the order the appends were started.
	last := e.Seq
	var commits []*store.Commit
	var started []*store.Event
	for i := range 50 {
		e := newEvent("c", fmt.Sprint("e", i))
		c, err := s.StartAppend(ctx, e)
		must(t, "start append", err)
		if e.Seq <= last {
			t.Errorf("append %d got Seq %d after %d, want strictly increasing", i, e.Seq, last)
		}
		last = e.Seq
		commits = append(commits, c)
		started = append(started, e)
	}
	for i, c := range commits {
		must(t, "wait", c.Wait(ctx))
		if got, err := s.GetEvent(ctx, started[i].ID); err != nil || got.Seq != started[i].Seq {
			t.Errorf("event %s: Seq %d, %v; want %d", started[i].ID, got.Seq, err, started[i].Seq)
		}
	}
	if m, err := s.MaxSeq(ctx); err != nil || m < last {
		t.Errorf("MaxSeq = %d, %v; want at least %d", m, err, last)
	}
}

// testStartAppendFailures checks that a failed append reports through its
// Commit, that its seq is never reused, and that StartAppend fails without
// a seq when the store did not take the event.
func testStartAppendFailures(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustChannel(t, s, "c")
	orphan := newEvent("no-such-channel", "orphan")
	c, err := s.StartAppend(ctx, orphan)
	must(t, "start an append to a missing channel", err)
	wantErr(t, "commit of an append to a missing channel", c.Wait(ctx), store.ErrNotFound)
	wantErr(t, "Err after the failed commit", c.Err(), store.ErrNotFound)

	mustAppend(t, s, newEvent("c", "e"))
	dup := newEvent("c", "e")
	c, err = s.StartAppend(ctx, dup)
	must(t, "start an append of a taken id", err)
	wantErr(t, "commit of a taken id", c.Wait(ctx), store.ErrConflict)
	if dup.Seq <= orphan.Seq || orphan.Seq <= 0 {
		t.Errorf("failed appends got seqs %d and %d, want increasing seqs", orphan.Seq, dup.Seq)
	}
	next := newEvent("c", "next")
	mustAppend(t, s, next)
	if next.Seq <= dup.Seq {
		t.Errorf("Seq %d after a failed append with seq %d: a seq was reused", next.Seq, dup.Seq)
	}
	_, err = s.GetEvent(ctx, "orphan")
	wantErr(t, "get the event whose commit failed", err, store.ErrNotFound)
	if got, err := s.GetEvent(ctx, "e"); err != nil || got.Seq == dup.Seq {
		t.Errorf("the first event with the id: Seq %d, %v; want it untouched", got.Seq, err)
	}

	canceled, cancel := context.WithCancel(ctx)
	cancel()
	late := newEvent("c", "late")
	if _, err := s.StartAppend(canceled, late); err == nil {
		t.Error("StartAppend with a canceled context succeeded")
	}
	if late.Seq != 0 {
		t.Errorf("StartAppend that failed set Seq %d", late.Seq)
	}
	_, err = s.GetEvent(ctx, "late")
	wantErr(t, "get the event whose StartAppend failed", err, store.ErrNotFound)
}

// testVisibleInSeqOrder appends from several goroutines to two channels
// while reading one channel's backlog, and checks the visibility rule:
// once a seq is seen, no lower seq of the channel appears later, and the
// page's Horizon is the highest seq seen.
func testVisibleInSeqOrder(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustChannel(t, s, "c")
	mustChannel(t, s, "other")
	g, err := s.EnsureGroup(ctx, "c", "g", store.FromResume)
	must(t, "ensure group", err)
	const writers, each = 4, 40
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		committed []int64                  // seqs of channel c
		appended  = make(chan struct{}, 1) // an append committed since the last read
	)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				e := newEvent([]string{"c", "other"}[i%2], fmt.Sprintf("w%d-%d", w, i))
				c, err := s.StartAppend(ctx, e)
				if err == nil {
					err = c.Wait(ctx)
				}
				if err != nil {
					t.Errorf("append %s: %v", e.ID, err)
					return
				}
				if e.ChannelID == "c" {
					mu.Lock()
					committed = append(committed, e.Seq)
					mu.Unlock()
				}
				select {
				case appended <- struct{}{}:
				default:
				}
			}
		})
	}
	writing := make(chan struct{})
	go func() { wg.Wait(); close(writing) }()

	var prev map[int64]bool
	var prevMax int64
	check := func() {
		page, err := s.Pending(ctx, store.PendingQuery{GroupID: g.ID, Limit: writers * each})
		must(t, "pending", err)
		seen := make(map[int64]bool, len(page.Events))
		var top int64
		for _, e := range page.Events {
			seen[e.Seq] = true
			top = max(top, e.Seq)
			if e.Seq <= prevMax && !prev[e.Seq] {
				t.Errorf("seq %d became visible after seq %d of its channel was seen", e.Seq, prevMax)
			}
		}
		if page.Horizon != top {
			t.Errorf("Horizon = %d, want the highest seq of the channel seen, %d", page.Horizon, top)
		}
		prev, prevMax = seen, top
	}
	for running := true; running; {
		select {
		case <-writing:
			running = false
		case <-appended:
			check()
		}
	}
	check()
	slices.Sort(committed)
	for _, seq := range committed {
		if !prev[seq] {
			t.Errorf("committed seq %d is not pending", seq)
		}
	}
}

// rejected returns a rejected event of the channel with a body of n bytes.
func rejected(channelID, id string, n int) *store.Event {
	e := newEvent(channelID, id)
	e.State, e.RejectReason = store.EventRejected, "signature mismatch"
	e.Body = bytes.Repeat([]byte{'r'}, n)
	return e
}

// testRejectedCapCount runs with at most 3 rejected events per channel.
func testRejectedCapCount(t *testing.T, s store.Store) {
	mustChannel(t, s, "c")
	mustChannel(t, s, "other")
	mustAppend(t, s, newEvent("c", "a1"), rejected("other", "o1", 10))
	for i := 1; i <= 5; i++ {
		mustAppend(t, s, rejected("c", fmt.Sprint("r", i), 10))
		if i == 2 {
			mustAppend(t, s, newEvent("c", "a2"))
		}
	}
	checkIDs(t, "events after 5 rejected with a cap of 3", listIDs(t, s, "c"), "r5", "r4", "r3", "a2", "a1")
	checkIDs(t, "another channel's rejected events", listIDs(t, s, "other"), "o1")
	_, err := s.GetEvent(t.Context(), "r1")
	wantErr(t, "get a dropped rejected event", err, store.ErrNotFound)
}

// testRejectedCapBytes runs with at most 100 body bytes of rejected events
// per channel.
func testRejectedCapBytes(t *testing.T, s store.Store) {
	mustChannel(t, s, "c")
	big := newEvent("c", "accepted-big")
	big.Body = bytes.Repeat([]byte{'a'}, 500) // accepted events do not count
	mustAppend(t, s, big, rejected("c", "r1", 40), rejected("c", "r2", 40))
	checkIDs(t, "80 bytes of rejected events", listIDs(t, s, "c"), "r2", "r1", "accepted-big")
	mustAppend(t, s, rejected("c", "r3", 40))
	checkIDs(t, "120 bytes of rejected events", listIDs(t, s, "c"), "r3", "r2", "accepted-big")
	mustAppend(t, s, rejected("c", "r4", 150)) // over the cap alone: kept, as the newest
	checkIDs(t, "one rejected event over the cap", listIDs(t, s, "c"), "r4", "accepted-big")
	mustAppend(t, s, rejected("c", "r5", 0))
	checkIDs(t, "an empty rejected event after a big one", listIDs(t, s, "c"), "r5", "accepted-big")
}

// appendRejectedConcurrently appends n small rejected events to channel c,
// each from a goroutine of its own, and returns them with their seqs.
func appendRejectedConcurrently(t *testing.T, s store.Store, n int) []*store.Event {
	t.Helper()
	mustChannel(t, s, "c")
	es := make([]*store.Event, n)
	var wg sync.WaitGroup
	for i := range es {
		es[i] = rejected("c", fmt.Sprint("r", i), 10)
		wg.Go(func() {
			if err := s.AppendEvent(t.Context(), es[i]); err != nil {
				t.Errorf("append %s: %v", es[i].ID, err)
			}
		})
	}
	wg.Wait()
	return es
}

// testRejectedCapDefault checks the default count cap: the oldest (lowest
// seq) rejected events go first, whatever order the appends raced in.
func testRejectedCapDefault(t *testing.T, s store.Store) {
	es := appendRejectedConcurrently(t, s, store.DefaultRejectedEvents+1)
	slices.SortFunc(es, func(a, b *store.Event) int { return int(b.Seq - a.Seq) })
	var want []string
	for _, e := range es[:store.DefaultRejectedEvents] {
		want = append(want, e.ID)
	}
	checkIDs(t, "rejected events over the default cap", listIDs(t, s, "c"), want...)
}

// testRejectedNoCap runs with both caps off.
func testRejectedNoCap(t *testing.T, s store.Store) {
	es := appendRejectedConcurrently(t, s, store.DefaultRejectedEvents+1)
	if n := len(listIDs(t, s, "c")); n != len(es) {
		t.Errorf("%d rejected events kept without a cap, want all %d", n, len(es))
	}
}
