package server

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/server/store"
)

// channelCursors lists the cursors of a channel's accepted events, oldest
// first, from the API.
func (e *uiEnv) channelCursors(channel string) []string {
	e.t.Helper()
	var out []string
	before := ""
	for {
		resp, body := e.do("GET", "/api/v1/channels/"+channel+"/events?limit=500"+before, "", withBearer(uiAdminToken))
		var page struct {
			Events     []eventJSON `json:"events"`
			NextCursor string      `json:"next_cursor"`
		}
		if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &page) != nil {
			e.t.Fatalf("list events: %d %s", resp.StatusCode, body)
		}
		for _, ev := range page.Events {
			if ev.State == string(store.EventAccepted) {
				out = append([]string{ev.Cursor}, out...)
			}
		}
		if page.NextCursor == "" {
			return out
		}
		before = "&before=" + page.NextCursor
	}
}

// TestSmeeStreamHandsOverWithoutGapOrDuplicate posts from several senders
// at once while the reader reconnects again and again with Last-Event-ID,
// on purpose and, with a buffer of one message, because the relay cuts it
// as too slow: every webhook arrives once, in cursor order.
func TestSmeeStreamHandsOverWithoutGapOrDuplicate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		buffer int64
	}{{"default buffer", 0}, {"buffer of one message", 1}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := startUI(t, func(c *Config) { c.SSEBuffer = tc.buffer })
			ch := e.channel(uiAdminToken, "busy")
			const senders, each = 4, 40
			s := e.smeeOpen("/h/busy" + keyQuery(ch))
			last := s.ready()
			resume := func() {
				s.stop()
				s = e.smeeOpen("/h/busy"+keyQuery(ch), withHeader("Last-Event-ID", last))
				if id := s.ready(); id != last {
					t.Fatalf("ready id %s after Last-Event-ID %s", id, last)
				}
			}

			var wg sync.WaitGroup
			for i := range senders {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for j := range each {
						e.send("POST", "/h/busy", "application/json", fmt.Sprintf(`{"sender":%d,"n":%d}`, i, j))
					}
				}()
			}
			var got []string
			for len(got) < senders*each {
				m, ok := s.next(10 * time.Second)
				switch {
				case !ok: // cut by the relay
					resume()
					continue
				case m.comment != "":
					continue
				}
				if n := len(got); n > 0 && e.seqOf(t, "busy", m.id) <= e.seqOf(t, "busy", got[n-1]) {
					t.Fatalf("id %s after %s: sent twice or out of order", m.id, got[n-1])
				}
				got = append(got, m.id)
				last = m.id
				if len(got)%25 == 0 { // cut and resume, mid-burst
					resume()
				}
			}
			wg.Wait()
			if want := e.channelCursors("busy"); strings.Join(got, ",") != strings.Join(want, ",") {
				t.Errorf("received %d ids\n%v\nthe channel holds %d\n%v", len(got), got, len(want), want)
			}
			t.Logf("%v readers dropped as slow", e.metric("hookrelay_sse_slow_readers_dropped_total"))
		})
	}
}

// seqOf reads the place of a stream message's id (a cursor) in the relay.
func (e *uiEnv) seqOf(t *testing.T, channelID, id string) int64 {
	t.Helper()
	n, ok := e.relay.cursorsFor(channelID).decode(id)
	if !ok {
		t.Fatalf("id %q is not a cursor of channel %s", id, channelID)
	}
	return n
}

