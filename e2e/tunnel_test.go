package e2e

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/client"
	"github.com/hookrelay/hookrelay/protocol"
	"github.com/hookrelay/hookrelay/server"
	"github.com/hookrelay/hookrelay/server/wireheader"
)

// hashTarget answers every request with the SHA-256 of its body.
func hashTarget(t testing.TB) *httptest.Server {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		w.Header().Set("X-Body-Length", fmt.Sprint(n))
		fmt.Fprint(w, hex.EncodeToString(h.Sum(nil)))
	}))
	t.Cleanup(ts.Close)
	return ts
}

func TestBodiesArriveByteForByte(t *testing.T) {
	t.Parallel()
	relay := startRelay(t)
	target := hashTarget(t)
	ch := relay.channel(t, client.CreateChannel{})
	relay.startAgent(t, ch, target.URL)
	for _, size := range []int{0, 1 << 10, 1 << 20, 25 << 20} {
		body := make([]byte, size)
		_, _ = rand.Read(body)
		sum := sha256.Sum256(body)
		resp, got := post(t, relay.ingress(ch)+"/upload", "application/octet-stream", body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%d bytes: status %d: %s", size, resp.StatusCode, got)
		}
		if string(got) != hex.EncodeToString(sum[:]) {
			t.Fatalf("%d bytes: target saw SHA-256 %s, sent %x", size, got, sum)
		}
		if resp.Header.Get("X-Body-Length") != fmt.Sprint(size) {
			t.Fatalf("%d bytes: target read %s bytes", size, resp.Header.Get("X-Body-Length"))
		}
	}
}

func TestGitHubSignatureStillVerifies(t *testing.T) {
	t.Parallel()
	const secret = "It's a Secret to Everybody"
	verified := make(chan bool, 1)
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write(body)
		want := "sha256=" + hex.EncodeToString(mac.Sum(nil))
		ok := hmac.Equal([]byte(want), []byte(r.Header.Get("X-Hub-Signature-256")))
		verified <- ok
		if !ok {
			w.WriteHeader(http.StatusUnauthorized)
		}
	}))
	t.Cleanup(target.Close)
	relay := startRelay(t)
	ch := relay.channel(t, client.CreateChannel{})
	relay.startAgent(t, ch, target.URL+"/webhooks/github")

	// A body with the bytes JSON re-encoding would change.
	body := []byte("{\"zen\":\"Design for failure.\",  \"hook_id\":1e3,\"emoji\":\"\\u00e9 é <&>\"}\n")
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	resp, got := do(t, http.MethodPost, relay.ingress(ch), map[string]string{
		"Content-Type":        "application/json",
		"X-GitHub-Event":      "ping",
		"X-GitHub-Delivery":   "72d3162e-cc78-11e3-81ab-4c9367dc0958",
		"X-Hub-Signature-256": "sha256=" + hex.EncodeToString(mac.Sum(nil)),
		"User-Agent":          "GitHub-Hookshot/044aadd",
	}, body)
	if resp.StatusCode != http.StatusOK || !<-verified {
		t.Fatalf("signature did not verify at the target: status %d %s", resp.StatusCode, got)
	}
}

// headerTarget records the raw header list of each request, in wire order.
func headerTarget(t testing.TB) (*httptest.Server, chan []wireheader.Header) {
	seen := make(chan []wireheader.Header, 16)
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hs, ok := wireheader.Headers(r)
		if !ok {
			t.Errorf("target could not recover wire headers")
		}
		seen <- hs
	}))
	ts.Listener = wireheader.NewListener(ts.Listener, 1<<20)
	ts.Config.ConnContext = wireheader.ConnContext
	ts.Start()
	t.Cleanup(ts.Close)
	return ts, seen
}

