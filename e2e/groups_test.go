package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/client"
	"github.com/hookrelay/hookrelay/server"
	"github.com/hookrelay/hookrelay/server/store/sqlite"
)

func TestTwoGroupsEachGetEveryEvent(t *testing.T) {
	t.Parallel()
	bc1, t1 := newBodyCounter(t)
	bc2, t2 := newBodyCounter(t)
	relay := startRelay(t)
	ch := relay.channel(t, client.CreateChannel{Async: true})
	relay.startAgent(t, ch, t1.URL, group("alpha"))
	relay.startAgent(t, ch, t2.URL, group("beta"))
	const n = 30
	for i := range n {
		resp, _ := post(t, relay.ingress(ch), "text/plain", []byte(fmt.Sprint("ev-", i)))
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	waitFor(t, 15*time.Second, "both groups got every event", func() bool {
		for i := range n {
			if bc1.count(fmt.Sprint("ev-", i)) == 0 || bc2.count(fmt.Sprint("ev-", i)) == 0 {
				return false
			}
		}
		return true
	})
}

func TestAgentsOfOneGroupSplitEvents(t *testing.T) {
	t.Parallel()
	bc1, t1 := newBodyCounter(t)
	bc2, t2 := newBodyCounter(t)
	relay := startRelay(t)
	ch := relay.channel(t, client.CreateChannel{Async: true})
	relay.startAgent(t, ch, t1.URL, group("shared"))
	relay.startAgent(t, ch, t2.URL, group("shared"), func(c *client.Config) { c.Host = "other-host" })
	const n = 60
	for i := range n {
		post(t, relay.ingress(ch), "text/plain", []byte(fmt.Sprint("ev-", i)))
	}
	waitFor(t, 15*time.Second, "every event at one of the agents", func() bool {
		for i := range n {
			if bc1.count(fmt.Sprint("ev-", i))+bc2.count(fmt.Sprint("ev-", i)) == 0 {
				return false
			}
		}
		return true
	})
	first, second := 0, 0
	for i := range n {
		a, b := bc1.count(fmt.Sprint("ev-", i)), bc2.count(fmt.Sprint("ev-", i))
		if a > 0 && b > 0 {
			t.Errorf("ev-%d went to both agents of the group", i)
		}
		first += a
		second += b
	}
	if first == 0 || second == 0 {
		t.Errorf("the group did not share the load: %d and %d", first, second)
	}
}

func TestRetentionCapAndTTL(t *testing.T) {
	t.Parallel()
	relay := startRelay(t, func(c *server.Config) {
		c.PruneInterval = 50 * time.Millisecond
		c.MaxEventsPerChannel = 3
	})
	ch := relay.channel(t, client.CreateChannel{})
	for i := range 5 {
		post(t, relay.ingress(ch), "text/plain", []byte(fmt.Sprint("ev-", i)))
	}
	waitFor(t, 10*time.Second, "the channel cut to its 3 newest events", func() bool {
		page, err := relay.api().ListEvents(t.Context(), ch, url.Values{"include": {"body"}})
		if err != nil || len(page.Events) != 3 {
			return false
		}
		return *page.Events[0].Body == "ev-4" && *page.Events[2].Body == "ev-2"
	})

	short := relay.channel(t, client.CreateChannel{TTL: "300ms"})
	post(t, relay.ingress(short), "text/plain", []byte("x"))
	waitFor(t, 10*time.Second, "the TTL channel deleted", func() bool {
		_, err := relay.api().ListEvents(t.Context(), short, nil)
		return client.IsStatus(err, http.StatusNotFound)
	})
	resp, _ := post(t, relay.ingress(short), "text/plain", []byte("late"))
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("ingress of an expired channel: %d", resp.StatusCode)
	}
}

func TestRetentionByAge(t *testing.T) {
	t.Parallel()
	relay := startRelay(t, func(c *server.Config) {
		c.PruneInterval = 50 * time.Millisecond
		c.Retention = 300 * time.Millisecond
	})
	ch := relay.channel(t, client.CreateChannel{})
	post(t, relay.ingress(ch), "text/plain", []byte("old"))
	waitFor(t, 10*time.Second, "the old event deleted", func() bool {
		page, err := relay.api().ListEvents(t.Context(), ch, nil)
		return err == nil && len(page.Events) == 0
	})
}

