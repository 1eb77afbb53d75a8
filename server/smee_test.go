package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/server/store"
)

// sseMessage is one message of an event stream as a browser's EventSource
// sees it, or one comment line.
type sseMessage struct {
	id      string // the id field; hasID says whether there was one
	hasID   bool
	event   string // "" for a plain message
	data    string // data lines joined with "\n"
	retry   string
	comment string // set for a comment line (and nothing else)
}

// parseSSE reads an event stream as the SSE specification says: lines end
// in "\n", "\r\n" or "\r"; a blank line dispatches; ":" starts a comment.
// It calls emit for every message and comment until r ends.
func parseSSE(r io.Reader, emit func(sseMessage) bool) error {
	br := bufio.NewReader(r)
	var m sseMessage
	var data []string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			if err == io.EOF {
				return nil // an unfinished message is dropped, as EventSource does
			}
			return err
		}
		line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
		for i, part := range strings.Split(line, "\r") { // a lone "\r" ends a line too
			if i > 0 && part == "" {
				continue
			}
			switch {
			case part == "":
				if len(data) > 0 || m.event != "" || m.hasID || m.retry != "" {
					m.data = strings.Join(data, "\n")
					if !emit(m) {
						return nil
					}
				}
				m, data = sseMessage{}, nil
			case strings.HasPrefix(part, ":"):
				if !emit(sseMessage{comment: strings.TrimPrefix(part[1:], " ")}) {
					return nil
				}
			default:
				field, value, _ := strings.Cut(part, ":")
				value = strings.TrimPrefix(value, " ")
				switch field {
				case "id":
					m.id, m.hasID = value, true
				case "event":
					m.event = value
				case "data":
					data = append(data, value)
				case "retry":
					m.retry = value
				}
			}
		}
	}
}

// sseStream is an open event stream read by a goroutine of its own.
type sseStream struct {
	t    *testing.T
	msgs chan sseMessage // closed when the stream ends
	stop func()
}

