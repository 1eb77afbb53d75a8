package client

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/protocol"
)

func TestRequestTarget(t *testing.T) {
	t.Parallel()
	tests := []struct {
		target, path, query string
		want                string // the request URI at the target
	}{
		{"http://127.0.0.1:3000/webhooks", "/", "", "/webhooks"},
		{"http://127.0.0.1:3000/webhooks", "/github", "", "/webhooks/github"},
		{"http://127.0.0.1:3000/webhooks/", "/github", "", "/webhooks/github"},
		{"http://127.0.0.1:3000/webhooks/", "/", "", "/webhooks/"},
		{"http://127.0.0.1:3000", "/", "", "/"},
		{"http://127.0.0.1:3000", "/github", "", "/github"},
		{"http://127.0.0.1:3000/webhooks", "/github/", "", "/webhooks/github/"},
		{"http://127.0.0.1:3000/webhooks", "/a//b", "", "/webhooks/a/b"},
		// Escape attempts stay on the target's host, under its path.
		{"http://127.0.0.1:3000/webhooks", "//evil.example/x", "", "/webhooks/evil.example/x"},
		{"http://127.0.0.1:3000/webhooks", "/../../x", "", "/webhooks/x"},
		{"http://127.0.0.1:3000/webhooks", "/a/../../../x", "", "/webhooks/x"},
		{"http://127.0.0.1:3000/webhooks", "/%2e%2e/%2E%2E/x", "", "/webhooks/x"},
		{"http://127.0.0.1:3000/webhooks", "/.%2e/x", "", "/webhooks/x"},
		{"http://127.0.0.1:3000/webhooks", "http://evil/x", "", "/webhooks/http:/evil/x"},
		{"http://127.0.0.1:3000/webhooks", "/http://evil/x", "", "/webhooks/http:/evil/x"},
		{"http://127.0.0.1:3000/webhooks", "/@evil.example/x", "", "/webhooks/@evil.example/x"},
		// Percent-encoded bytes are kept as sent.
		{"http://127.0.0.1:3000/webhooks", "/a%2Fb", "", "/webhooks/a%2Fb"},
		{"http://127.0.0.1:3000/webhooks", "/%2F%2Fevil.example/x", "", "/webhooks/%2F%2Fevil.example/x"},
		{"http://127.0.0.1:3000/webhooks", "/caf%C3%A9/%20x", "", "/webhooks/caf%C3%A9/%20x"},
		{"http://127.0.0.1:3000/hooks%2Fv1", "/x", "", "/hooks%2Fv1/x"},
		{"http://127.0.0.1:3000/webhooks", "/x%2Fy/{a}|^`\\<\">", "", "/webhooks/x%2Fy/{a}|^`\\<\">"},
		{"http://127.0.0.1:3000/webhooks", "/a;b=c/@:!$&'()*+,", "", "/webhooks/a;b=c/@:!$&'()*+,"},
		// Queries: the target's first, then the event's.
		{"http://127.0.0.1:3000/webhooks", "/", "a=1&b=%2F", "/webhooks?a=1&b=%2F"},
		{"http://127.0.0.1:3000/webhooks?key=k", "/", "a=1", "/webhooks?key=k&a=1"},
		{"http://127.0.0.1:3000/webhooks?key=k", "/x", "", "/webhooks/x?key=k"},
		{"http://127.0.0.1:3000/webhooks", "/", "a b", "/webhooks?a%20b"},
		{"http://127.0.0.1:3000/webhooks", "/", "q=caf\xc3\xa9&r=#x", "/webhooks?q=caf\xc3\xa9&r=#x"},
	}
	for _, tt := range tests {
		target, err := parseTarget(tt.target)
		if err != nil {
			t.Fatal(err)
		}
		got := requestTarget(target, tt.path, tt.query)
		if got != tt.want {
			t.Errorf("requestTarget(%q, %q, %q) = %q, want %q", tt.target, tt.path, tt.query, got, tt.want)
		}
		// Read as a server reads it, the request target names no host.
		u, err := url.ParseRequestURI(got)
		if err != nil || u.Host != "" || u.Scheme != "" || strings.HasPrefix(got, "//") {
			t.Errorf("requestTarget(%q, %q) = %q parses as %#v, %v", tt.target, tt.path, got, u, err)
		}
	}
}