func TestHeaderOrderCaseAndRepeatsSurvive(t *testing.T) {
	t.Parallel()
	target, seen := headerTarget(t)
	relay := startRelay(t)
	ch := relay.channel(t, client.CreateChannel{})
	relay.startAgent(t, ch, target.URL)

	// Write the request by hand so that order and case are ours, not Go's.
	conn, err := net.Dial("tcp", relay.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Another route first on the same keep-alive connection: the relay must
	// still match the next request's recorded headers to it.
	br := bufio.NewReader(conn)
	if _, err := io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	hresp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, hresp.Body)
	hresp.Body.Close()
	body := `{"ok":true}`
	raw := "POST /h/" + ch + "/events HTTP/1.1\r\n" +
		"Host: hooks.example.com\r\n" +
		"x-zeta: 1\r\n" +
		"X-Alpha: first\r\n" +
		"Content-Type: application/json\r\n" +
		"X-Alpha: second\r\n" +
		"x-MiXeD-CaSe: yes\r\n" +
		"X-Alpha: third\r\n" +
		"Connection: keep-alive, X-Hop\r\n" +
		"X-Hop: dropped\r\n" +
		"Content-Length: " + fmt.Sprint(len(body)) + "\r\n\r\n" + body
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	got := <-seen
	var names []string
	for _, h := range got {
		if strings.EqualFold(h.Name, "Host") || strings.EqualFold(h.Name, "Accept-Encoding") {
			continue
		}
		names = append(names, h.Name+": "+h.Value)
	}
	want := []string{
		"x-zeta: 1", "X-Alpha: first", "Content-Type: application/json", "X-Alpha: second",
		"x-MiXeD-CaSe: yes", "X-Alpha: third",
	}
	// The agent adds its own headers and Content-Length after the sender's.
	if len(names) < len(want) || strings.Join(names[:len(want)], "|") != strings.Join(want, "|") {
		t.Fatalf("headers at target:\n%s\nwant prefix:\n%s", strings.Join(names, "\n"), strings.Join(want, "\n"))
	}
	for _, n := range names {
		if strings.HasPrefix(strings.ToLower(n), "x-hop") || strings.HasPrefix(strings.ToLower(n), "connection") {
			t.Errorf("hop-by-hop header %q reached the target", n)
		}
	}
	joined := strings.ToLower(strings.Join(names, "|"))
	if !strings.Contains(joined, "hookrelay-event-id: evt_") || !strings.Contains(joined, "hookrelay-delivery-attempt: 1") {
		t.Errorf("agent headers missing: %s", joined)
	}
}

func TestMethodsQueriesAndSubPaths(t *testing.T) {
	t.Parallel()
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s ?%s body=%s host=%s", r.Method, r.URL.EscapedPath(), r.URL.RawQuery, body, r.Host)
	}))
	t.Cleanup(target.Close)
	relay := startRelay(t)
	ch := relay.channel(t, client.CreateChannel{})
	relay.startAgent(t, ch, target.URL+"/base")
	host := strings.TrimPrefix(target.URL, "http://")
	cases := []struct {
		method, path, body, want string
	}{
		{"GET", "", "", "GET /base ? body= host=" + host},
		{"GET", "/a/b?x=1&y=%20z", "", "GET /base/a/b ?x=1&y=%20z body= host=" + host},
		{"PUT", "/items/7", "put-body", "PUT /base/items/7 ? body=put-body host=" + host},
		{"PATCH", "/items/7?op=merge", "patch", "PATCH /base/items/7 ?op=merge body=patch host=" + host},
		{"DELETE", "/items/7", "", "DELETE /base/items/7 ? body= host=" + host},
		{"POST", "/with%2Fslash/x?q=a%26b", "p", "POST /base/with%2Fslash/x ?q=a%26b body=p host=" + host},
	}
	for _, tc := range cases {
		resp, got := do(t, tc.method, relay.ingress(ch)+tc.path, nil, []byte(tc.body))
		if resp.StatusCode != http.StatusOK || string(got) != tc.want {
			t.Errorf("%s %s: %d %q, want %q", tc.method, tc.path, resp.StatusCode, got, tc.want)
		}
	}
}

func TestAppResponseReachesSender(t *testing.T) {
	t.Parallel()
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("X-App", "one")
		w.Header().Add("X-App", "two")
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusTeapot)
		io.WriteString(w, "short and stout")
	}))
	t.Cleanup(target.Close)
	relay := startRelay(t)
	ch := relay.channel(t, client.CreateChannel{})
	relay.startAgent(t, ch, target.URL)
	resp, body := post(t, relay.ingress(ch), "text/plain", []byte("hi"))
	if resp.StatusCode != http.StatusTeapot || string(body) != "short and stout" {
		t.Fatalf("sender got %d %q", resp.StatusCode, body)
	}
	if got := resp.Header.Values("X-App"); strings.Join(got, ",") != "one,two" {
		t.Fatalf("X-App = %v", got)
	}
	if resp.Header.Get("Hookrelay-Event-Id") == "" {
		t.Fatalf("no Hookrelay-Event-Id on the sender's response")
	}
}

