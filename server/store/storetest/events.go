package storetest

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/server/store"
)

func testEventRoundTrip(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustChannel(t, s, "c")
	// Every byte value, twice, then bytes that are not valid UTF-8 and a
	// trailing NUL: nothing may be re-encoded.
	body := make([]byte, 0, 600)
	for range 2 {
		for b := range 256 {
			body = append(body, byte(b))
		}
	}
	body = append(body, 0xc3, 0x28, 0xa0, 0xa1, 0xe2, 0x28, 0xa1, 0xf0, 0x28, 0x8c, 0x28, 0)
	e := &store.Event{
		ID:        "ev-1",
		ChannelID: "c",
		Method:    "PATCH",
		Path:      "/a/b%2Fc/ü",
		RawQuery:  "x=1&x=2&y=%20&&z",
		Headers: []store.Header{
			{Name: "x-lower", Value: "1"},
			{Name: "X-Repeat", Value: "first"},
			{Name: "Content-Type", Value: "application/octet-stream"},
			{Name: "X-REPEAT", Value: "second"},
			{Name: "X-Repeat", Value: "third, with comma"},
			{Name: "X-Empty", Value: ""},
			{Name: "X-Odd", Value: `<&> "quoted" \ ü 日本`},
		},
		Body:         body,
		RemoteAddr:   "[2001:db8::1]:54321",
		ReceivedAt:   baseTime(),
		State:        store.EventRejected,
		RejectReason: "signature mismatch",
	}
	must(t, "append", s.AppendEvent(ctx, e))
	if e.Seq <= 0 {
		t.Fatalf("AppendEvent set Seq = %d, want > 0", e.Seq)
	}
	if e.Size != len(body) {
		t.Errorf("AppendEvent set Size = %d, want %d", e.Size, len(body))
	}
	want := *e
	want.Headers = slices.Clone(e.Headers)
	want.Body = slices.Clone(body)

	got, err := s.GetEvent(ctx, e.ID)
	must(t, "get", err)
	if d := diffEvent(want, got); d != "" {
		t.Errorf("GetEvent: %s", d)
	}
	es, err := s.ListEvents(ctx, store.EventQuery{ChannelID: "c", WithBody: true})
	must(t, "list with bodies", err)
	if len(es) != 1 {
		t.Fatalf("ListEvents returned %d events, want 1", len(es))
	}
	if d := diffEvent(want, es[0]); d != "" {
		t.Errorf("ListEvents WithBody: %s", d)
	}
	es, err = s.ListEvents(ctx, store.EventQuery{ChannelID: "c"})
	must(t, "list without bodies", err)
	if len(es) != 1 {
		t.Fatalf("ListEvents returned %d events, want 1", len(es))
	}
	if es[0].Size != len(body) {
		t.Errorf("ListEvents without bodies: Size = %d, want %d", es[0].Size, len(body))
	}
	if d := diffEvent(withoutBody(want), es[0]); d != "" {
		t.Errorf("ListEvents without bodies: %s", d)
	}

	// The same bytes as an accepted event, through Pending.
	e2 := want
	e2.ID, e2.State, e2.RejectReason = "ev-2", store.EventAccepted, ""
	must(t, "append", s.AppendEvent(ctx, &e2))
	g, err := s.EnsureGroup(ctx, "c", "g", store.FromResume)
	must(t, "ensure group", err)
	es, err = pendingEvents(ctx, s, g.ID, 0, 10)
	must(t, "pending", err)
	if len(es) != 1 {
		t.Fatalf("Pending returned %d events, want 1", len(es))
	}
	if d := diffEvent(e2, es[0]); d != "" {
		t.Errorf("Pending: %s", d)
	}
}