func TestOutgoingHeaderUserAgent(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   []protocol.Header
		want string // the User-Agent line the target sees, "" for none
	}{
		{"none sent: Go's is suppressed", nil, ""},
		{"canonical", []protocol.Header{{Name: "User-Agent", Value: "Stripe/1.0"}}, "User-Agent: Stripe/1.0"},
		{"lower case", []protocol.Header{{Name: "user-agent", Value: "GitHub-Hookshot/1"}}, "user-agent: GitHub-Hookshot/1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			relay := newFakeRelay(t, nil)
			target := newRawTarget(t)
			agent := startAgent(t, testConfig(t, relay, target.url()))
			agent.waitConnected(t)
			rs := relay.next(t)
			rs.mustDeliver(t, newRequest("evt-ua", "POST", "/", tt.in...), []byte("{}"))
			got := target.next(t)
			var uas []string
			for _, h := range got.headers {
				if name, _, _ := strings.Cut(h, ":"); strings.EqualFold(name, "User-Agent") {
					uas = append(uas, h)
				}
			}
			want := []string{tt.want}
			if tt.want == "" {
				want = nil
			}
			if !slices.Equal(uas, want) {
				t.Errorf("User-Agent lines %q, want %q", uas, want)
			}
		})
	}
}

// TestHeadersAtTarget checks the header lines as they reach the target's
// socket: names as sent, values and repeats in order, hop-by-hop headers
// dropped, nothing added but Host, Content-Length and the hookrelay headers.
func TestHeadersAtTarget(t *testing.T) {
	t.Parallel()
	relay := newFakeRelay(t, nil)
	target := newRawTarget(t)
	agent := startAgent(t, testConfig(t, relay, target.url()+"/webhooks"))
	agent.waitConnected(t)
	rs := relay.next(t)

	body := []byte(`{"action":"opened"}`)
	req := newRequest("evt-h", "POST", "/github",
		protocol.Header{Name: "Content-Type", Value: "application/json"},
		protocol.Header{Name: "X-GitHub-Event", Value: "push"},
		protocol.Header{Name: "x-lower-case", Value: "v"},
		protocol.Header{Name: "X-Repeat", Value: "1"},
		protocol.Header{Name: "Accept", Value: "*/*"},
		protocol.Header{Name: "X-Repeat", Value: "2"},
		protocol.Header{Name: "Connection", Value: "keep-alive, X-Conn-Named"},
		protocol.Header{Name: "X-Conn-Named", Value: "dropped"},
		protocol.Header{Name: "Keep-Alive", Value: "timeout=5"},
		protocol.Header{Name: "Transfer-Encoding", Value: "chunked"},
		protocol.Header{Name: "TE", Value: "trailers"},
		protocol.Header{Name: "Upgrade", Value: "h2c"},
		protocol.Header{Name: "Proxy-Authorization", Value: "Basic eDp5"},
		protocol.Header{Name: "Proxy-Connection", Value: "keep-alive"},
		protocol.Header{Name: "Trailer", Value: "X-T"},
		protocol.Header{Name: "content-length", Value: "999"},
		protocol.Header{Name: "Host", Value: "relay.example"},
		protocol.Header{Name: "Hookrelay-Event-Id", Value: "spoofed"},
		protocol.Header{Name: "hookrelay-repeat-of", Value: "spoofed"},
		protocol.Header{Name: "X-Repeat", Value: "3"},
		protocol.Header{Name: "X-Hub-Signature-256", Value: "sha256=abc"},
		protocol.Header{Name: "X-Empty", Value: ""},
	)
	req.Attempt = 3
	req.RepeatOf = "evt-failed"
	resp, _ := rs.mustDeliver(t, req, body)
	if resp.Status != 200 || resp.Error != "" {
		t.Fatalf("response %+v", resp)
	}
	got := target.next(t)
	if got.line != "POST /webhooks/github HTTP/1.1" {
		t.Errorf("request line %q", got.line)
	}
	want := []string{
		"Content-Type: application/json",
		"X-GitHub-Event: push",
		"x-lower-case: v",
		"X-Repeat: 1",
		"Accept: */*",
		"X-Repeat: 2",
		fmt.Sprintf("content-length: %d", len(body)), // where the sender's was
		"Host: " + strings.TrimPrefix(target.url(), "http://"),
		"X-Repeat: 3",
		"X-Hub-Signature-256: sha256=abc",
		"X-Empty: ",
		"Hookrelay-Event-Id: evt-h",
		"Hookrelay-Delivery-Attempt: 3",
		"Hookrelay-Repeat-Of: evt-failed",
	}
	if !slices.Equal(got.headers, want) {
		t.Errorf("header lines at the target:\n got %q\nwant %q", got.headers, want)
	}
	if string(got.body) != string(body) {
		t.Errorf("body %q, want %q", got.body, body)
	}
}

