package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/protocol"
)

// binaryBody is not valid UTF-8, so a capture writes it in base64.
var binaryBody = []byte{0x00, 0xff, 0xfe, 'a', 0x80, '\n', 0x1f}

func TestHandlerAnswersInsteadOfTarget(t *testing.T) {
	t.Parallel()
	relay := newFakeRelay(t, nil)
	relay.maxBody = 16
	type call struct {
		req  *protocol.DeliveryRequest
		body []byte
	}
	calls := make(chan call, 8)
	cfg := testConfig(t, relay, "")
	cfg.SaveDir = t.TempDir()
	cfg.Handler = func(ctx context.Context, req *protocol.DeliveryRequest, body []byte) (int, []protocol.Header, []byte) {
		if ctx.Err() != nil {
			t.Errorf("handler called with a done context: %v", ctx.Err())
		}
		calls <- call{req, body}
		switch req.Path {
		case "/decline":
			return 0, nil, nil
		case "/bad-status":
			return 1000, nil, nil
		case "/too-large":
			return 200, nil, bytes.Repeat([]byte("x"), 17)
		}
		return 201, []protocol.Header{
			{Name: "X-A", Value: "1"},
			{Name: "Connection", Value: "close"},
			{Name: "Content-Length", Value: "99"},
			{Name: "Bad Name", Value: "x"},
			{Name: "X-Bad-Value", Value: "a\nb"},
			{Name: "x-b", Value: "2"},
			{Name: "X-A", Value: "3"},
		}, []byte("handled")
	}
	agent := startAgent(t, cfg)
	agent.waitConnected(t)
	rs := relay.next(t)

	req := newRequest("evt-h1", "POST", "/github", protocol.Header{Name: "X-Kind", Value: "yes"})
	req.RawQuery = "a=1&a=2"
	resp, body := rs.mustDeliver(t, req, binaryBody)
	if resp.Status != 201 || string(body) != "handled" || resp.Error != "" {
		t.Fatalf("response %+v %q", resp, body)
	}
	want := []protocol.Header{{Name: "X-A", Value: "1"}, {Name: "x-b", Value: "2"}, {Name: "X-A", Value: "3"}}
	if !slices.Equal(resp.Headers, want) {
		t.Errorf("response headers %v, want %v", resp.Headers, want)
	}
	got := <-calls
	if !bytes.Equal(got.body, binaryBody) || got.req.EventID != "evt-h1" || got.req.RawQuery != "a=1&a=2" ||
		!slices.Equal(got.req.Headers, req.Headers) {
		t.Errorf("handler got %+v %q", got.req, got.body)
	}
	// SaveDir still saves what a handler answers.
	files, _ := filepath.Glob(filepath.Join(cfg.SaveDir, "*-evt-h1.json"))
	if len(files) != 1 {
		t.Fatalf("saved files %v", files)
	}
	if saved, err := ReadSaved(files[0]); err != nil || !bytes.Equal(saved.Body, binaryBody) {
		t.Errorf("saved event %+v, %v", saved, err)
	}

	for _, tt := range []struct{ path, code string }{
		{"/bad-status", protocol.ErrCodeTarget},
		{"/too-large", protocol.ErrCodeTooLarge},
		{"/decline", protocol.ErrCodeAgentStopping}, // last: the relay sends no more after it
	} {
		resp, body := rs.mustDeliver(t, newRequest("evt"+strings.ReplaceAll(tt.path, "/", "-"), "POST", tt.path), []byte("b"))
		<-calls
		if resp.ErrorCode != tt.code || resp.Status != 0 || len(body) != 0 {
			t.Errorf("%s: response %+v %q, want error code %s", tt.path, resp, body, tt.code)
		}
	}
	// The line is printed after the answer is sent.
	waitFor(t, "the delivery line of the handled event", func() bool {
		return strings.Contains(cfg.Out.(*syncBuffer).String(), "POST /github?a=1&a=2  -  201")
	})
}

func TestHandlerConfig(t *testing.T) {
	t.Parallel()
	handler := func(context.Context, *protocol.DeliveryRequest, []byte) (int, []protocol.Header, []byte) {
		return 200, nil, nil
	}
	cfg := Config{ServerURL: "http://127.0.0.1:1", Subscriptions: []Subscription{{Channel: "ch1"}}}
	if _, err := New(cfg); err == nil {
		t.Error("New accepted neither Target nor Handler")
	}
	cfg.Handler = handler
	if _, err := New(cfg); err != nil {
		t.Errorf("New with a Handler and no Target: %v", err)
	}
	cfg.Target = "http://localhost:3000/"
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "not both") {
		t.Errorf("New with both Target and Handler: %v", err)
	}
}

