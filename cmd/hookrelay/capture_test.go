package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/server/wireheader"
)

// The tests in this file run "hookrelay capture" and "hookrelay replay" as
// processes against a real "hookrelay server" process.

// binaryBody is not valid UTF-8: capture writes it in base64.
var binaryBody = []byte{0x00, 0xff, 0xfe, 0x80, 'b', 'i', 'n', '\r', '\n', 0x7f, 0xc3}

// relayForCapture starts a relay and returns its address and the
// environment that points client commands at it.
func relayForCapture(t *testing.T) (addr string, env []string) {
	t.Helper()
	addr = startRelayProc(t, "127.0.0.1:0", t.TempDir()).addr
	return addr, []string{"HOOKRELAY_SERVER=http://" + addr, "HOOKRELAY_TOKEN=" + killTestToken}
}

// capturedLine is one line of capture's output, decoded without the client
// package so the test holds the format to what the documentation says.
type capturedLine struct {
	ID           string              `json:"id"`
	Channel      string              `json:"channel"`
	Method       string              `json:"method"`
	Path         string              `json:"path"`
	Query        string              `json:"query"`
	Headers      []wireheader.Header `json:"headers"` // {"name","value"}: decoding ignores case
	Body         string              `json:"body"`
	BodyEncoding string              `json:"body_encoding"`
	ReceivedAt   time.Time           `json:"received_at"`
	RemoteAddr   string              `json:"remote_addr"`
}

func (l capturedLine) body(t *testing.T) []byte {
	t.Helper()
	switch l.BodyEncoding {
	case "utf8":
		return []byte(l.Body)
	case "base64":
		b, err := base64.StdEncoding.DecodeString(l.Body)
		if err != nil {
			t.Fatalf("line %s: body: %v", l.ID, err)
		}
		return b
	}
	t.Fatalf("line %s: body_encoding %q", l.ID, l.BodyEncoding)
	return nil
}

// readLines decodes capture's JSON lines, checking each line's keys.
func readLines(t *testing.T, data []byte) []capturedLine {
	t.Helper()
	var lines []capturedLine
	for raw := range bytes.Lines(data) {
		var keys map[string]json.RawMessage
		if err := json.Unmarshal(raw, &keys); err != nil {
			t.Fatalf("not a JSON line: %q: %v", raw, err)
		}
		for _, k := range []string{"id", "channel", "method", "path", "query", "headers", "body", "body_encoding", "received_at", "remote_addr"} {
			if _, ok := keys[k]; !ok {
				t.Errorf("line lacks %q: %s", k, raw)
			}
		}
		var l capturedLine
		if err := json.Unmarshal(raw, &l); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, l)
	}
	return lines
}