// TestHeadersAdded: without Host or Content-Length from the sender, the
// agent puts Host first and Content-Length after the sender's headers, and
// says no length for a GET without a body.
func TestHeadersAdded(t *testing.T) {
	t.Parallel()
	relay := newFakeRelay(t, nil)
	target := newRawTarget(t)
	agent := startAgent(t, testConfig(t, relay, target.url()))
	agent.waitConnected(t)
	rs := relay.next(t)
	host := "Host: " + strings.TrimPrefix(target.url(), "http://")
	for _, tt := range []struct {
		method string
		body   string
		want   []string
	}{
		{"POST", "abc", []string{host, "Transfer-Ok: yes", "Content-Length: 3", "Hookrelay-Event-Id: e", "Hookrelay-Delivery-Attempt: 1"}},
		{"POST", "", []string{host, "Transfer-Ok: yes", "Content-Length: 0", "Hookrelay-Event-Id: e", "Hookrelay-Delivery-Attempt: 1"}},
		{"GET", "", []string{host, "Transfer-Ok: yes", "Hookrelay-Event-Id: e", "Hookrelay-Delivery-Attempt: 1"}},
	} {
		req := newRequest("e", tt.method, "/",
			protocol.Header{Name: "Transfer-Encoding", Value: "chunked"},
			protocol.Header{Name: "Transfer-Ok", Value: "yes"})
		rs.mustDeliver(t, req, []byte(tt.body))
		if got := target.next(t); !slices.Equal(got.headers, tt.want) || string(got.body) != tt.body {
			t.Errorf("%s %q: target got %q %q, want %q", tt.method, tt.body, got.headers, got.body, tt.want)
		}
	}
}

func TestHostRule(t *testing.T) {
	t.Parallel()
	for _, preserve := range []bool{false, true} {
		t.Run(fmt.Sprintf("preserve=%v", preserve), func(t *testing.T) {
			t.Parallel()
			hosts := make(chan string, 1)
			target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				hosts <- r.Host
			}))
			t.Cleanup(target.Close)
			relay := newFakeRelay(t, nil)
			cfg := testConfig(t, relay, target.URL)
			cfg.PreserveHost = preserve
			agent := startAgent(t, cfg)
			agent.waitConnected(t)
			rs := relay.next(t)
			rs.mustDeliver(t, newRequest("evt-host", "POST", "/",
				protocol.Header{Name: "Host", Value: "hooks.relay.example"}), nil)
			want := strings.TrimPrefix(target.URL, "http://")
			if preserve {
				want = "hooks.relay.example"
			}
			if got := <-hosts; got != want {
				t.Errorf("Host at target %q, want %q", got, want)
			}
		})
	}
}

// recordingTarget answers 200 and records each request's host and request
// URI.
func recordingTarget(t *testing.T) (*httptest.Server, chan *http.Request) {
	reqs := make(chan *http.Request, 64)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		reqs <- r
	}))
	t.Cleanup(srv.Close)
	return srv, reqs
}

func TestPathsStayOnTarget(t *testing.T) {
	t.Parallel()
	target, reqs := recordingTarget(t)
	relay := newFakeRelay(t, nil)
	agent := startAgent(t, testConfig(t, relay, target.URL+"/webhooks?key=k"))
	agent.waitConnected(t)
	rs := relay.next(t)
	tests := []struct{ path, query, want string }{
		{"/", "", "/webhooks?key=k"},
		{"/github/push", "a=1&a=2", "/webhooks/github/push?key=k&a=1&a=2"},
		{"//evil.example/x", "", "/webhooks/evil.example/x?key=k"},
		{"/../../x", "", "/webhooks/x?key=k"},
		{"/%2e%2e/x", "", "/webhooks/x?key=k"},
		{"/a%2Fb", "", "/webhooks/a%2Fb?key=k"},
		{"/%2F%2Fevil.example/x", "", "/webhooks/%2F%2Fevil.example/x?key=k"},
		{"/http://evil/x", "", "/webhooks/http:/evil/x?key=k"},
	}
	host := strings.TrimPrefix(target.URL, "http://")
	for i, tt := range tests {
		req := newRequest(fmt.Sprintf("evt-path-%d", i), "POST", tt.path)
		req.RawQuery = tt.query
		resp, _ := rs.mustDeliver(t, req, []byte("x"))
		if resp.Status != 200 {
			t.Fatalf("path %q: response %+v", tt.path, resp)
		}
		got := <-reqs
		if got.Host != host || got.RequestURI != tt.want {
			t.Errorf("path %q query %q: target got host %q URI %q, want %q %q",
				tt.path, tt.query, got.Host, got.RequestURI, host, tt.want)
		}
	}
}