func TestParseMatch(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]Match{
		"X-Kind=yes":        {"X-Kind", "yes"},
		"method=POST":       {"method", "POST"},
		"path=/a/b":         {"path", "/a/b"},
		"X-Empty=":          {"X-Empty", ""},
		"X-Sig=sha256=ab==": {"X-Sig", "sha256=ab=="},
	} {
		if got, err := ParseMatch(in); err != nil || got != want {
			t.Errorf("ParseMatch(%q) = %+v, %v; want %+v", in, got, err, want)
		} else if got.String() != in {
			t.Errorf("%+v.String() = %q, want %q", got, got.String(), in)
		}
	}
	for _, in := range []string{"", "X-Kind", "=yes", "X Kind=yes", "a:b=c"} {
		if m, err := ParseMatch(in); err == nil {
			t.Errorf("ParseMatch(%q) = %+v, want an error", in, m)
		}
	}
}

func TestMatch(t *testing.T) {
	t.Parallel()
	req := newRequest("evt-m", "POST", "/github",
		protocol.Header{Name: "X-Kind", Value: "no"},
		protocol.Header{Name: "x-kind", Value: "yes"},
		protocol.Header{Name: "X-Empty", Value: ""})
	for _, tt := range []struct {
		m    Match
		want bool
	}{
		{Match{"X-Kind", "yes"}, true}, // any of the repeats
		{Match{"X-KIND", "no"}, true},  // names in any case
		{Match{"X-Kind", "YES"}, false},
		{Match{"X-Kind", "ye"}, false},
		{Match{"X-Empty", ""}, true},
		{Match{"X-Missing", ""}, false},
		{Match{"method", "POST"}, true},
		{Match{"Method", "POST"}, true},
		{Match{"method", "post"}, false},
		{Match{"path", "/github"}, true},
		{Match{"PATH", "/github/"}, false},
	} {
		if got := tt.m.matches(req); got != tt.want {
			t.Errorf("%v matches = %v, want %v", tt.m, got, tt.want)
		}
	}
}