// rawPost sends one request written by hand, so that header order and case
// are the test's, and returns the relay's answer.
func rawPost(t *testing.T, addr, path string, headers []wireheader.Header, body []byte) (int, http.Header, string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	var req bytes.Buffer
	fmt.Fprintf(&req, "POST %s HTTP/1.1\r\n", path)
	for _, h := range headers {
		fmt.Fprintf(&req, "%s: %s\r\n", h.Name, h.Value)
	}
	fmt.Fprintf(&req, "\r\n%s", body)
	if _, err := conn.Write(req.Bytes()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

// webhookHeaders lists a request's headers, ending with Content-Length.
func webhookHeaders(body []byte, hs ...string) []wireheader.Header {
	out := []wireheader.Header{{Name: "Host", Value: "hooks.example.com"}}
	for i := 0; i+1 < len(hs); i += 2 {
		out = append(out, wireheader.Header{Name: hs[i], Value: hs[i+1]})
	}
	return append(out, wireheader.Header{Name: "Content-Length", Value: fmt.Sprint(len(body))})
}

// waitExit waits for p to end and returns its exit code.
func (p *proc) waitExit(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(d):
		t.Fatalf("still running after %s:\n%s", d, p.output())
		return -1
	}
}

// waitGroupConnected polls the relay until an agent of group is connected
// to channel.
func waitGroupConnected(t *testing.T, addr, channel, group string) {
	t.Helper()
	ok := pollUntil(20*time.Second, func() bool {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/api/v1/channels/"+channel+"/agents", nil)
		req.Header.Set("Authorization", "Bearer "+killTestToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var out struct {
			Agents []struct {
				Group string `json:"group"`
			} `json:"agents"`
		}
		if json.NewDecoder(resp.Body).Decode(&out) != nil {
			return false
		}
		return slices.ContainsFunc(out.Agents, func(a struct {
			Group string `json:"group"`
		}) bool {
			return a.Group == group
		})
	})
	if !ok {
		t.Fatalf("no agent of group %s connected to %s", group, channel)
	}
}

// deliveriesOf returns the relay's record of an event's deliveries, to
// explain a failure.
func deliveriesOf(addr, eventID string) string {
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/api/v1/events/"+eventID+"/deliveries", nil)
	if err != nil {
		return err.Error()
	}
	req.Header.Set("Authorization", "Bearer "+killTestToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return string(b)
}

func randomName(prefix string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// TestCaptureWritesMatchingWebhooksAndAnswersEverySender: three webhooks,
// one of which does not match; --count 2 ends with exit 0, the two matching
// ones byte for byte in --out, and every sender got the --respond answer.
func TestCaptureWritesMatchingWebhooksAndAnswersEverySender(t *testing.T) {
	t.Parallel()
	addr, env := relayForCapture(t)
	channel := createChannelProc(t, env)
	out := filepath.Join(t.TempDir(), "webhooks.jsonl")
	group := randomName("ci-")
	capture := start(t, env, "capture", channel, "--count", "2", "--timeout", "60s", "--out", out,
		"--match", "X-Kind=yes", "--match", "method=POST", "--group", group,
		"--respond-status", "201", "--respond-body", `{"captured":true}`,
		"--respond-header", "Content-Type: application/json")
	waitGroupConnected(t, addr, channel, group)

	textBody := []byte(`{"order":1,"note":"<&> é"}`)
	sent := []struct {
		path    string
		headers []wireheader.Header
		body    []byte
	}{
		{"/orders?x=1&y=%20", webhookHeaders(textBody, "X-Kind", "yes", "x-multi", "a", "Content-Type", "application/json", "X-MULTI", "b"), textBody},
		{"/orders", webhookHeaders([]byte("skip me"), "X-Kind", "no"), []byte("skip me")},
		{"/bin", webhookHeaders(binaryBody, "content-type", "application/octet-stream", "x-kind", "yes"), binaryBody},
	}
	for i, s := range sent {
		status, header, body := rawPost(t, addr, "/h/"+channel+s.path, s.headers, s.body)
		if status != 201 || body != `{"captured":true}` || header.Get("Content-Type") != "application/json" {
			t.Errorf("sender %d got %d %q %v", i, status, body, header)
		}
	}
	if code := capture.waitExit(t, 30*time.Second); code != 0 {
		t.Fatalf("capture exit %d:\n%s", code, capture.output())
	}
	if o := capture.output(); o != "" {
		t.Errorf("capture printed %q, want nothing when not on a terminal", o)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	lines := readLines(t, data)
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2:\n%s", len(lines), data)
	}
	for i, want := range []int{0, 2} {
		l, s := lines[i], sent[want]
		path, query, _ := strings.Cut(s.path, "?")
		if l.Method != "POST" || l.Path != path || l.Query != query || l.Channel != channel ||
			!strings.HasPrefix(l.RemoteAddr, "127.0.0.1") || time.Since(l.ReceivedAt) > time.Minute || l.ID == "" {
			t.Errorf("line %d: %+v", i, l)
		}
		if !bytes.Equal(l.body(t), s.body) {
			t.Errorf("line %d body %q, want %q", i, l.body(t), s.body)
		}
		if !slices.Equal(l.Headers, s.headers) {
			t.Errorf("line %d headers\n%v\nwant\n%v", i, l.Headers, s.headers)
		}
	}
	if lines[0].BodyEncoding != "utf8" || lines[1].BodyEncoding != "base64" {
		t.Errorf("body encodings %s, %s", lines[0].BodyEncoding, lines[1].BodyEncoding)
	}
	if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("--out file mode %v, %v; want 0600", fi.Mode(), err)
	}
}

// TestCaptureTimesOutWithExit3: --count 5 with one webhook ends with exit 3
// once --timeout passed, the one webhook written.
func TestCaptureTimesOutWithExit3(t *testing.T) {
	t.Parallel()
	addr, env := relayForCapture(t)
	channel := createChannelProc(t, env)
	status, _, _ := rawPost(t, addr, "/h/"+channel+"/only", webhookHeaders([]byte("one"), "X-N", "1"), []byte("one"))
	if status != http.StatusAccepted {
		t.Fatalf("webhook with no agent: status %d", status)
	}
	out := filepath.Join(t.TempDir(), "webhooks.jsonl")
	began := time.Now()
	output, code := run(t, env, "capture", channel, "--count", "5", "--timeout", "2s", "--out", out)
	if code != 3 || !strings.Contains(output, "timed out after 2s: got 1 of 5 webhooks") {
		t.Fatalf("capture exit %d: %s", code, output)
	}
	if took := time.Since(began); took < 2*time.Second || took > 15*time.Second {
		t.Errorf("capture took %s with --timeout 2s", took)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if lines := readLines(t, data); len(lines) != 1 || string(lines[0].body(t)) != "one" || lines[0].Path != "/only" {
		t.Errorf("lines %+v", lines)
	}
}

// TestCaptureResumesAndKeepsItsGroup: a webhook sent before the capture
// started is captured (--from resume); a second capture with the same
// --group does not see it again, a capture with a group of its own does.
func TestCaptureResumesAndKeepsItsGroup(t *testing.T) {
	t.Parallel()
	addr, env := relayForCapture(t)
	channel := createChannelProc(t, env)
	status, _, body := rawPost(t, addr, "/h/"+channel+"/early", webhookHeaders([]byte("early"), "X-Early", "yes"), []byte("early"))
	var queued struct {
		EventID string `json:"event_id"`
	}
	if status != http.StatusAccepted || json.Unmarshal([]byte(body), &queued) != nil || queued.EventID == "" {
		t.Fatalf("webhook with no agent: %d %s", status, body)
	}
	group := randomName("ci-")

	// No --out: the line goes to standard output, and nothing else does.
	output, code := run(t, env, "capture", channel, "--count", "1", "--timeout", "20s", "--group", group)
	if code != 0 {
		t.Fatalf("capture exit %d: %s", code, output)
	}
	lines := readLines(t, []byte(output))
	if len(lines) != 1 || lines[0].ID != queued.EventID || string(lines[0].body(t)) != "early" {
		t.Fatalf("capture printed %q", output)
	}

	output, code = run(t, env, "capture", channel, "--count", "1", "--timeout", "2s", "--group", group)
	if code != 3 || !strings.Contains(output, "got 0 of 1 webhooks") {
		t.Errorf("capture again with group %s: exit %d: %s\nthe relay's deliveries of %s: %s",
			group, code, output, queued.EventID, deliveriesOf(addr, queued.EventID))
	}

	output, code = run(t, env, "capture", channel, "--count", "1", "--timeout", "20s")
	if lines := readLines(t, []byte(output)); code != 0 || len(lines) != 1 || lines[0].ID != queued.EventID {
		t.Errorf("capture in a group of its own: exit %d: %s", code, output)
	}
}

func TestCaptureErrors(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"capture"},
		{"capture", "a", "b"},
		{"capture", "ch", "--count", "0"},
		{"capture", "ch", "--count", "many"},
		{"capture", "ch", "--timeout", "-1s"},
		{"capture", "ch", "--match", "X-Kind"},
		{"capture", "ch", "--respond-status", "42"},
		{"capture", "ch", "--respond-header", "no colon"},
		{"capture", "ch", "--from", "later"},
		{"capture", "ch", "--no-such-flag"},
		{"replay", "file"},
	} {
		if out, code := run(t, nil, args...); code != 2 || !strings.HasPrefix(out, "hookrelay: ") {
			t.Errorf("%v: exit %d: %s", args, code, out)
		}
	}

	// A relay that refuses: exit 1 with the relay's reason.
	addr, env := relayForCapture(t)
	out, code := run(t, env, "capture", "no-such-channel", "--timeout", "10s")
	if code != 1 || !strings.Contains(out, "no-such-channel") {
		t.Errorf("unknown channel: exit %d: %s", code, out)
	}
	out, code = run(t, []string{"HOOKRELAY_SERVER=http://" + addr, "HOOKRELAY_TOKEN=wrong"}, "capture", "ch", "--timeout", "10s")
	if code != 1 || !strings.Contains(out, "401") {
		t.Errorf("wrong token: exit %d: %s", code, out)
	}
	// No relay at all: exit 1 once --timeout passed, not 3.
	out, code = run(t, []string{"HOOKRELAY_SERVER=" + deadURL(t), "HOOKRELAY_TOKEN=t"}, "capture", "ch", "--timeout", "1s")
	if code != 1 || !strings.Contains(out, "could not connect to the relay") {
		t.Errorf("no relay: exit %d: %s", code, out)
	}
}

// rawTarget is an app that records each request's header lines in wire
// order and its body, and answers 202 with a body naming itself.
type rawTarget struct {
	*httptest.Server
	seen chan targetRequest
}

type targetRequest struct {
	headers []wireheader.Header
	body    []byte
}

func newRawTarget(t *testing.T, name string) *rawTarget {
	t.Helper()
	rt := &rawTarget{seen: make(chan targetRequest, 16)}
	rt.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hs, ok := wireheader.Headers(r)
		if !ok {
			t.Errorf("%s could not recover the wire headers", name)
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("%s: read body: %v", name, err)
		}
		rt.seen <- targetRequest{hs, body}
		w.WriteHeader(http.StatusAccepted)
		fmt.Fprintf(w, "%s got it", name)
	}))
	rt.Listener = wireheader.NewListener(rt.Listener, 1<<20)
	rt.Config.ConnContext = wireheader.ConnContext
	rt.Start()
	t.Cleanup(rt.Close)
	return rt
}