func testEmptyAndNilBody(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustChannel(t, s, "c")
	nilBody, emptyBody := newEvent("c", "nil"), newEvent("c", "empty")
	nilBody.Body, emptyBody.Body = nil, []byte{}
	nilBody.Headers = nil
	mustAppend(t, s, nilBody, emptyBody)
	for _, id := range []string{"nil", "empty"} {
		got, err := s.GetEvent(ctx, id)
		must(t, "get "+id, err)
		if got.Body == nil || len(got.Body) != 0 {
			t.Errorf("GetEvent(%s).Body = %#v, want empty and non-nil (nil means not loaded)", id, got.Body)
		}
	}
	es, err := s.ListEvents(ctx, store.EventQuery{ChannelID: "c", WithBody: true})
	must(t, "list", err)
	for _, e := range es {
		if e.Body == nil || len(e.Body) != 0 {
			t.Errorf("ListEvents WithBody: %s Body = %#v, want empty and non-nil", e.ID, e.Body)
		}
	}
	if len(es) == 2 && len(es[1].Headers) != 0 {
		t.Errorf("event without headers got headers %v", es[1].Headers)
	}
}

func testEventDefaults(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustChannel(t, s, "c")
	e := newEvent("c", "e")
	e.ReceivedAt, e.State = time.Time{}, ""
	before := time.Now()
	mustAppend(t, s, e)
	after := time.Now()
	checkNow(t, "ReceivedAt set by AppendEvent", e.ReceivedAt, before, after)
	if e.State != store.EventAccepted {
		t.Errorf("State set by AppendEvent = %q, want %q", e.State, store.EventAccepted)
	}
	got, err := s.GetEvent(ctx, "e")
	must(t, "get", err)
	checkNow(t, "stored ReceivedAt", got.ReceivedAt, before, after)
	if got.State != store.EventAccepted {
		t.Errorf("stored State = %q, want %q", got.State, store.EventAccepted)
	}
}

func testEventErrors(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustChannel(t, s, "c")
	orphan := newEvent("no-such-channel", "orphan")
	wantErr(t, "append to a missing channel", s.AppendEvent(ctx, orphan), store.ErrNotFound)
	if orphan.Seq != 0 {
		t.Errorf("failed AppendEvent set Seq = %d", orphan.Seq)
	}
	mustAppend(t, s, newEvent("c", "e"))
	dup := newEvent("c", "e")
	wantErr(t, "append a taken id", s.AppendEvent(ctx, dup), store.ErrConflict)
	if dup.Seq != 0 {
		t.Errorf("failed AppendEvent set Seq = %d", dup.Seq)
	}
	_, err := s.GetEvent(ctx, "missing")
	wantErr(t, "get a missing event", err, store.ErrNotFound)
	_, err = s.GetEvent(ctx, "orphan")
	wantErr(t, "get the event that failed", err, store.ErrNotFound)
	// Failures leave the store working.
	mustAppend(t, s, newEvent("c", "after"))
}

func testSeqIncreasing(t *testing.T, s store.Store) {
	ctx := t.Context()
	max0, err := s.MaxSeq(ctx)
	must(t, "max seq", err)
	if max0 != 0 {
		t.Errorf("MaxSeq of an empty store = %d, want 0", max0)
	}
	mustChannel(t, s, "a")
	mustChannel(t, s, "b")
	var last int64
	for i := range 20 {
		e := newEvent([]string{"a", "b"}[i%2], fmt.Sprint("e", i))
		mustAppend(t, s, e)
		if e.Seq <= last {
			t.Fatalf("event %d got Seq %d after %d, want strictly increasing", i, e.Seq, last)
		}
		last = e.Seq
		m, err := s.MaxSeq(ctx)
		must(t, "max seq", err)
		if m != e.Seq {
			t.Fatalf("MaxSeq = %d right after appending seq %d", m, e.Seq)
		}
	}
}