// TestBadRequestFrame sends a frame the protocol refuses (a path that is an
// absolute URL): the agent answers bad_delivery and the target sees nothing.
func TestBadRequestFrame(t *testing.T) {
	t.Parallel()
	target, reqs := recordingTarget(t)
	relay := newFakeRelay(t, nil)
	agent := startAgent(t, testConfig(t, relay, target.URL))
	agent.waitConnected(t)
	rs := relay.next(t)
	st, err := rs.sess.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// The encoder refuses a bad path, so encode a good one of the same
	// length and turn it into an absolute URL on the wire.
	req := newRequest("evt-bad", "POST", "/ttp://evil/x")
	req.BodyLength = 5
	frame, err := protocol.AppendRequest(nil, req)
	if err != nil {
		t.Fatal(err)
	}
	at := bytes.Index(frame, []byte("/ttp://evil/x"))
	frame[at] = 'h'
	if _, err := st.Write(append(frame, "hello"...)); err != nil {
		t.Fatal(err)
	}
	resp, _, err := readDeliveryResponse(st)
	if err != nil {
		t.Fatal(err)
	}
	if resp.ErrorCode != protocol.ErrCodeBadDelivery {
		t.Errorf("response %+v, want error code %s", resp, protocol.ErrCodeBadDelivery)
	}
	// The next delivery on the session still works, and is the first the target sees.
	rs.mustDeliver(t, newRequest("evt-good", "POST", "/"), nil)
	if got := <-reqs; got.Header.Get(HeaderEventID) != "evt-good" {
		t.Errorf("target saw event %q first", got.Header.Get(HeaderEventID))
	}
}

// hashTarget answers with the length and SHA-256 of the body it read and
// the Content-Length and Transfer-Encoding it was sent.
func hashTarget(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		json.NewEncoder(w).Encode(map[string]any{
			"length":            n,
			"sha256":            hex.EncodeToString(h.Sum(nil)),
			"content_length":    r.ContentLength,
			"transfer_encoding": r.TransferEncoding,
		})
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestBodiesByteExact(t *testing.T) {
	t.Parallel()
	target := hashTarget(t)
	relay := newFakeRelay(t, nil)
	agent := startAgent(t, testConfig(t, relay, target.URL))
	agent.waitConnected(t)
	rs := relay.next(t)
	for _, size := range []int{0, 1 << 10, 1 << 20, 25 << 20} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			t.Parallel()
			body := make([]byte, size)
			rand.Read(body)
			sum := sha256.Sum256(body)
			resp, respBody := rs.mustDeliver(t, newRequest(fmt.Sprintf("evt-%d", size), "POST", "/"), body)
			if resp.Status != 200 {
				t.Fatalf("response %+v %s", resp, respBody)
			}
			var got struct {
				Length           int64    `json:"length"`
				SHA256           string   `json:"sha256"`
				ContentLength    int64    `json:"content_length"`
				TransferEncoding []string `json:"transfer_encoding"`
			}
			if err := json.Unmarshal(respBody, &got); err != nil {
				t.Fatalf("target answer %q: %v", respBody, err)
			}
			if got.Length != int64(size) || got.SHA256 != hex.EncodeToString(sum[:]) {
				t.Errorf("target read %d bytes with SHA-256 %s, want %d bytes %x", got.Length, got.SHA256, size, sum)
			}
			if got.ContentLength != int64(size) || len(got.TransferEncoding) != 0 {
				t.Errorf("target saw Content-Length %d, Transfer-Encoding %q; want %d, none",
					got.ContentLength, got.TransferEncoding, size)
			}
		})
	}
}