func TestStoreFailureGives503AndRecovers(t *testing.T) {
	t.Parallel()
	relay := startRelayDB(t, sqlite.Options{MaxSize: 2 << 20})
	victim := relay.channel(t, client.CreateChannel{})
	body := make([]byte, 64<<10)
	accepted, refused := 0, 0
	for i := 0; i < 100 && refused < 3; i++ {
		resp, got := post(t, relay.ingress(victim), "application/octet-stream", body)
		switch resp.StatusCode {
		case http.StatusAccepted:
			accepted++
		case http.StatusServiceUnavailable:
			refused++
			if resp.Header.Get("Retry-After") == "" || !strings.Contains(string(got), "store_unavailable") {
				t.Fatalf("503 without Retry-After or code: %s", got)
			}
		default:
			t.Fatalf("status %d %s while filling the store", resp.StatusCode, got)
		}
	}
	if refused == 0 {
		t.Fatalf("the store never filled up (%d accepted)", accepted)
	}
	// Nothing answered 2xx is missing; nothing refused was kept.
	page, err := relay.api().ListEvents(t.Context(), victim, url.Values{"limit": {"500"}})
	if err != nil || len(page.Events) != accepted {
		t.Fatalf("stored %d events, accepted %d (%v)", len(page.Events), accepted, err)
	}
	// Freeing space lets the same relay accept again, with no restart.
	if err := relay.api().DeleteChannel(t.Context(), victim); err != nil {
		t.Fatal(err)
	}
	ch := relay.channel(t, client.CreateChannel{})
	resp, got := post(t, relay.ingress(ch), "application/octet-stream", body)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("after freeing space: %d %s", resp.StatusCode, got)
	}
	resp, _ = do(t, http.MethodGet, relay.URL+"/readyz", nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Errorf("readyz after recovery: %d", resp.StatusCode)
	}
}