func TestConcurrentWebhooksAllArrive(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	seen := map[string]int{}
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen[string(body)]++
		mu.Unlock()
	}))
	t.Cleanup(target.Close)
	relay := startRelay(t)
	ch := relay.channel(t, client.CreateChannel{})
	relay.startAgent(t, ch, target.URL)
	const n = 200
	var wg sync.WaitGroup
	var failed atomic.Int32
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Post(relay.ingress(ch), "text/plain", strings.NewReader(fmt.Sprintf("hook-%d", i)))
			if err != nil {
				failed.Add(1)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusAccepted {
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d senders failed", failed.Load())
	}
	waitFor(t, 20*time.Second, "all 200 webhooks at the target", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) == n
	})
}

func TestTargetDownGives502WithReason(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadURL := "http://" + ln.Addr().String()
	ln.Close() // nothing listens there now
	relay := startRelay(t)
	ch := relay.channel(t, client.CreateChannel{})
	relay.startAgent(t, ch, deadURL)
	resp, body := post(t, relay.ingress(ch), "text/plain", []byte("x"))
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("status %d %s, want 502", resp.StatusCode, body)
	}
	var e struct{ Error, Code, EventID string }
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatal(err)
	}
	if e.Code != "connection_refused" || !strings.Contains(e.Error, "connection refused") {
		t.Fatalf("502 body %s does not give the reason", body)
	}
}

func TestErrorsUsersCanRead(t *testing.T) {
	t.Parallel()
	relay := startRelay(t, func(c *server.Config) { c.MaxBody = 1 << 20 })
	ch := relay.channel(t, client.CreateChannel{})

	resp, body := post(t, relay.ingress("no-such-channel"), "text/plain", []byte("x"))
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(body), `"code":"channel_not_found"`) {
		t.Errorf("unknown channel: %d %s", resp.StatusCode, body)
	}
	resp, body = post(t, relay.ingress(ch), "application/octet-stream", make([]byte, 1<<20+1))
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(body), "max_body") {
		t.Errorf("oversized body: %d %s", resp.StatusCode, body)
	}
	bad := client.NewAPI(relay.URL, "wrong-token")
	_, err := bad.ListChannels(t.Context())
	if !client.IsStatus(err, http.StatusUnauthorized) || !strings.Contains(err.Error(), "check --token") {
		t.Errorf("wrong token on the API: %v", err)
	}
	resp, _ = do(t, http.MethodGet, relay.URL+"/tunnel", map[string]string{
		"Authorization": "Bearer wrong", "Connection": "Upgrade", "Upgrade": "websocket",
		"Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
		"Sec-WebSocket-Protocol": "hookrelay.v1",
	}, nil)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("wrong token on /tunnel: %d", resp.StatusCode)
	}
	// Nothing was stored for the refused requests.
	page, err := relay.api().ListEvents(t.Context(), ch, nil)
	if err != nil || len(page.Events) != 0 {
		t.Errorf("events after refused requests: %v %v", page.Events, err)
	}
}

func TestNoAgentGives202ThenBacklogIsDelivered(t *testing.T) {
	t.Parallel()
	target := hashTarget(t)
	relay := startRelay(t)
	ch := relay.channel(t, client.CreateChannel{})
	resp, body := post(t, relay.ingress(ch), "text/plain", []byte("while nobody listens"))
	if resp.StatusCode != http.StatusAccepted || !strings.Contains(string(body), `"event_id":"evt_`) {
		t.Fatalf("no agent: %d %s", resp.StatusCode, body)
	}
	relay.startAgent(t, ch, target.URL)
	waitFor(t, 10*time.Second, "queued event delivered", func() bool {
		page, err := relay.api().ListEvents(t.Context(), ch, nil)
		return err == nil && len(page.Events) == 1 && page.Events[0].LastStatus == 200
	})
}