// TestSmeeStreamPagesThroughABacklog resumes from the start of a channel
// holding more events than one listing, with rejected events between them
// and bodies that overflow one store read.
func TestSmeeStreamPagesThroughABacklog(t *testing.T) {
	t.Parallel()
	e := startUI(t, nil)
	ch := e.channel(uiAdminToken, "backlog")
	ctx := context.Background()
	const total = 2*smeeListPage + 37
	big := strings.Repeat("x", smeeRangeBytes/3)
	// Appended from several goroutines, so that commits are batched.
	type appended struct {
		seq int64
		n   int
	}
	var (
		mu   sync.Mutex
		kept []appended
		wg   sync.WaitGroup
	)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < total; i += 8 {
				ev := &store.Event{
					ID: newID("evt_"), ChannelID: "backlog", Method: "POST", Path: "/", State: store.EventAccepted,
					Headers: []store.Header{{Name: "Content-Type", Value: "application/json"}},
					Body:    fmt.Appendf(nil, `{"n":%d}`, i),
				}
				switch {
				case i%97 == 5:
					ev.State, ev.RejectReason = store.EventRejected, "test"
				case i%150 == 7:
					ev.Body = fmt.Appendf(nil, `{"n":%d,"pad":%q}`, i, big)
				}
				if err := e.store.AppendEvent(ctx, ev); err != nil {
					t.Error(err)
					return
				}
				if ev.State == store.EventAccepted {
					mu.Lock()
					kept = append(kept, appended{ev.Seq, i})
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	slices.SortFunc(kept, func(a, b appended) int { return cmp.Compare(a.seq, b.seq) })
	var want []string
	for _, k := range kept {
		want = append(want, strconv.Itoa(k.n))
	}
	s := e.smeeOpen("/h/backlog"+keyQuery(ch), withHeader("Last-Event-ID", e.relay.cursorsFor(ch.ID).encode(0))) // from the start
	s.ready()
	var got []string
	for range want {
		var data struct{ Body struct{ N int } }
		m := s.webhook(10 * time.Second)
		if err := json.Unmarshal([]byte(m.data), &data); err != nil {
			t.Fatal(err)
		}
		got = append(got, strconv.Itoa(data.Body.N))
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("got the backlog as\n%v\nwant\n%v", got, want)
	}
	// Then live.
	id := e.cursorOf(e.send("POST", "/h/backlog", "application/json", `{"n":"live"}`))
	if m := s.webhook(5 * time.Second); m.id != id {
		t.Errorf("after the backlog: %+v, want the live webhook %s", m, id)
	}
}

// TestSmeeStreamDropsASlowReader stops reading a stream while webhooks keep
// coming: the relay drops it once its buffer is full, counts it, and a
// reconnect with Last-Event-ID gets every webhook.
func TestSmeeStreamDropsASlowReader(t *testing.T) {
	t.Parallel()
	e := startUI(t, func(c *Config) { c.SSEBuffer = 256 << 10 })
	ch := e.channel(uiAdminToken, "slow")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resp := e.smeeRequest(ctx, "/h/slow"+keyQuery(ch))
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("stream: %d", resp.StatusCode)
	}
	e.waitMetric("hookrelay_sse_streams", 1)
	// Read nothing more. Loopback buffers take a few MiB; the relay's
	// buffer 256 KiB more.
	body := strings.Repeat("a", 64<<10)
	sent := 0
	for e.metric("hookrelay_sse_slow_readers_dropped_total") == 0 {
		if sent >= 1000 {
			t.Fatal("1000 webhooks of 64 KiB to a stream nobody reads, and it was not dropped")
		}
		for range 8 {
			e.send("POST", "/h/slow", "text/plain", body)
		}
		sent += 8
	}
	e.waitMetric("hookrelay_sse_streams", 0)
	t.Logf("dropped after %d webhooks of 64 KiB", sent)

	want := e.channelCursors("slow")
	s := e.smeeOpen("/h/slow"+keyQuery(ch), withHeader("Last-Event-ID", e.relay.cursorsFor(ch.ID).encode(0))) // from the start
	s.ready()
	for i, id := range want {
		if m := s.webhook(10 * time.Second); m.id != id || !strings.Contains(m.data, body) {
			t.Fatalf("webhook %d after reconnecting: id %s, want %s", i, m.id, id)
		}
	}
}

func TestSmeeStreamCaps(t *testing.T) {
	t.Parallel()
	e := startUI(t, func(c *Config) { c.MaxSSEPerChannel, c.MaxSSEPerAddress = 2, 3 })
	a := e.channel(uiAdminToken, "cap-a")
	b := e.channel(uiAdminToken, "cap-b")
	refused := func(path, code, cap string) {
		t.Helper()
		resp := e.smeeRequest(context.Background(), path)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(string(body), code) {
			t.Fatalf("%s: %d %s, want 429 %s", path, resp.StatusCode, body, code)
		}
		if !strings.Contains(string(body), cap) {
			t.Errorf("the error does not name the key to raise (%s): %s", cap, body)
		}
	}
	a1 := e.smeeOpen("/h/cap-a" + keyQuery(a))
	a1.ready()
	e.smeeOpen("/h/cap-a" + keyQuery(a)).ready()
	refused("/h/cap-a"+keyQuery(a), "too_many_streams", "max_sse_per_channel")
	e.smeeOpen("/h/cap-b" + keyQuery(b)).ready()
	refused("/h/cap-b"+keyQuery(b), "too_many_streams", "max_sse_per_address")
	if got := e.metric(`hookrelay_sse_streams_refused_total{cap="channel"}`); got != 1 {
		t.Errorf("refused by the channel cap: %v, want 1", got)
	}
	if got := e.metric(`hookrelay_sse_streams_refused_total{cap="address"}`); got != 1 {
		t.Errorf("refused by the address cap: %v, want 1", got)
	}
	// A closed stream gives its place back.
	a1.stop()
	e.waitMetric("hookrelay_sse_streams", 2)
	e.smeeOpen("/h/cap-b" + keyQuery(b)).ready()
}

func TestSmeeStreamEndsWhenChannelDeletedOrTokenRevoked(t *testing.T) {
	t.Parallel()
	e := startUI(t, nil) // keep-alives every 15s: ending must not wait for one
	ch := e.channel(uiAdminToken, "doomed")
	byKey := e.smeeOpen("/h/doomed" + keyQuery(ch))
	byKey.ready()
	byAdmin := e.smeeOpen("/h/doomed", withBearer(uiAdminToken))
	byAdmin.ready()
	if resp, body := e.do("DELETE", "/api/v1/channels/doomed", "", withBearer(uiAdminToken)); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("delete: %d %s", resp.StatusCode, body)
	}
	for _, s := range []*sseStream{byKey, byAdmin} {
		if bye := s.ended(3 * time.Second); !strings.Contains(bye, "deleted") {
			t.Errorf("goodbye %q, want one saying the channel was deleted", bye)
		}
	}

	team := e.teamToken("smee-revoke")
	e.channel(team, "kept")
	resp, body := e.do("GET", "/api/v1/tokens", "", withBearer(uiAdminToken))
	var toks struct{ Tokens []tokenJSON }
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &toks) != nil || len(toks.Tokens) != 1 {
		t.Fatalf("list tokens: %d %s", resp.StatusCode, body)
	}
	byToken := e.smeeOpen("/h/kept", withBearer(team))
	byToken.ready()
	other := e.smeeOpen("/h/kept", withBearer(uiAdminToken))
	other.ready()
	if resp, body := e.do("DELETE", "/api/v1/tokens/"+toks.Tokens[0].ID, "", withBearer(uiAdminToken)); resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke: %d %s", resp.StatusCode, body)
	}
	if bye := byToken.ended(3 * time.Second); !strings.Contains(bye, "revoked") {
		t.Errorf("goodbye %q, want one saying the token was revoked", bye)
	}
	// The stream opened with another credential goes on.
	id := e.cursorOf(e.send("POST", "/h/kept", "application/json", `{}`))
	if m := other.webhook(5 * time.Second); m.id != id {
		t.Errorf("the admin's stream got %+v, want %s", m, id)
	}
	resp = e.smeeRequest(context.Background(), "/h/kept", withBearer(team))
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the revoked token opened a stream: %d", resp.StatusCode)
	}
}