func (rt *rawTarget) next(t *testing.T) targetRequest {
	t.Helper()
	select {
	case r := <-rt.seen:
		return r
	case <-time.After(30 * time.Second):
		t.Fatal("the target got no request")
		return targetRequest{}
	}
}

// normalized drops the headers that differ between a delivery and its
// replay by design: Host (the target's) and the attempt number.
func normalized(hs []wireheader.Header) []wireheader.Header {
	return slices.DeleteFunc(slices.Clone(hs), func(h wireheader.Header) bool {
		return strings.EqualFold(h.Name, "Host") || strings.EqualFold(h.Name, "Hookrelay-Delivery-Attempt")
	})
}

// TestSaveThenReplayToAnotherTarget: an event saved by "connect --save"
// reaches a second app through "replay" with the same body bytes and the
// same header lines as the live delivery.
func TestSaveThenReplayToAnotherTarget(t *testing.T) {
	t.Parallel()
	addr, env := relayForCapture(t)
	channel := createChannelProc(t, env)
	first, second := newRawTarget(t, "first"), newRawTarget(t, "second")
	saveDir := t.TempDir()
	startAgentProc(t, env, channel, "--to", first.URL+"/hooks", "--save", saveDir)

	body := append([]byte("signed payload "), binaryBody...)
	headers := webhookHeaders(body, "X-Signature", "sha256=abc", "x-multi", "1", "Content-Type", "application/octet-stream", "X-Multi", "2")
	// 202 either way: the app's answer, or the relay's when the agent is not
	// yet the channel's (the event is then delivered once it is).
	if status, _, answer := rawPost(t, addr, "/h/"+channel+"/github/push?a=1&a=2", headers, body); status != 202 {
		t.Fatalf("sender got %d %q", status, answer)
	}
	live := first.next(t)

	var files []string
	if !pollUntil(15*time.Second, func() bool {
		files, _ = filepath.Glob(filepath.Join(saveDir, "*.json"))
		return len(files) == 1
	}) {
		t.Fatalf("saved files: %v", files)
	}
	out, code := run(t, nil, "replay", files[0], "--to", second.URL+"/hooks")
	if code != 0 || out != "202 Accepted\nsecond got it" {
		t.Fatalf("replay: exit %d: %q", code, out)
	}
	replayed := second.next(t)

	sum := sha256.Sum256(body)
	if sha256.Sum256(live.body) != sum || sha256.Sum256(replayed.body) != sum {
		t.Errorf("bodies differ: sent %x, live %x, replayed %x", sum, sha256.Sum256(live.body), sha256.Sum256(replayed.body))
	}
	if !slices.Equal(normalized(live.headers), normalized(replayed.headers)) {
		t.Errorf("headers differ:\nlive     %v\nreplayed %v", live.headers, replayed.headers)
	}
	// The sender's headers come first, in order, as sent.
	if n := normalized(headers); len(replayed.headers) < len(n) || !slices.Equal(normalized(replayed.headers)[:len(n)], n) {
		t.Errorf("replayed headers %v, want the sender's %v first", replayed.headers, n)
	}
	for _, h := range replayed.headers {
		if strings.EqualFold(h.Name, "Hookrelay-Delivery-Attempt") && h.Value != "2" {
			t.Errorf("replay attempt header %q, want 2", h.Value)
		}
	}

	// An app that cannot be reached: exit 1.
	out, code = run(t, nil, "replay", files[0], "--to", deadURL(t)+"/hooks")
	if code != 1 || !strings.Contains(out, "connection refused") {
		t.Errorf("replay to nothing: exit %d: %s", code, out)
	}
}