func TestAsyncChannelAnswers202AtOnce(t *testing.T) {
	t.Parallel()
	got := make(chan struct{}, 1)
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got <- struct{}{} }))
	t.Cleanup(target.Close)
	relay := startRelay(t)
	ch := relay.channel(t, client.CreateChannel{Async: true})
	relay.startAgent(t, ch, target.URL)
	resp, _ := post(t, relay.ingress(ch), "text/plain", []byte("x"))
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("async channel answered %d", resp.StatusCode)
	}
	select {
	case <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("async event never reached the target")
	}
}

// answering makes the agent answer every delivery itself, with fn's
// status, headers and body, instead of forwarding to a target.
func answering(fn func() (int, []protocol.Header, []byte)) agentOption {
	return func(c *client.Config) {
		c.Target = ""
		c.Handler = func(context.Context, *protocol.DeliveryRequest, []byte) (int, []protocol.Header, []byte) { return fn() }
	}
}

// TestAppStatusAndHeadersAreChecked: an app's status outside 200-599 (a
// 101 could confuse a proxy in front of the relay) and a response header
// section larger than a request's may be reach the sender as 502 with the
// reason; the attempt still counts as the app's answer.
func TestAppStatusAndHeadersAreChecked(t *testing.T) {
	t.Parallel()
	relay := startRelay(t)
	many := make([]protocol.Header, 20000)
	for i := range many {
		many[i] = protocol.Header{Name: "X-H", Value: strconv.Itoa(i)}
	}
	big := []protocol.Header{{Name: "X-Big", Value: strings.Repeat("b", 70<<10)}}
	for _, tc := range []struct {
		name    string
		status  int
		headers []protocol.Header
		want    int
		reason  string
	}{
		{"101", http.StatusSwitchingProtocols, nil, http.StatusBadGateway, "status 101"},
		{"100", http.StatusContinue, nil, http.StatusBadGateway, "status 100"},
		{"999", 999, nil, http.StatusBadGateway, "status 999"},
		{"600", 600, nil, http.StatusBadGateway, "status 600"},
		{"20000 headers", http.StatusOK, many, http.StatusBadGateway, "20000 header lines"},
		{"a 70 KiB header", http.StatusOK, big, http.StatusBadGateway, "bytes of headers"},
		{"200", http.StatusOK, many[:256], http.StatusOK, ""},
		{"599", 599, nil, 599, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ch := relay.channel(t, client.CreateChannel{})
			relay.startAgent(t, ch, "", answering(func() (int, []protocol.Header, []byte) { return tc.status, tc.headers, []byte("app") }))
			resp, body := post(t, relay.ingress(ch), "text/plain", []byte("hi"))
			if resp.StatusCode != tc.want {
				t.Fatalf("sender got %d %.200q, want %d", resp.StatusCode, body, tc.want)
			}
			if tc.reason == "" {
				return
			}
			var e struct{ Error, Code, EventID string }
			if err := json.Unmarshal(body, &e); err != nil || e.Code != "bad_app_response" || !strings.Contains(e.Error, tc.reason) {
				t.Errorf("sender got %s, want code bad_app_response and a reason with %q", body, tc.reason)
			}
			if resp.Header.Get("Hookrelay-Event-Id") == "" || len(resp.Header.Values("X-H")) != 0 {
				t.Errorf("502 headers: %v", resp.Header)
			}
		})
	}
}

// rawTarget is an app that answers every request on a connection with
// exactly response, keeping the connection open.
func rawTarget(t *testing.T, response string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					if _, err := io.WriteString(c, response); err != nil {
						return
					}
				}
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return "http://" + ln.Addr().String()
}

// rawResponse reads one response from br: its status line, its header
// lines as they are on the wire, and its body.
func rawResponse(t *testing.T, br *bufio.Reader) (status string, lines []string, body string) {
	t.Helper()
	status, err := br.ReadString('\n')
	if err != nil {
		t.Fatalf("read status line: %v", err)
	}
	length := 0
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("read header: %v", err)
		}
		line = strings.TrimSuffix(line, "\r\n")
		if line == "" {
			break
		}
		lines = append(lines, line)
		if name, v, _ := strings.Cut(line, ": "); strings.EqualFold(name, "Content-Length") {
			length, _ = strconv.Atoi(v)
		}
	}
	b := make([]byte, length)
	if _, err := io.ReadFull(br, b); err != nil {
		t.Fatalf("read body: %v", err)
	}
	return strings.TrimSuffix(status, "\r\n"), lines, string(b)
}