func TestSmeeStreamEndsWhenRelayStops(t *testing.T) {
	t.Parallel()
	e := startUI(t, nil)
	ch := e.channel(uiAdminToken, "stopping")
	s := e.smeeOpen("/h/stopping" + keyQuery(ch))
	s.ready()
	stopped := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(stopped)
		e.stop()
	}()
	if bye := s.ended(5 * time.Second); !strings.Contains(bye, "stopping") {
		t.Errorf("goodbye %q", bye)
	}
	<-stopped
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("shutdown took %s with a stream open", d)
	}
}

func TestNewRedirectsToAReadableChannel(t *testing.T) {
	t.Parallel()
	e := startUI(t, func(c *Config) { c.AllowAnonymous = true })
	for _, method := range []string{"HEAD", "GET"} {
		resp, body := e.do(method, "/new", "")
		loc, err := url.Parse(resp.Header.Get("Location"))
		if resp.StatusCode != http.StatusTemporaryRedirect || err != nil || !strings.HasPrefix(loc.Path, "/h/") {
			t.Fatalf("%s /new: %d Location %q", method, resp.StatusCode, resp.Header.Get("Location"))
		}
		if method == "GET" && !strings.Contains(string(body), `"stream_url"`) {
			t.Errorf("GET /new body: %s", body)
		}
		channel := strings.TrimPrefix(loc.Path, "/h/")
		key := loc.Query().Get("key")
		if !strings.HasPrefix(key, readKeyPrefix+channel+".") {
			t.Fatalf("the redirect carries no read key of the channel: %s", loc)
		}
		// What an unmodified smee-client does next: read the Location.
		s := e.smeeOpen(loc.RequestURI())
		s.ready()
		id := e.send("POST", loc.Path, "application/json", `{"via":"new"}`)
		if m := s.webhook(5 * time.Second); m.id != e.cursorOf(id) {
			t.Errorf("%s: stream got %+v", method, m)
		}
		// Senders must use the URL without the key.
		resp, body = e.do("POST", loc.RequestURI(), `{"leak":1}`)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "read_key_in_url") {
			t.Errorf("a webhook to the reading URL: %d %s, want 400 read_key_in_url", resp.StatusCode, body)
		}
	}

	closed := startUI(t, nil)
	resp, body := closed.do("HEAD", "/new", "")
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Location") != "" {
		t.Errorf("HEAD /new without anonymous channels: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, body = closed.do("GET", "/new", "")
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "anonymous_disabled") ||
		!strings.Contains(string(body), "hookrelay channel create --server "+closed.URL) {
		t.Errorf("GET /new without anonymous channels: %d %s", resp.StatusCode, body)
	}
}