// TestEarlyAnswer: the app answers without reading a large body; the agent
// reads the rest so the relay's write ends, and the answer arrives.
func TestEarlyAnswer(t *testing.T) {
	t.Parallel()
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "too big for me", http.StatusRequestEntityTooLarge)
	}))
	t.Cleanup(target.Close)
	relay := newFakeRelay(t, nil)
	agent := startAgent(t, testConfig(t, relay, target.URL))
	agent.waitConnected(t)
	rs := relay.next(t)
	body := make([]byte, 8<<20)
	resp, respBody := rs.mustDeliver(t, newRequest("evt-early", "POST", "/"), body)
	if resp.Status != http.StatusRequestEntityTooLarge || !strings.Contains(string(respBody), "too big") {
		t.Errorf("response %+v %q", resp, respBody)
	}
	// The session is still in step.
	resp, _ = rs.mustDeliver(t, newRequest("evt-after", "GET", "/"), nil)
	if resp.Status != http.StatusRequestEntityTooLarge {
		t.Errorf("second response %+v", resp)
	}
}

func TestResponseReturned(t *testing.T) {
	t.Parallel()
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Set-Cookie", "a=1")
		w.Header().Add("Set-Cookie", "b=2")
		w.Header().Set("X-App", "yes")
		w.Header().Set("Connection", "close")
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, "created")
	}))
	t.Cleanup(target.Close)
	relay := newFakeRelay(t, nil)
	agent := startAgent(t, testConfig(t, relay, target.URL))
	agent.waitConnected(t)
	rs := relay.next(t)
	resp, body := rs.mustDeliver(t, newRequest("evt-resp", "POST", "/"), []byte("{}"))
	if resp.Status != http.StatusCreated || string(body) != "created" || resp.Duration <= 0 {
		t.Errorf("response %+v %q", resp, body)
	}
	var cookies []string
	for _, h := range resp.Headers {
		switch h.Name {
		case "Set-Cookie":
			cookies = append(cookies, h.Value)
		case "Connection", "Content-Length":
			t.Errorf("response header %s sent to the relay", h.Name)
		}
	}
	if !slices.Equal(cookies, []string{"a=1", "b=2"}) {
		t.Errorf("Set-Cookie values %q", cookies)
	}
}

func TestRedirectNotFollowed(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	followed := 0
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/elsewhere" {
			mu.Lock()
			followed++
			mu.Unlock()
			return
		}
		http.Redirect(w, r, "/elsewhere", http.StatusFound)
	}))
	t.Cleanup(target.Close)
	relay := newFakeRelay(t, nil)
	agent := startAgent(t, testConfig(t, relay, target.URL+"/webhooks"))
	agent.waitConnected(t)
	rs := relay.next(t)
	resp, _ := rs.mustDeliver(t, newRequest("evt-redirect", "POST", "/"), []byte("x"))
	if resp.Status != http.StatusFound {
		t.Errorf("status %d, want 302", resp.Status)
	}
	if i := slices.IndexFunc(resp.Headers, func(h protocol.Header) bool { return h.Name == "Location" }); i < 0 || resp.Headers[i].Value != "/elsewhere" {
		t.Errorf("Location missing from %v", resp.Headers)
	}
	mu.Lock()
	defer mu.Unlock()
	if followed != 0 {
		t.Errorf("the agent followed the redirect")
	}
}