func TestCapturedEventJSON(t *testing.T) {
	t.Parallel()
	req := newRequest("evt-j", "PUT", "/x", protocol.Header{Name: "B", Value: "2"}, protocol.Header{Name: "a", Value: "<1&>"})
	req.RawQuery = "q=1"
	line, err := capturedEvent(req, []byte(`{"é":"<ok>"}`)).MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"evt-j","channel":"ch1","method":"PUT","path":"/x","query":"q=1",` +
		`"headers":[{"name":"B","value":"2"},{"name":"a","value":"<1&>"}],` +
		`"received_at":"2026-11-26T10:41:02Z","remote_addr":"203.0.113.7:51234",` +
		`"body":"{\"é\":\"<ok>\"}","body_encoding":"utf8"}`
	if string(line) != want {
		t.Errorf("line\n%s\nwant\n%s", line, want)
	}
	for _, body := range [][]byte{binaryBody, nil, []byte("text")} {
		line, err := json.Marshal(capturedEvent(req, body))
		if err != nil {
			t.Fatal(err)
		}
		var back CapturedEvent
		if err := json.Unmarshal(line, &back); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(back.Body, body) || back.ID != "evt-j" || len(back.Headers) != 2 {
			t.Errorf("round trip of %q: %+v", body, back)
		}
		if enc := map[bool]string{true: `"body_encoding":"utf8"`, false: `"body_encoding":"base64"`}[string(body) != string(binaryBody)]; !bytes.Contains(line, []byte(enc)) {
			t.Errorf("line %s lacks %s", line, enc)
		}
	}
	if err := json.Unmarshal([]byte(`{"body":"x","body_encoding":"rot13"}`), new(CapturedEvent)); err == nil {
		t.Error("unknown body_encoding accepted")
	}

	// Bytes that are not UTF-8 in a header value or the query: text with
	// U+FFFD, and the exact bytes in base64 beside it.
	raw := newRequest("evt-raw", "POST", "/", protocol.Header{Name: "X-Sig", Value: "a\xffb"})
	raw.RawQuery = "s=\xfe"
	line, err = json.Marshal(capturedEvent(raw, nil))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(line, []byte(`"query":"s=\ufffd"`)) || !bytes.Contains(line, []byte(`"query_base64":"cz3+"`)) ||
		!bytes.Contains(line, []byte(`{"name":"X-Sig","value":"a\ufffdb","value_base64":"Yf9i"}`)) {
		t.Errorf("line %s: want query_base64 and value_base64", line)
	}
	var back CapturedEvent
	if err := json.Unmarshal(line, &back); err != nil {
		t.Fatal(err)
	}
	if back.Query != raw.RawQuery || len(back.Headers) != 1 || back.Headers[0].Value != "a\xffb" {
		t.Errorf("round trip: query %q, headers %q; want the exact bytes", back.Query, back.Headers)
	}
	if err := json.Unmarshal([]byte(`{"headers":[{"name":"X","value":"","value_base64":"!"}]}`), new(CapturedEvent)); err == nil {
		t.Error("bad value_base64 accepted")
	}
}

func TestCaptureConfigValidates(t *testing.T) {
	t.Parallel()
	good := CaptureConfig{Channel: "ch1", Count: 1, Out: &syncBuffer{}}
	cfg, err := good.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(cfg.Group, CaptureGroupPrefix) || len(cfg.Group) != len(CaptureGroupPrefix)+12 ||
		cfg.From != protocol.FromResume || cfg.RespondStatus != 200 {
		t.Errorf("defaults %+v", cfg)
	}
	if other, _ := good.withDefaults(); other.Group == cfg.Group {
		t.Errorf("two captures share the random group %s", cfg.Group)
	}
	for name, change := range map[string]func(*CaptureConfig){
		"count 0":          func(c *CaptureConfig) { c.Count = 0 },
		"negative timeout": func(c *CaptureConfig) { c.Timeout = -time.Second },
		"no out":           func(c *CaptureConfig) { c.Out = nil },
		"status 42":        func(c *CaptureConfig) { c.RespondStatus = 42 },
	} {
		cfg := good
		change(&cfg)
		if _, err := Capture(context.Background(), cfg); err == nil {
			t.Errorf("%s: Capture accepted %+v", name, cfg)
		}
	}
}

// runCapture runs Capture in a goroutine and returns a function that waits
// for its result.
func runCapture(t *testing.T, ctx context.Context, cfg CaptureConfig) func() (CaptureResult, error) {
	t.Helper()
	type result struct {
		res CaptureResult
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := Capture(ctx, cfg)
		done <- result{res, err}
	}()
	return func() (CaptureResult, error) {
		t.Helper()
		select {
		case r := <-done:
			return r.res, r.err
		case <-time.After(testTimeout):
			t.Fatal("Capture did not return")
			return CaptureResult{}, nil
		}
	}
}

func captureConfig(t *testing.T, relay *fakeRelay, out *syncBuffer) CaptureConfig {
	agent := testConfig(t, relay, "")
	return CaptureConfig{Agent: agent, Channel: "ch1", Count: 1, Timeout: testTimeout, Out: out}
}

func TestCaptureWritesMatchingAndAnswersAll(t *testing.T) {
	t.Parallel()
	relay := newFakeRelay(t, nil)
	out := &syncBuffer{}
	cfg := captureConfig(t, relay, out)
	cfg.Count = 2
	cfg.Match = []Match{{"x-kind", "yes"}, {"method", "POST"}}
	cfg.RespondStatus = 202
	cfg.RespondHeaders = []protocol.Header{{Name: "Content-Type", Value: "text/plain"}}
	cfg.RespondBody = []byte("captured")
	wait := runCapture(t, context.Background(), cfg)
	rs := relay.next(t)
	if s := rs.hello.Subscriptions; len(s) != 1 || s[0].Channel != "ch1" || s[0].From != protocol.FromResume ||
		!strings.HasPrefix(s[0].Group, CaptureGroupPrefix) || rs.hello.Concurrency != 1 {
		t.Errorf("hello %+v", rs.hello)
	}

	first := newRequest("evt-1", "POST", "/github", protocol.Header{Name: "X-Kind", Value: "yes"}, protocol.Header{Name: "X-A", Value: "1"})
	skipped := newRequest("evt-2", "POST", "/github", protocol.Header{Name: "X-Kind", Value: "no"})
	wrongMethod := newRequest("evt-3", "PUT", "/github", protocol.Header{Name: "X-Kind", Value: "yes"})
	second := newRequest("evt-4", "POST", "/x", protocol.Header{Name: "X-Kind", Value: "yes"})
	second.RawQuery = "z=%FF"
	for _, d := range []struct {
		req  *protocol.DeliveryRequest
		body []byte
	}{{first, []byte(`{"n":1}`)}, {skipped, []byte("no")}, {wrongMethod, []byte("no")}, {second, binaryBody}} {
		resp, body := rs.mustDeliver(t, d.req, d.body)
		if resp.Status != 202 || string(body) != "captured" || !slices.Equal(resp.Headers, cfg.RespondHeaders) {
			t.Errorf("%s: sender would get %+v %q", d.req.EventID, resp, body)
		}
	}
	res, err := wait()
	if err != nil || res.Got != 2 || res.Seen != 4 || res.Group != rs.hello.Subscriptions[0].Group {
		t.Fatalf("Capture = %+v, %v", res, err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2:\n%s", len(lines), out)
	}
	for i, want := range []struct {
		req  *protocol.DeliveryRequest
		body []byte
	}{{first, []byte(`{"n":1}`)}, {second, binaryBody}} {
		var ev CapturedEvent
		if err := json.Unmarshal([]byte(lines[i]), &ev); err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
		if ev.ID != want.req.EventID || ev.Method != want.req.Method || ev.Path != want.req.Path ||
			ev.Query != want.req.RawQuery || !bytes.Equal(ev.Body, want.body) ||
			!ev.ReceivedAt.Equal(want.req.ReceivedAt) || ev.RemoteAddr != want.req.RemoteAddr || ev.Channel != "ch1" {
			t.Errorf("line %d: %+v", i, ev)
		}
		if len(ev.Headers) != len(want.req.Headers) {
			t.Errorf("line %d headers %v", i, ev.Headers)
		}
		for j, h := range want.req.Headers {
			if j < len(ev.Headers) && (ev.Headers[j].Name != h.Name || ev.Headers[j].Value != h.Value) {
				t.Errorf("line %d header %d: %v, want %v", i, j, ev.Headers[j], h)
			}
		}
	}
	if !strings.Contains(lines[1], `"body_encoding":"base64"`) {
		t.Errorf("binary body not in base64: %s", lines[1])
	}
}

// TestCaptureDeclinesOnceOver checks that a webhook coming after the
// Count-th is declined, to stay queued for the group.
func TestCaptureDeclinesOnceOver(t *testing.T) {
	t.Parallel()
	out := &syncBuffer{}
	cfg, err := CaptureConfig{Channel: "ch1", Count: 1, Out: out}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	c := &capture{cfg: cfg, complete: make(chan struct{})}
	if status, _, _ := c.handle(context.Background(), newRequest("evt-1", "POST", "/"), nil); status != 200 {
		t.Fatalf("first webhook answered %d", status)
	}
	select {
	case <-c.complete:
	default:
		t.Fatal("not complete after Count webhooks")
	}
	if status, _, _ := c.handle(context.Background(), newRequest("evt-2", "POST", "/"), nil); status != 0 {
		t.Errorf("webhook after the Count-th answered %d, want 0 (declined)", status)
	}
	if n := strings.Count(out.String(), "\n"); n != 1 || c.got != 1 || c.seen != 1 {
		t.Errorf("%d lines, got %d, seen %d", n, c.got, c.seen)
	}
}

// failingWriter fails every write.
type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestCaptureOutFails(t *testing.T) {
	t.Parallel()
	relay := newFakeRelay(t, nil)
	cfg := captureConfig(t, relay, nil)
	cfg.Out = failingWriter{}
	wait := runCapture(t, context.Background(), cfg)
	rs := relay.next(t)
	resp, _ := rs.mustDeliver(t, newRequest("evt-1", "POST", "/"), []byte("x"))
	if resp.ErrorCode != protocol.ErrCodeAgentStopping {
		t.Errorf("an event that could not be written was answered %+v; want it declined", resp)
	}
	if res, err := wait(); err == nil || !strings.Contains(err.Error(), "disk full") || res.Got != 0 {
		t.Errorf("Capture = %+v, %v", res, err)
	}
}

func TestCaptureTimeout(t *testing.T) {
	t.Parallel()
	relay := newFakeRelay(t, nil)
	out := &syncBuffer{}
	cfg := captureConfig(t, relay, out)
	cfg.Count = 3
	cfg.Timeout = 2 * time.Second
	wait := runCapture(t, context.Background(), cfg)
	rs := relay.next(t)
	if resp, _ := rs.mustDeliver(t, newRequest("evt-1", "POST", "/"), []byte("x")); resp.Status != 200 {
		t.Errorf("response %+v", resp)
	}
	res, err := wait()
	if !errors.Is(err, ErrCaptureTimeout) || err.Error() != "timed out after 2s: got 1 of 3 webhooks" || res.Got != 1 {
		t.Errorf("Capture = %+v, %v", res, err)
	}
	if strings.Count(out.String(), "\n") != 1 {
		t.Errorf("out:\n%s", out)
	}
}

func TestCaptureRelayRefuses(t *testing.T) {
	t.Parallel()
	relay := newFakeRelay(t, func(*protocol.Hello) *protocol.Error {
		return &protocol.Error{Code: protocol.CodeChannelNotFound, Message: "channel ch1 does not exist"}
	})
	cfg := captureConfig(t, relay, &syncBuffer{})
	res, err := runCapture(t, context.Background(), cfg)()
	if err == nil || errors.Is(err, ErrCaptureTimeout) || !strings.Contains(err.Error(), "channel ch1 does not exist") {
		t.Errorf("Capture = %+v, %v", res, err)
	}

	relay = newFakeRelay(t, nil)
	cfg = captureConfig(t, relay, &syncBuffer{})
	cfg.Agent.Token = "wrong"
	if _, err := runCapture(t, context.Background(), cfg)(); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("Capture with a wrong token = %v", err)
	}
}

func TestCaptureNeverConnects(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	relay := newFakeRelay(t, nil)
	cfg := captureConfig(t, relay, &syncBuffer{})
	cfg.Agent.ServerURL = "http://" + addr
	cfg.Timeout = 300 * time.Millisecond
	var logs syncBuffer
	cfg.Agent.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	_, err = runCapture(t, context.Background(), cfg)()
	if err == nil || errors.Is(err, ErrCaptureTimeout) ||
		!strings.Contains(err.Error(), "could not connect to the relay at http://"+addr+" within 300ms") {
		t.Errorf("Capture = %v", err)
	}
	if !strings.Contains(logs.String(), "relay connection failed; retrying") {
		t.Errorf("no retry logged without a progress line:\n%s", logs.String())
	}
}

func TestCaptureStoppedByContext(t *testing.T) {
	t.Parallel()
	relay := newFakeRelay(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	wait := runCapture(t, ctx, captureConfig(t, relay, &syncBuffer{}))
	relay.next(t)
	cancel()
	if _, err := wait(); !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "got 0 of 1 webhooks") {
		t.Errorf("Capture = %v", err)
	}
}

func TestCaptureProgress(t *testing.T) {
	t.Parallel()
	relay := newFakeRelay(t, nil)
	progress := &syncBuffer{}
	cfg := captureConfig(t, relay, &syncBuffer{})
	cfg.Count = 2
	cfg.Timeout = time.Minute
	cfg.Progress = progress
	wait := runCapture(t, context.Background(), cfg)
	rs := relay.next(t)
	waitFor(t, "the countdown", func() bool {
		return strings.Contains(progress.String(), "\r\x1b[Kwaiting for 2 more webhooks on ch1, ")
	})
	rs.mustDeliver(t, newRequest("evt-1", "POST", "/"), nil)
	waitFor(t, "the countdown after one webhook", func() bool {
		return strings.Contains(progress.String(), "waiting for 1 more webhook on ch1, ")
	})
	rs.mustDeliver(t, newRequest("evt-2", "POST", "/"), nil)
	if _, err := wait(); err != nil {
		t.Fatal(err)
	}
	p := progress.String()
	if !strings.HasPrefix(p, "\r\x1b[Kconnecting to "+relay.srv.URL+", 1m0s left") || !strings.HasSuffix(p, "\r\x1b[K") ||
		strings.Contains(p, "\n") {
		t.Errorf("progress output %q", p)
	}
}