func TestHistoryAPIAndLongPoll(t *testing.T) {
	t.Parallel()
	relay := startRelay(t)
	ch := relay.channel(t, client.CreateChannel{})
	api := relay.api()
	post(t, relay.ingress(ch)+"/a", "application/json", []byte(`{"type":"invoice.paid"}`))
	do(t, http.MethodPut, relay.ingress(ch)+"/b", map[string]string{"X-Kind": "special"}, []byte("plain"))
	post(t, relay.ingress(ch)+"/c", "application/octet-stream", []byte{0xff, 0x00, 0xfe})

	page, err := api.ListEvents(t.Context(), ch, url.Values{"limit": {"2"}})
	if err != nil || len(page.Events) != 2 || page.Events[0].Path != "/c" || page.NextCursor == "" {
		t.Fatalf("first page: %+v %v", page, err)
	}
	next, err := api.ListEvents(t.Context(), ch, url.Values{"limit": {"2"}, "before": {page.NextCursor}})
	if err != nil || len(next.Events) != 1 || next.Events[0].Path != "/a" {
		t.Fatalf("second page: %+v %v", next, err)
	}
	for _, tc := range []struct {
		q    url.Values
		want string
	}{
		{url.Values{"method": {"PUT"}}, "/b"},
		{url.Values{"q": {"invoice.PAID"}}, "/a"},
		{url.Values{"q": {"special"}}, "/b"},
	} {
		p, err := api.ListEvents(t.Context(), ch, tc.q)
		if err != nil || len(p.Events) != 1 || p.Events[0].Path != tc.want {
			t.Errorf("filter %v: %+v %v", tc.q, p.Events, err)
		}
	}
	ev, err := api.GetEvent(t.Context(), page.Events[0].ID)
	if err != nil || ev.BodyEncoding != "base64" || *ev.Body != "/wD+" {
		t.Fatalf("binary event: %+v %v", ev, err)
	}
	resp, raw := do(t, http.MethodGet, relay.URL+"/api/v1/events/"+ev.ID+"/body", map[string]string{"Authorization": "Bearer " + adminToken}, nil)
	if resp.StatusCode != http.StatusOK || string(raw) != "\xff\x00\xfe" {
		t.Fatalf("raw body download: %d %q", resp.StatusCode, raw)
	}

	// Long-poll: the call returns as soon as a newer event exists.
	type result struct {
		page client.EventPage
		err  error
		took time.Duration
	}
	done := make(chan result, 1)
	go func() {
		start := time.Now()
		p, err := api.ListEvents(context.Background(), ch, url.Values{"after": {ev.ID}, "wait": {"20s"}})
		done <- result{p, err, time.Since(start)}
	}()
	waitFor(t, 5*time.Second, "long-poll registered", func() bool { return true })
	post(t, relay.ingress(ch)+"/d", "text/plain", []byte("new"))
	select {
	case r := <-done:
		if r.err != nil || len(r.page.Events) != 1 || r.page.Events[0].Path != "/d" {
			t.Fatalf("long-poll answered %+v %v", r.page, r.err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("long-poll did not return after a new event")
	}
	// With nothing newer, wait= answers an empty page after the wait.
	latest, err := api.ListEvents(t.Context(), ch, url.Values{"limit": {"1"}})
	if err != nil || len(latest.Events) != 1 {
		t.Fatalf("newest event: %+v %v", latest, err)
	}
	p, err := api.ListEvents(t.Context(), ch, url.Values{"after": {latest.Events[0].Cursor}, "wait": {"100ms"}})
	if err != nil || len(p.Events) != 0 {
		t.Fatalf("empty long-poll: %+v %v", p, err)
	}
	b, _ := json.Marshal(p)
	if !strings.Contains(string(b), `"events":[]`) {
		t.Errorf("empty page is not an empty list: %s", b)
	}
}

func TestLongPollEndsWhenRelayShutsDown(t *testing.T) {
	t.Parallel()
	relay := startRelay(t)
	ch := relay.channel(t, client.CreateChannel{})
	done := make(chan error, 1)
	go func() {
		_, err := relay.api().ListEvents(context.Background(), ch, url.Values{"wait": {"60s"}})
		done <- err
	}()
	waitFor(t, 5*time.Second, "long-poll waiting", func() bool {
		return strings.Contains(metricsText(t, relay), "hookrelay_long_polls_waiting 1")
	})
	start := time.Now()
	relay.Stop() // fails the test if Serve returns an error (a shutdown that timed out)
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("shutdown took %s with a long-poll open", took)
	}
	if err := <-done; err != nil {
		t.Fatalf("long-poll ended with %v", err)
	}
}

func metricsText(t *testing.T, relay *relayEnv) string {
	resp, body := do(t, http.MethodGet, relay.URL+"/metrics", nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("metrics: %d", resp.StatusCode)
	}
	return string(body)
}

// TestHandOverOverflowLosesNothing fills a group's in-memory hand-over
// queue while the app is stuck, so the dispatcher must fall back to
// reading the store: every event still arrives exactly once. It is bounded
// by count: the wait fails only when deliveries stop making progress, so a
// slow machine under -race makes it longer, not red.
func TestHandOverOverflowLosesNothing(t *testing.T) {
	t.Parallel()
	bc, target := newBodyCounter(t)
	unblock := make(chan struct{})
	bc.block = unblock
	relay := startRelay(t)
	ch := relay.channel(t, client.CreateChannel{Async: true})
	relay.startAgent(t, ch, target.URL, func(c *client.Config) { c.Concurrency = 1 })
	post(t, relay.ingress(ch), "text/plain", []byte("block")) // occupies the only slot
	<-bc.hit
	// Twice the hand-over queue (256 events per group) and the worker's
	// read-ahead (64): the queue overflows whatever order they commit in.
	const n, senders = 640, 4
	var next atomic.Int64
	var wg sync.WaitGroup
	for range senders {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < n; i = next.Add(1) - 1 {
				resp, err := http.Post(relay.ingress(ch), "text/plain", strings.NewReader(fmt.Sprint("ev-", i)))
				if err != nil {
					t.Errorf("ev-%d: %v", i, err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusAccepted {
					t.Errorf("ev-%d: status %d", i, resp.StatusCode)
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	close(unblock)
	const stallLimit = 30 * time.Second
	arrived, progressed := 0, time.Now()
	for arrived < n {
		now := 0
		for i := range n {
			if bc.count(fmt.Sprint("ev-", i)) > 0 {
				now++
			}
		}
		if now > arrived {
			arrived, progressed = now, time.Now()
		} else if time.Since(progressed) > stallLimit {
			t.Fatalf("%d of %d events arrived, then none for %s", arrived, n, stallLimit)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i := range n {
		if c := bc.count(fmt.Sprint("ev-", i)); c != 1 {
			t.Errorf("ev-%d arrived %d times", i, c)
		}
	}
}

func TestAgentOfExpiredChannelIsToldWhy(t *testing.T) {
	t.Parallel()
	relay := startRelay(t, func(c *server.Config) { c.PruneInterval = 50 * time.Millisecond })
	ch := relay.channel(t, client.CreateChannel{TTL: "700ms"})
	target := hashTarget(t)
	ae := relay.startAgent(t, ch, target.URL)
	select {
	case err := <-ae.done:
		ae.once.Do(func() {})
		if err == nil || !strings.Contains(err.Error(), "does not exist") && !strings.Contains(err.Error(), "expired") {
			t.Fatalf("agent of an expired channel ended with %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the agent of an expired channel is still connected")
	}
}

// TestCursorsAreOpaquePerChannel: a broken cursor is refused with the
// reason instead of being read as "the first page" (a client would loop
// forever), and cursors tell nothing of the relay's other traffic: they
// are not numbers and are good only on their own channel.
func TestCursorsAreOpaquePerChannel(t *testing.T) {
	t.Parallel()
	relay := startRelay(t)
	api := relay.api()
	a := relay.channel(t, client.CreateChannel{})
	b := relay.channel(t, client.CreateChannel{})
	for i := range 3 {
		post(t, relay.ingress(a)+fmt.Sprintf("/a%d", i), "text/plain", []byte("a"))
		post(t, relay.ingress(b)+fmt.Sprintf("/b%d", i), "text/plain", []byte("b"))
	}
	pageA, err := api.ListEvents(t.Context(), a, url.Values{"limit": {"1"}})
	if err != nil || len(pageA.Events) != 1 || pageA.NextCursor == "" {
		t.Fatalf("channel a: %+v %v", pageA, err)
	}
	for _, c := range []string{pageA.NextCursor, pageA.Events[0].Cursor} {
		if _, err := strconv.ParseInt(c, 10, 64); err == nil {
			t.Errorf("cursor %q is a number", c)
		}
	}
	next, err := api.ListEvents(t.Context(), a, url.Values{"limit": {"1"}, "before": {pageA.NextCursor}})
	if err != nil || len(next.Events) != 1 || next.Events[0].Path != "/a1" {
		t.Fatalf("the next page of a: %+v %v", next, err)
	}
	for _, q := range []url.Values{
		{"before": {"0"}}, {"before": {"-1"}}, {"before": {"garbage"}}, {"before": {""}},
		{"after": {"0"}}, {"after": {"-5"}}, {"after": {"nope"}},
		{"before": {pageA.NextCursor}, "x": {"cursor of another channel"}},
	} {
		ch := a
		if q.Has("x") {
			ch = b
			q.Del("x")
		}
		_, err := api.ListEvents(t.Context(), ch, q)
		if !client.IsStatus(err, http.StatusBadRequest) || !strings.Contains(err.Error(), "cursor") {
			t.Errorf("%v on channel %s: %v, want 400 saying what a cursor is", q, ch, err)
		}
	}
	// after= takes a cursor or an event id of the channel.
	for _, after := range []string{next.Events[0].Cursor, next.Events[0].ID} {
		p, err := api.ListEvents(t.Context(), a, url.Values{"after": {after}})
		if err != nil || len(p.Events) != 1 || p.Events[0].Path != "/a2" {
			t.Errorf("after=%s: %+v %v", after, p, err)
		}
	}
}