func testSeqNotReused(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustChannel(t, s, "c")
	e1, e2 := newEvent("c", "e1"), newEvent("c", "e2")
	mustAppend(t, s, e1, e2)
	must(t, "delete channel", s.DeleteChannel(ctx, "c"))
	m, err := s.MaxSeq(ctx)
	must(t, "max seq", err)
	if m < e2.Seq {
		t.Errorf("MaxSeq after deleting the newest events = %d, want >= %d", m, e2.Seq)
	}
	mustChannel(t, s, "c")
	e3 := newEvent("c", "e3")
	mustAppend(t, s, e3)
	if e3.Seq <= e2.Seq {
		t.Errorf("Seq %d reused after deleting seq %d: cursors would skip it", e3.Seq, e2.Seq)
	}
}

func testConcurrentAppend(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustChannel(t, s, "c")
	const n = 200
	events := make([]*store.Event, n)
	var wg sync.WaitGroup
	for i := range n {
		events[i] = newEvent("c", fmt.Sprint("e", i))
		events[i].Body = fmt.Appendf(nil, "body %d", i)
		wg.Go(func() {
			if err := s.AppendEvent(ctx, events[i]); err != nil {
				t.Errorf("append %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	bySeq := make(map[int64]string)
	var maxSeq int64
	for _, e := range events {
		if other, dup := bySeq[e.Seq]; dup {
			t.Errorf("events %s and %s both got Seq %d", other, e.ID, e.Seq)
		}
		bySeq[e.Seq] = e.ID
		maxSeq = max(maxSeq, e.Seq)
		got, err := s.GetEvent(ctx, e.ID)
		if err != nil {
			t.Errorf("get %s: %v", e.ID, err)
			continue
		}
		if got.Seq != e.Seq || string(got.Body) != string(e.Body) {
			t.Errorf("get %s: Seq %d body %q, want %d %q", e.ID, got.Seq, got.Body, e.Seq, e.Body)
		}
	}
	m, err := s.MaxSeq(ctx)
	must(t, "max seq", err)
	if m != maxSeq {
		t.Errorf("MaxSeq = %d, want %d", m, maxSeq)
	}
	es, err := s.ListEvents(ctx, store.EventQuery{ChannelID: "c", Limit: n + 1})
	must(t, "list", err)
	got := seqs(es)
	if len(got) != n || !slices.IsSortedFunc(got, func(a, b int64) int { return int(b - a) }) {
		t.Errorf("ListEvents returned %d events, seqs %v; want %d, newest first", len(got), got, n)
	}
}

// testListPagination pages through 60 events, newest first.
func testListPagination(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustChannel(t, s, "c")
	mustChannel(t, s, "other")
	var all []int64
	for i := range 60 {
		e := newEvent("c", fmt.Sprint("e", i))
		mustAppend(t, s, e, newEvent("other", fmt.Sprint("o", i)))
		all = append(all, e.Seq)
	}
	slices.Reverse(all) // newest first

	es, err := s.ListEvents(ctx, store.EventQuery{ChannelID: "c"})
	must(t, "list", err)
	if got := seqs(es); !slices.Equal(got, all[:50]) {
		t.Errorf("ListEvents with no limit = %v, want the newest 50 %v", got, all[:50])
	}

	var paged []int64
	q := store.EventQuery{ChannelID: "c", Limit: 7}
	for range 20 {
		es, err := s.ListEvents(ctx, q)
		must(t, "list page", err)
		if len(es) > 7 {
			t.Fatalf("page of %d events, limit 7", len(es))
		}
		if len(es) == 0 {
			break
		}
		paged = append(paged, seqs(es)...)
		q.BeforeSeq = es[len(es)-1].Seq
	}
	if !slices.Equal(paged, all) {
		t.Errorf("paging with BeforeSeq gave %v, want %v", paged, all)
	}

	es, err = s.ListEvents(ctx, store.EventQuery{Limit: 1000})
	must(t, "list every channel", err)
	if len(es) != 120 {
		t.Errorf("ListEvents without a channel returned %d events, want all 120", len(es))
	}

	es, err = s.ListEvents(ctx, store.EventQuery{ChannelID: "c", AfterSeq: all[5], Limit: 100})
	must(t, "list after", err)
	if got := seqs(es); !slices.Equal(got, all[:5]) {
		t.Errorf("AfterSeq %d gave %v, want %v", all[5], got, all[:5])
	}
	es, err = s.ListEvents(ctx, store.EventQuery{ChannelID: "c", AfterSeq: all[10], BeforeSeq: all[5], Limit: 100})
	must(t, "list between", err)
	if got := seqs(es); !slices.Equal(got, all[6:10]) {
		t.Errorf("AfterSeq and BeforeSeq gave %v, want %v", got, all[6:10])
	}
}

func testListFilters(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustChannel(t, s, "c")
	mustChannel(t, s, "other")
	g, err := s.EnsureGroup(ctx, "c", "g", store.FromResume)
	must(t, "ensure group", err)

	mk := func(id, method string, at time.Duration, headers []store.Header, body string) *store.Event {
		e := newEvent("c", id)
		e.Method, e.ReceivedAt, e.Headers, e.Body = method, baseTime().Add(at), headers, []byte(body)
		return e
	}
	mustAppend(t, s,
		mk("get", "GET", 0, nil, ""),
		mk("stripe", "POST", time.Second, []store.Header{{Name: "Stripe-Signature", Value: "t=1,v1=abc"}}, `{"type":"charge.succeeded"}`),
		mk("github", "POST", 2*time.Second, []store.Header{{Name: "X-GitHub-Event", Value: "Push"}}, "\x00\x01binary PAYLOAD\xff"),
		mk("html", "PUT", 3*time.Second, []store.Header{{Name: "X-Note", Value: `<a href="x">&amp;</a>`}}, "plain"),
	)
	o := newEvent("other", "other")
	o.Headers = []store.Header{{Name: "Stripe-Signature", Value: "x"}}
	mustAppend(t, s, o)
	for id, status := range map[string]int{"stripe": 200, "github": 500} {
		must(t, "record", recordOne(ctx, s, store.Delivery{ID: "d-" + id, EventID: id, GroupID: g.ID,
			Status: status, StartedAt: baseTime()}))
	}

	for _, tc := range []struct {
		name string
		q    store.EventQuery
		want []string
	}{
		{"all", store.EventQuery{}, []string{"html", "github", "stripe", "get"}},
		{"method", store.EventQuery{Method: "POST"}, []string{"github", "stripe"}},
		{"status", store.EventQuery{Status: 500}, []string{"github"}},
		{"status none", store.EventQuery{Status: 404}, nil},
		{"since", store.EventQuery{Since: baseTime().Add(time.Second)}, []string{"html", "github", "stripe"}},
		{"until", store.EventQuery{Until: baseTime().Add(2 * time.Second)}, []string{"stripe", "get"}},
		{"since until", store.EventQuery{Since: baseTime().Add(time.Second), Until: baseTime().Add(3 * time.Second)},
			[]string{"github", "stripe"}},
		{"text header name", store.EventQuery{Text: "stripe-SIGNATURE"}, []string{"stripe"}},
		{"text header value", store.EventQuery{Text: "push"}, []string{"github"}},
		{"text body", store.EventQuery{Text: "Charge.Succeeded"}, []string{"stripe"}},
		{"text binary body", store.EventQuery{Text: "binary payload"}, []string{"github"}},
		{"text html chars", store.EventQuery{Text: `<a href="x">&amp;`}, []string{"html"}},
		{"text no match", store.EventQuery{Text: "nowhere"}, nil},
		{"combined", store.EventQuery{Method: "POST", Text: "v1=", Status: 200}, []string{"stripe"}},
		{"combined no match", store.EventQuery{Method: "GET", Text: "stripe"}, nil},
	} {
		tc.q.ChannelID = "c"
		es, err := s.ListEvents(ctx, tc.q)
		must(t, tc.name, err)
		checkIDs(t, "ListEvents "+tc.name, es, tc.want...)
		for _, e := range es {
			if e.Body != nil {
				t.Errorf("%s: %s has a body without WithBody", tc.name, e.ID)
			}
		}
	}
}