// smeeRequest opens GET path with Accept: text/event-stream and returns the
// response, whatever its status.
func (e *uiEnv) smeeRequest(ctx context.Context, path string, opts ...reqOpt) *http.Response {
	e.t.Helper()
	req, err := http.NewRequestWithContext(ctx, "GET", e.URL+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Accept", "text/event-stream")
	for _, o := range opts {
		o(req)
	}
	resp, err := e.stream.Do(req)
	if err != nil {
		e.t.Fatalf("GET %s: %v", path, err)
	}
	return resp
}

// smeeOpen opens a smee-compatible stream and checks that it was accepted.
func (e *uiEnv) smeeOpen(path string, opts ...reqOpt) *sseStream {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	resp := e.smeeRequest(ctx, path, opts...)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		e.t.Fatalf("stream %s: %d %s %s", path, resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	s := &sseStream{t: e.t, msgs: make(chan sseMessage, 4096)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(s.msgs)
		_ = parseSSE(resp.Body, func(m sseMessage) bool {
			select {
			case s.msgs <- m:
				return true
			case <-ctx.Done():
				return false
			}
		})
	}()
	var closed bool
	s.stop = func() {
		if !closed {
			closed = true
			cancel()
			resp.Body.Close()
			<-done
		}
	}
	e.t.Cleanup(s.stop)
	return s
}

// next returns the stream's next message or comment; ok is false when the
// stream ended.
func (s *sseStream) next(within time.Duration) (m sseMessage, ok bool) {
	s.t.Helper()
	select {
	case m, ok = <-s.msgs:
		return m, ok
	case <-time.After(within):
		s.t.Fatalf("nothing on the stream within %s", within)
		return sseMessage{}, false
	}
}

// ready reads the stream's first message, which must be ready, and returns
// its id.
func (s *sseStream) ready() string {
	s.t.Helper()
	m, ok := s.next(5 * time.Second)
	if !ok || m.event != "ready" || !m.hasID || m.data != "{}" || m.retry != strconv.Itoa(smeeRetry) {
		s.t.Fatalf("first message: %+v (ok=%v); want retry, an id and event ready with data {}", m, ok)
	}
	return m.id
}

// webhook returns the next plain message, skipping comments.
func (s *sseStream) webhook(within time.Duration) sseMessage {
	s.t.Helper()
	deadline := time.Now().Add(within)
	for {
		m, ok := s.next(time.Until(deadline))
		if !ok {
			s.t.Fatal("the stream ended while a webhook was awaited")
		}
		if m.comment != "" {
			continue
		}
		if m.event != "" {
			s.t.Fatalf("a named event %q on a smee stream: %+v", m.event, m)
		}
		return m
	}
}

// ended waits for the stream to end and returns the comment it said
// goodbye with ("" if none).
func (s *sseStream) ended(within time.Duration) string {
	s.t.Helper()
	deadline := time.Now().Add(within)
	var bye string
	for {
		m, ok := s.next(time.Until(deadline))
		if !ok {
			return bye
		}
		if strings.HasPrefix(m.comment, "end: ") {
			bye = m.comment
		}
	}
}

// send posts a webhook to path and returns the event id from the 202.
func (e *uiEnv) send(method, path, contentType, body string, headers ...string) string {
	e.t.Helper()
	req, err := http.NewRequest(method, e.URL+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		EventID string `json:"event_id"`
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusAccepted || json.Unmarshal(b, &out) != nil {
		e.t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	return out.EventID
}

// cursorOf reads an event's cursor from the API.
func (e *uiEnv) cursorOf(eventID string) string {
	e.t.Helper()
	resp, body := e.do("GET", "/api/v1/events/"+eventID, "", withBearer(uiAdminToken))
	var ev eventJSON
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &ev) != nil {
		e.t.Fatalf("get event: %d %s", resp.StatusCode, body)
	}
	return ev.Cursor
}

// metric reads one sample from /metrics ("name" or "name{labels}").
func (e *uiEnv) metric(sample string) float64 {
	e.t.Helper()
	_, body := e.do("GET", "/metrics", "")
	for line := range strings.SplitSeq(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				e.t.Fatal(err)
			}
			return f
		}
	}
	return 0
}

// waitMetric polls a metric until it has the value.
func (e *uiEnv) waitMetric(sample string, want float64) {
	e.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for e.metric(sample) != want {
		if time.Now().After(deadline) {
			e.t.Fatalf("%s = %v, want %v", sample, e.metric(sample), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func keyQuery(ch channelJSON) string { return "?key=" + url.QueryEscape(ch.ReadKey) }

func TestSmeeStreamFraming(t *testing.T) {
	t.Parallel()
	e := startUI(t, nil)
	ch := e.channel(uiAdminToken, "framing")
	s := e.smeeOpen("/h/framing" + keyQuery(ch))
	if id := s.ready(); id != e.relay.cursorsFor("framing").encode(0) {
		t.Errorf("ready id on an empty channel = %q, want the cursor before its first event", id)
	}

	pretty := "{\n  \"action\": \"opened\",\n  \"number\": 1.50,\n  \"title\": \"caf\\u00e9 <b>\"\n}\n"
	before := time.Now().UnixMilli()
	id := e.send("POST", "/h/framing?a=1&b=2&b=3&c=%20x", "application/json", pretty,
		"X-GitHub-Event", "issues", "X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958",
		"X-Hub-Signature-256", "sha256=0f1e", "X-Dup", "one", "X-Dup", "two",
		"Connection", "X-Hop", "X-Hop", "dropped", "Body", "not a header", "Timestamp", "1")
	after := time.Now().UnixMilli()
	m := s.webhook(5 * time.Second)
	if !m.hasID || m.id != e.cursorOf(id) {
		t.Errorf("message id %q (hasID %v), want the event's cursor %s", m.id, m.hasID, e.cursorOf(id))
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal([]byte(m.data), &fields); err != nil {
		t.Fatalf("data is not a JSON object: %v\n%s", err, m.data)
	}
	str := func(k string) string {
		var v string
		if err := json.Unmarshal(fields[k], &v); err != nil {
			t.Errorf("key %q: %s is not a string", k, fields[k])
		}
		return v
	}
	for k, want := range map[string]string{
		"x-github-event": "issues", "x-github-delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
		"x-hub-signature-256": "sha256=0f1e", "content-type": "application/json", "x-dup": "one, two",
	} {
		if got := str(k); got != want {
			t.Errorf("header key %q = %q, want %q", k, got, want)
		}
	}
	for _, k := range []string{"connection", "x-hop", "X-GitHub-Event"} {
		if _, ok := fields[k]; ok {
			t.Errorf("key %q is in the data; hop-by-hop headers are left out and names are lower-case", k)
		}
	}
	if !strings.Contains(m.data, `"body":`+pretty+`,"query":`) {
		t.Errorf("body is not the JSON as sent:\n data %q\n body %q", m.data, pretty)
	}
	var query map[string]any
	_ = json.Unmarshal(fields["query"], &query)
	if want := map[string]any{"a": "1", "b": []any{"2", "3"}, "c": " x"}; !reflect.DeepEqual(query, want) {
		t.Errorf("query = %v, want %v", query, want)
	}
	ts, err := strconv.ParseInt(string(fields["timestamp"]), 10, 64)
	if err != nil || ts < before-1 || ts > after+1 {
		t.Errorf("timestamp %s, want milliseconds within [%d, %d]", fields["timestamp"], before, after)
	}

	// A form, a text body, and a GET without the event-stream Accept, which
	// stays a webhook.
	e.send("POST", "/h/framing/slack", "application/x-www-form-urlencoded", "payload=%7B%22a%22%3A1%7D&x=1&x=2")
	e.send("PUT", "/h/framing", "text/plain; charset=utf-8", "hello\nworld")
	e.send("GET", "/h/framing", "", "")
	var prev int64
	for i, want := range []any{
		map[string]any{"payload": `{"a":1}`, "x": []any{"1", "2"}},
		"hello\nworld",
		map[string]any{},
	} {
		m := s.webhook(5 * time.Second)
		var data struct {
			Body any `json:"body"`
		}
		if err := json.Unmarshal([]byte(m.data), &data); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if !reflect.DeepEqual(data.Body, want) {
			t.Errorf("message %d: body %#v, want %#v", i, data.Body, want)
		}
		n := e.seqOf(t, "framing", m.id)
		if n <= prev {
			t.Errorf("message %d: id %s after %d; ids must grow", i, m.id, prev)
		}
		prev = n
	}
}

func TestSmeeDataShapes(t *testing.T) {
	t.Parallel()
	at := time.UnixMilli(1700000000123)
	for _, tc := range []struct {
		name    string
		headers []store.Header
		query   string
		body    string
		want    string
	}{
		{"json kept as sent", []store.Header{{Name: "Content-Type", Value: "application/json"}}, "", `{"a": [1, 2.0]}`,
			`{"content-type":"application/json","body":{"a": [1, 2.0]},"query":{},"timestamp":1700000000123}`},
		{"json with CRLF is compacted", []store.Header{{Name: "Content-Type", Value: "application/vnd.api+json"}}, "", "{\r\n \"a\": 1\r\n}",
			`{"content-type":"application/vnd.api+json","body":{"a":1},"query":{},"timestamp":1700000000123}`},
		{"invalid json is text", []store.Header{{Name: "Content-Type", Value: "application/json"}}, "", `{"a":`,
			`{"content-type":"application/json","body":"{\"a\":","query":{},"timestamp":1700000000123}`},
		{"no content type is text", nil, "", `{"a":1}`,
			`{"body":"{\"a\":1}","query":{},"timestamp":1700000000123}`},
		{"empty body", nil, "", "", `{"body":{},"query":{},"timestamp":1700000000123}`},
		{"form, bad escape kept", []store.Header{{Name: "Content-Type", Value: "application/x-www-form-urlencoded"}}, "", "a=%zz&b=1+2&&c",
			`{"content-type":"application/x-www-form-urlencoded","body":{"a":"%zz","b":"1 2","c":""},"query":{},"timestamp":1700000000123}`},
		{"headers: lower case, repeats joined in first place, reserved and hop-by-hop left out",
			[]store.Header{{Name: "X-A", Value: "1"}, {Name: "Connection", Value: "keep-alive, X-Gone"}, {Name: "X-Gone", Value: "x"},
				{Name: "Query", Value: "q"}, {Name: "x-a", Value: "2"}, {Name: "Transfer-Encoding", Value: "chunked"}, {Name: "X-Bin", Value: "\xff"}},
			"x=1&x=2", "t",
			`{"x-a":"1, 2","x-bin":"\ufffd","body":"t","query":{"x":["1","2"]},"timestamp":1700000000123}`},
	} {
		ev := &store.Event{Seq: 7, Headers: tc.headers, RawQuery: tc.query, Body: []byte(tc.body), ReceivedAt: at}
		if got := string(appendSmeeData(nil, ev)); got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, got, tc.want)
		}
	}
}

// FuzzSmeeMessage checks that any webhook becomes one SSE message whose
// data, as an EventSource reassembles it, is a JSON object with body, query
// and timestamp, and that a JSON body without carriage returns is carried
// byte for byte.
func FuzzSmeeMessage(f *testing.F) {
	cur := testRelaySecret(f, bytes.Repeat([]byte{3}, 32)).cursorsFor("ch")
	id42 := cur.encode(42)
	f.Add("application/json", "{\n \"a\": 1\n}\n", "a=1&a=2", "v")
	f.Add("application/x-www-form-urlencoded", "payload=%7B%7D&x", "", "")
	f.Add("text/plain", "line\r\nline\rline\n", "%zz", "\x00\xff")
	f.Add("", "", "", "")
	f.Fuzz(func(t *testing.T, contentType, body, rawQuery, headerValue string) {
		ev := &store.Event{
			Seq: 42, RawQuery: rawQuery, Body: []byte(body), ReceivedAt: time.UnixMilli(1),
			Headers: []store.Header{{Name: "Content-Type", Value: contentType}, {Name: "X-Value", Value: headerValue}},
		}
		frame := appendSmeeMessage(nil, ev, cur)
		var msgs []sseMessage
		if err := parseSSE(bytes.NewReader(frame), func(m sseMessage) bool { msgs = append(msgs, m); return true }); err != nil {
			t.Fatal(err)
		}
		if len(msgs) != 1 || msgs[0].id != id42 || msgs[0].event != "" {
			t.Fatalf("frame %q parsed as %+v, want one message with the cursor of 42 as id", frame, msgs)
		}
		var fields map[string]json.RawMessage
		if err := json.Unmarshal([]byte(msgs[0].data), &fields); err != nil {
			t.Fatalf("data %q: %v", msgs[0].data, err)
		}
		for _, k := range []string{"body", "query", "timestamp", "x-value"} {
			if _, ok := fields[k]; !ok {
				t.Fatalf("data %q has no %q", msgs[0].data, k)
			}
		}
		if msgs[0].data != string(appendSmeeData(nil, ev)) {
			t.Fatalf("reassembled data differs from the JSON written")
		}
	})
}

func TestSmeeStreamSkipsRejectedWebhooks(t *testing.T) {
	t.Parallel()
	e := startUI(t, nil)
	ch := e.channel(uiAdminToken, "verified")
	if resp, body := e.do("PATCH", "/api/v1/channels/verified", `{"verify":"github","secret":"s3cret"}`, withBearer(uiAdminToken)); resp.StatusCode != http.StatusOK {
		t.Fatalf("patch: %d %s", resp.StatusCode, body)
	}
	s := e.smeeOpen("/h/verified" + keyQuery(ch))
	s.ready()
	req, _ := http.NewRequest("POST", e.URL+"/h/verified", strings.NewReader(`{"forged":true}`))
	req.Header.Set("X-Hub-Signature-256", "sha256=00")
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("forged webhook: %d", resp.StatusCode)
	}
	body := `{"genuine":true}`
	id := e.send("POST", "/h/verified", "application/json", body, "X-Hub-Signature-256", githubSignature("s3cret", body))
	if m := s.webhook(5 * time.Second); m.id != e.cursorOf(id) || !strings.Contains(m.data, `"genuine"`) {
		t.Errorf("first message %+v; want the genuine webhook, never the rejected one", m)
	}
}

func TestSmeeStreamKeepAliveAndRecheck(t *testing.T) {
	t.Parallel()
	e := startUI(t, func(c *Config) { c.SSEKeepAlive = 20 * time.Millisecond })
	ch := e.channel(uiAdminToken, "idle")
	s := e.smeeOpen("/h/idle" + keyQuery(ch))
	s.ready()
	for i := 0; i < 2; i++ {
		if m, ok := s.next(5 * time.Second); !ok || m.comment != "ping" {
			t.Fatalf("keep-alive %d: %+v (ok=%v), want the comment ping", i, m, ok)
		}
	}
	// Deleted behind the relay's back (no API call tells the hub): the
	// check at the next keep-alive ends the stream.
	if err := e.store.DeleteChannel(context.Background(), "idle"); err != nil {
		t.Fatal(err)
	}
	if bye := s.ended(5 * time.Second); !strings.Contains(bye, "deleted") {
		t.Errorf("goodbye %q, want one saying the channel was deleted", bye)
	}
}

func githubSignature(secret, body string) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(body))
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

func TestSmeeStreamNeedsAKey(t *testing.T) {
	t.Parallel()
	e := startUI(t, nil)
	ch := e.channel(uiAdminToken, "private")
	other := e.channel(uiAdminToken, "other")
	team := e.teamToken("smee-auth")
	teamCh := e.channel(team, "team-owned")
	e.send("POST", "/h/private", "application/json", `{"secret":1}`)
	for _, tc := range []struct {
		name   string
		path   string
		opts   []reqOpt
		status int
		code   string
	}{
		{"no key", "/h/private", nil, 401, "unauthorized"},
		{"wrong key", "/h/private?key=" + url.QueryEscape(ch.ReadKey+"x"), nil, 401, "unauthorized"},
		{"key of another channel", "/h/private" + keyQuery(other), nil, 404, "channel_not_found"},
		{"token in the URL", "/h/private?key=" + uiAdminToken, nil, 401, "unauthorized"},
		{"token of another team", "/h/private", []reqOpt{withBearer(team)}, 404, "channel_not_found"},
		{"unknown channel", "/h/nope?key=rk_nope.x", nil, 401, "unauthorized"},
		{"bad Last-Event-ID", "/h/private" + keyQuery(ch), []reqOpt{withHeader("Last-Event-ID", "abc")}, 400, "bad_last_event_id"},
	} {
		resp := e.smeeRequest(context.Background(), tc.path, tc.opts...)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var out struct{ Error, Code string }
		if resp.StatusCode != tc.status || json.Unmarshal(b, &out) != nil || out.Code != tc.code || out.Error == "" {
			t.Errorf("%s: %d %s, want %d with code %s", tc.name, resp.StatusCode, b, tc.status, tc.code)
		}
		if bytes.Contains(b, []byte("secret")) || resp.Header.Get("Content-Type") == "text/event-stream" {
			t.Errorf("%s: something was streamed: %s", tc.name, b)
		}
	}
	// A team token in Authorization reads the team's channel; the admin
	// token reads any.
	e.smeeOpen("/h/team-owned", withBearer(team)).ready()
	e.smeeOpen("/h/private", withBearer(uiAdminToken)).ready()
	_ = teamCh
}

func TestSmeeStreamResumesFromLastEventID(t *testing.T) {
	t.Parallel()
	e := startUI(t, nil)
	ch := e.channel(uiAdminToken, "resume")
	e.send("POST", "/h/resume", "application/json", `{"n":"before"}`)
	s := e.smeeOpen("/h/resume" + keyQuery(ch))
	pos := s.ready()
	first := e.cursorOf(e.send("POST", "/h/resume", "application/json", `{"n":0}`))
	if m := s.webhook(5 * time.Second); m.id != first {
		t.Fatalf("a new stream got %+v first; it starts with new webhooks (want id %s)", m, first)
	}
	s.stop()
	// Missed while disconnected, then live: oldest first, each once.
	var want []string
	for i := 1; i <= 3; i++ {
		want = append(want, e.cursorOf(e.send("POST", "/h/resume", "application/json", fmt.Sprintf(`{"n":%d}`, i))))
	}
	s = e.smeeOpen("/h/resume"+keyQuery(ch), withHeader("Last-Event-ID", first))
	s.ready()
	want = append(want, e.cursorOf(e.send("POST", "/h/resume", "application/json", `{"n":4}`)))
	for i, id := range want {
		if m := s.webhook(5 * time.Second); m.id != id || !strings.Contains(m.data, fmt.Sprintf(`"n":%d`, i+1)) {
			t.Fatalf("message %d: %+v, want id %s with n=%d", i, m, id, i+1)
		}
	}
	// The ready id is a place to resume from too: a client cut before its
	// first webhook gets what came after it connected.
	s.stop()
	s = e.smeeOpen("/h/resume"+keyQuery(ch), withHeader("Last-Event-ID", pos))
	if got := s.ready(); got != pos {
		t.Errorf("ready id %s after Last-Event-ID %s", got, pos)
	}
	if m := s.webhook(5 * time.Second); !strings.Contains(m.data, `"n":0`) {
		t.Errorf("resuming from the ready id: first %+v, want n=0", m)
	}
	// An id beyond anything this relay sent (its store was reset) starts at
	// its newest webhook, not past it.
	s.stop()
	s = e.smeeOpen("/h/resume"+keyQuery(ch), withHeader("Last-Event-ID", e.relay.cursorsFor(ch.ID).encode(999999)))
	s.ready()
	id := e.cursorOf(e.send("POST", "/h/resume", "application/json", `{"n":5}`))
	if m := s.webhook(5 * time.Second); m.id != id {
		t.Errorf("after a too-high Last-Event-ID: %+v, want the next webhook %s", m, id)
	}
}

// TestSmeeStreamFromAnUnreadableCursor: a Last-Event-ID that is a cursor,
// but not one this relay can read on this channel (another channel's, or
// one from before the relay's secret changed), starts the stream from now
// rather than ending it: EventSource gives up on an error.
func TestSmeeStreamFromAnUnreadableCursor(t *testing.T) {
	t.Parallel()
	e := startUI(t, nil)
	ch := e.channel(uiAdminToken, "unreadable")
	e.send("POST", "/h/unreadable", "application/json", `{"n":"old"}`)
	s := e.smeeOpen("/h/unreadable"+keyQuery(ch), withHeader("Last-Event-ID", e.relay.cursorsFor("another").encode(1)))
	s.ready()
	id := e.cursorOf(e.send("POST", "/h/unreadable", "application/json", `{"n":"new"}`))
	if m := s.webhook(5 * time.Second); m.id != id || !strings.Contains(m.data, `"new"`) {
		t.Errorf("first webhook %+v, want the new one %s", m, id)
	}
}