func TestIngressRefusesTheReadKeyAndKeepsOtherGETs(t *testing.T) {
	t.Parallel()
	e := startUI(t, nil)
	ch := e.channel(uiAdminToken, "guarded")
	for _, path := range []string{
		"/h/guarded" + keyQuery(ch),
		"/h/guarded/github?x=1&token=" + url.QueryEscape(ch.ReadKey),
	} {
		resp, body := e.do("POST", path, `{}`)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "read_key_in_url") ||
			!strings.Contains(string(body), e.URL+"/h/guarded") {
			t.Errorf("POST %s: %d %s", path, resp.StatusCode, body)
		}
	}
	if got := e.channelCursors("guarded"); len(got) != 0 {
		t.Errorf("refused webhooks were stored: %v", got)
	}
	// An event-stream GET of a sub-path, or with another key, is a webhook.
	e.send("GET", "/h/guarded/sub", "", "", "Accept", "text/event-stream")
	e.send("GET", "/h/guarded?key=abc", "", "")
	if got := e.channelCursors("guarded"); len(got) != 2 {
		t.Errorf("stored %d webhooks, want 2", len(got))
	}
}

func TestAcceptsEventStream(t *testing.T) {
	t.Parallel()
	for accept, want := range map[string]bool{
		"text/event-stream":                  true,
		"text/html, text/event-stream;q=0.9": true,
		"TEXT/EVENT-STREAM":                  true,
		"text/event-stream;q=0":              false,
		"*/*":                                false,
		"":                                   false,
		"application/json":                   false,
	} {
		req, _ := http.NewRequest("GET", "/h/x", nil)
		req.Header.Set("Accept", accept)
		if got := acceptsEventStream(req); got != want {
			t.Errorf("Accept %q: %v, want %v", accept, got, want)
		}
	}
}

// TestSmeeStreamWhereGosmeeLooks: gosmee's client, given
// BASE/h/CHANNEL?key=…, reads BASE/h/events/CHANNEL?key=…; a channel named
// "events" still gets its webhooks.
func TestSmeeStreamWhereGosmeeLooks(t *testing.T) {
	t.Parallel()
	e := startUI(t, nil)
	ch := e.channel(uiAdminToken, "gosmee-read")
	e.channel(uiAdminToken, "events")
	s := e.smeeOpen("/h/events/gosmee-read" + keyQuery(ch))
	s.ready()
	id := e.send("POST", "/h/gosmee-read", "application/json", `{"via":"gosmee"}`)
	if m := s.webhook(5 * time.Second); m.id != e.cursorOf(id) {
		t.Errorf("stream at gosmee's path got %+v", m)
	}
	e.send("POST", "/h/events/gosmee-read", "application/json", `{}`)
	e.send("GET", "/h/events/a/b", "", "", "Accept", "text/event-stream")
	if got := e.channelCursors("events"); len(got) != 2 {
		t.Errorf("channel events holds %d webhooks, want 2", len(got))
	}
}

// TestSmeeStreamsShareOneFeed: streams of one channel share one feed; one
// that joins behind it reads what it missed from the store first; the feed
// stops with the last stream.
func TestSmeeStreamsShareOneFeed(t *testing.T) {
	t.Parallel()
	e := startUI(t, nil)
	ch := e.channel(uiAdminToken, "shared")
	feeds := func() int {
		e.relay.hub.mu.Lock()
		defer e.relay.hub.mu.Unlock()
		return len(e.relay.hub.feeds)
	}
	a := e.smeeOpen("/h/shared" + keyQuery(ch))
	start := a.ready()
	var ids []string
	for i := range 5 {
		ids = append(ids, e.cursorOf(e.send("POST", "/h/shared", "application/json", fmt.Sprintf(`{"n":%d}`, i))))
	}
	for _, id := range ids {
		if m := a.webhook(5 * time.Second); m.id != id {
			t.Fatalf("stream a: %s, want %s", m.id, id)
		}
	}
	b := e.smeeOpen("/h/shared"+keyQuery(ch), withHeader("Last-Event-ID", start))
	b.ready()
	ids = append(ids, e.cursorOf(e.send("POST", "/h/shared", "application/json", `{"n":5}`)))
	for _, id := range ids {
		if m := b.webhook(5 * time.Second); m.id != id {
			t.Fatalf("stream b: %s, want %s", m.id, id)
		}
	}
	if m := a.webhook(5 * time.Second); m.id != ids[5] {
		t.Fatalf("stream a: %s, want %s", m.id, ids[5])
	}
	if n := feeds(); n != 1 {
		t.Errorf("%d feeds for one channel's streams, want 1", n)
	}
	a.stop()
	b.stop()
	deadline := time.Now().Add(5 * time.Second)
	for feeds() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the feed outlived its streams")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