func TestTargetFailures(t *testing.T) {
	t.Parallel()
	t.Run("connection refused", func(t *testing.T) {
		t.Parallel()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close() // nothing listens there now
		relay := newFakeRelay(t, nil)
		agent := startAgent(t, testConfig(t, relay, "http://"+addr+"/webhooks"))
		agent.waitConnected(t)
		resp, _ := relay.next(t).mustDeliver(t, newRequest("evt-refused", "POST", "/"), []byte("x"))
		if resp.ErrorCode != protocol.ErrCodeConnectionRefused || resp.Status != 0 {
			t.Errorf("response %+v, want %s", resp, protocol.ErrCodeConnectionRefused)
		}
		if want := "connection refused: dial tcp " + addr; resp.Error != want {
			t.Errorf("error %q, want %q", resp.Error, want)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		t.Parallel()
		testDone := make(chan struct{})
		target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body) // then the server notices the agent hanging up
			select {
			case <-r.Context().Done(): // the agent gives up first
			case <-testDone:
			}
		}))
		t.Cleanup(target.Close)
		t.Cleanup(func() { close(testDone) })
		relay := newFakeRelay(t, nil)
		cfg := testConfig(t, relay, target.URL)
		cfg.RequestTimeout = 200 * time.Millisecond
		agent := startAgent(t, cfg)
		agent.waitConnected(t)
		resp, _ := relay.next(t).mustDeliver(t, newRequest("evt-slow", "POST", "/"), []byte("x"))
		if resp.ErrorCode != protocol.ErrCodeTimeout {
			t.Errorf("response %+v, want %s", resp, protocol.ErrCodeTimeout)
		}
	})
	t.Run("response too large", func(t *testing.T) {
		t.Parallel()
		const limit = 1 << 20 // the relay's welcome.limits.max_body
		target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			size := limit
			if r.URL.Path == "/over" {
				size++
			}
			if r.URL.Query().Has("chunked") {
				w.(http.Flusher).Flush() // no Content-Length: the agent must count
			}
			w.Write(make([]byte, size))
		}))
		t.Cleanup(target.Close)
		relay := newFakeRelay(t, nil)
		relay.maxBody = limit
		agent := startAgent(t, testConfig(t, relay, target.URL))
		agent.waitConnected(t)
		rs := relay.next(t)
		for _, query := range []string{"", "chunked"} {
			req := newRequest("evt-limit", "GET", "/limit")
			req.RawQuery = query
			if resp, body := rs.mustDeliver(t, req, nil); resp.Status != 200 || len(body) != limit {
				t.Errorf("%s: a body at the limit: %+v, %d bytes", query, resp, len(body))
			}
			req = newRequest("evt-over", "GET", "/over")
			req.RawQuery = query
			if resp, _ := rs.mustDeliver(t, req, nil); resp.ErrorCode != protocol.ErrCodeTooLarge || resp.BodyLength != 0 {
				t.Errorf("%s: response %+v, want %s", query, resp, protocol.ErrCodeTooLarge)
			}
		}
	})
}

// TestHeaderValuesNotUTF8 checks that header values that are not valid
// UTF-8 reach the target byte for byte, and come back so from its answer.
func TestHeaderValuesNotUTF8(t *testing.T) {
	t.Parallel()
	got := make(chan string, 1)
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Get("X-Sig")
		w.Header().Set("X-Resp", "\xfe ok \xff")
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(target.Close)
	relay := newFakeRelay(t, nil)
	agent := startAgent(t, testConfig(t, relay, target.URL))
	agent.waitConnected(t)
	rs := relay.next(t)
	req := newRequest("evt-bytes", "POST", "/", protocol.Header{Name: "X-Sig", Value: "a\xffb"})
	resp, _ := rs.mustDeliver(t, req, nil)
	if v := <-got; v != "a\xffb" {
		t.Errorf("target got X-Sig %q, want %q", v, "a\xffb")
	}
	i := slices.IndexFunc(resp.Headers, func(h protocol.Header) bool { return h.Name == "X-Resp" })
	if i < 0 || resp.Headers[i].Value != "\xfe ok \xff" {
		t.Errorf("response headers %q, want X-Resp %q", resp.Headers, "\xfe ok \xff")
	}
}

// TestQueryNotUTF8AtTarget checks that a query and header values that are
// not UTF-8 (Latin-1 text, raw bytes) reach the target's request line and
// header lines byte for byte.
func TestQueryNotUTF8AtTarget(t *testing.T) {
	t.Parallel()
	relay := newFakeRelay(t, nil)
	target := newRawTarget(t)
	agent := startAgent(t, testConfig(t, relay, target.url()))
	agent.waitConnected(t)
	rs := relay.next(t)
	req := newRequest("evt-latin1", "POST", "/hook",
		protocol.Header{Name: "X-Name", Value: "caf\xe9"},
		protocol.Header{Name: "X-Bytes", Value: "\x80\xff\xfe"})
	req.RawQuery = "q=caf\xe9&r=\xff"
	if resp, _ := rs.mustDeliver(t, req, []byte("x")); resp.Status != 200 {
		t.Fatalf("response %+v", resp)
	}
	got := target.next(t)
	if want := "POST /hook?q=caf\xe9&r=\xff HTTP/1.1"; got.line != want {
		t.Errorf("request line %q, want %q", got.line, want)
	}
	for _, want := range []string{"X-Name: caf\xe9", "X-Bytes: \x80\xff\xfe"} {
		if !slices.Contains(got.headers, want) {
			t.Errorf("header lines at the target %q lack %q", got.headers, want)
		}
	}
}