// TestAppHeadersReachSenderAsWritten: the sender gets the app's status, its
// header lines in its order and case with repeats, and its body; the relay
// adds Hookrelay-Event-Id and what HTTP needs (Date, Content-Length), no
// Content-Type the app did not send, and the connection stays open.
func TestAppHeadersReachSenderAsWritten(t *testing.T) {
	t.Parallel()
	app := []string{"x-Second: 2", "X-First: 1", "set-cookie: a=1", "X-Second: 3", "ETag: \"v1\"", "x-empty: "}
	target := rawTarget(t, "HTTP/1.1 201 Created\r\n"+strings.Join(app, "\r\n")+"\r\nContent-Length: 5\r\n\r\nmade!")
	relay := startRelay(t)
	ch := relay.channel(t, client.CreateChannel{})
	relay.startAgent(t, ch, target)

	conn, err := net.Dial("tcp", relay.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	for i := range 2 { // two requests on one connection: keep-alive holds
		fmt.Fprintf(conn, "POST /h/%s/x HTTP/1.1\r\nHost: %s\r\nContent-Length: 2\r\n\r\nhi", ch, relay.addr)
		status, lines, body := rawResponse(t, br)
		if status != "HTTP/1.1 201 Created" || body != "made!" {
			t.Fatalf("request %d: %q %q", i, status, body)
		}
		// The app's lines first, exactly; then only what the relay adds.
		want := app
		if len(lines) < len(want) || !slices.Equal(lines[:len(want)], want) {
			t.Fatalf("request %d: header lines\n%s\nwant them to start with\n%s", i, strings.Join(lines, "\n"), strings.Join(want, "\n"))
		}
		added := map[string]bool{}
		for _, l := range lines[len(want):] {
			name, _, _ := strings.Cut(l, ":")
			added[name] = true
		}
		for name := range added {
			switch name {
			case "Hookrelay-Event-Id", "Date", "Content-Length", "Content-Security-Policy", "X-Content-Type-Options":
			default:
				t.Errorf("request %d: the relay added %q", i, name)
			}
		}
		if !added["Hookrelay-Event-Id"] || !added["Date"] || !added["Content-Length"] {
			t.Errorf("request %d: relay's fields %v, want Hookrelay-Event-Id, Date and Content-Length", i, added)
		}
	}
}

// TestHeadAnswerKeepsTheAppsLength: the answer to HEAD carries the app's
// Content-Length (what a GET would bring) once, and no body.
func TestHeadAnswerKeepsTheAppsLength(t *testing.T) {
	t.Parallel()
	target := rawTarget(t, "HTTP/1.1 200 OK\r\nx-A: 1\r\nContent-Length: 5\r\n\r\n")
	relay := startRelay(t)
	ch := relay.channel(t, client.CreateChannel{})
	relay.startAgent(t, ch, target)
	conn, err := net.Dial("tcp", relay.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	for i := range 2 {
		fmt.Fprintf(conn, "HEAD /h/%s/x HTTP/1.1\r\nHost: %s\r\n\r\n", ch, relay.addr)
		status, err := br.ReadString('\n')
		if err != nil || status != "HTTP/1.1 200 OK\r\n" {
			t.Fatalf("request %d: status %q %v", i, status, err)
		}
		var lengths []string
		sawApp := false
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			if line == "\r\n" {
				break
			}
			if v, ok := strings.CutPrefix(line, "Content-Length: "); ok {
				lengths = append(lengths, strings.TrimSpace(v))
			}
			sawApp = sawApp || line == "x-A: 1\r\n"
		}
		if !slices.Equal(lengths, []string{"5"}) || !sawApp {
			t.Errorf("request %d: Content-Length %q and the app's field %v, want the app's 5 once", i, lengths, sawApp)
		}
	}
}
