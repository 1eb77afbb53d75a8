package wireheader

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// keepAliveSequence is a series of requests one connection carries, with
// every body framing net/http accepts.
var keepAliveSequence = []rawRequest{
	{
		method: "GET",
		line:   "GET /h/ch/get?x=1&y=%20 HTTP/1.1",
		headers: []Header{{"Host", "relay.example"}, {"user-agent", "GitHub-Hookshot/044aadd"},
			{"X-Dup", "one"}, {"Accept", "*/*"}, {"x-dup", "two"}, {"X-DUP", "three"}},
	},
	{
		method: "POST",
		line:   "POST /h/ch/length HTTP/1.1",
		headers: []Header{{"host", "relay.example"}, {"Content-Type", "application/json"},
			{"content-length", "17"}, {"X-Hub-Signature-256", "sha256=6b1c"}, {"X-Empty", ""}},
		body:     `{"action":"push"}`,
		wantBody: `{"action":"push"}`,
	},
	{
		method: "POST",
		line:   "POST /h/ch/chunked HTTP/1.1",
		headers: []Header{{"Host", "relay.example"}, {"Transfer-Encoding", "chunked"},
			{"Trailer", "X-Checksum"}, {"Stripe-Signature", "t=1,v1=ab"}},
		body:     "5;ext=1\r\nhello\r\n6;q=\"a;b\";r\r\n world\r\n0\r\nX-Checksum: c0ffee\r\n\r\n",
		wantBody: "hello world",
		trailer:  http.Header{"X-Checksum": {"c0ffee"}},
	},
	{
		method:  "GET",
		line:    "GET /h/ch/zero HTTP/1.1",
		headers: []Header{{"Host", "relay.example"}, {"Content-Length", "0"}, {"Pragma", "no-cache"}},
	},
	{
		method:  "HEAD",
		line:    "HEAD /h/ch/head HTTP/1.1",
		headers: []Header{{"Host", "relay.example"}, {"Content-Length", "0"}},
	},
	{
		method:  "PUT",
		line:    "PUT /noread/ch HTTP/1.1",
		headers: []Header{{"Host", "relay.example"}, {"Content-Length", "37"}},
		body:    "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n\r\n",
	},
	{
		method:  "PATCH",
		line:    "PATCH /noread/chunked HTTP/1.1",
		headers: []Header{{"Host", "relay.example"}, {"transfer-encoding", "CHUNKED"}},
		body:    "4\r\nbody\r\n0\r\n\r\n",
	},
	{
		method:  "POST",
		line:    "POST /after-body/ch HTTP/1.1",
		headers: []Header{{"Host", "relay.example"}, {"Content-Length", "3"}, {"Content-Length", "3"}},
		// A stray CRLF after a POST body, which old clients send.
		body:     "abc\r\n",
		wantBody: "abc",
	},
	{
		method: "POST",
		line:   "POST /h/ch/http10 HTTP/1.0",
		headers: []Header{{"Host", "relay.example"}, {"Connection", "keep-alive"},
			{"Transfer-Encoding", "chunked"}, {"Content-Length", "2"}},
		body:     "ok",
		wantBody: "ok",
	},
	{
		method:  "DELETE",
		line:    "DELETE /h/ch/last HTTP/1.1",
		headers: []Header{{"Host", "relay.example"}, {"X-Last", "1"}},
	},
}

func TestOrderCaseRepeats(t *testing.T) {
	t.Parallel()
	addr := startServer(t, 0, nil)
	rc := dialRaw(t, addr)
	q := rawRequest{
		method: "POST",
		line:   "POST /h/ch/sub/path?q=1 HTTP/1.1",
		headers: []Header{
			{"x-github-event", "push"}, {"HOST", "relay.example:8080"}, {"X-Dup", "1"},
			{"Content-Type", "application/json"}, {"x-dup", "2"}, {"X-Dup", "1"},
			{"content-length", "2"}, {"X-Mixed_Case.Name", "v"}, {"X-Latin", "caf\xc3\xa9"},
		},
		body:     "{}",
		wantBody: "{}",
	}
	// Whitespace around values is not part of them.
	raw := strings.Replace(q.String(), "x-dup: 2", "x-dup:   2 \t", 1)
	rc.write(raw)
	e := q.check(t, rc.read(q.method), true)
	if e.Host != "relay.example:8080" || e.Header.Get("Host") != "" {
		t.Errorf("Host %q, r.Header[Host] %q", e.Host, e.Header["Host"])
	}
}

func TestKeepAlive(t *testing.T) {
	t.Parallel()
	addr := startServer(t, 0, nil)
	rc := dialRaw(t, addr)
	for range 2 {
		for _, q := range keepAliveSequence {
			rc.write(q.String())
			q.check(t, rc.read(q.method), true)
		}
	}
}

func TestPipelined(t *testing.T) {
	t.Parallel()
	addr := startServer(t, 0, nil)
	rc := dialRaw(t, addr)
	var all strings.Builder
	for _, q := range keepAliveSequence {
		all.WriteString(q.String())
	}
	rc.write(all.String())
	for _, q := range keepAliveSequence {
		q.check(t, rc.read(q.method), true)
	}
}

func TestOneByteReads(t *testing.T) {
	t.Parallel()
	addr := startServer(t, 0, func(ln net.Listener) net.Listener { return oneByteListener{ln} })
	rc := dialRaw(t, addr)
	for _, q := range keepAliveSequence {
		s := q.String()
		for i := range len(s) {
			rc.write(s[i : i+1])
		}
		q.check(t, rc.read(q.method), true)
	}
}

func TestLargeRequest(t *testing.T) {
	t.Parallel()
	addr := startServer(t, 0, nil)
	rc := dialRaw(t, addr)
	// A header block and a body larger than net/http's 4 KiB reads.
	headers := []Header{{"Host", "relay.example"}}
	for i := range 100 {
		headers = append(headers, Header{fmt.Sprintf("X-Header-%03d", 99-i), strings.Repeat("v", 100)})
	}
	body := strings.Repeat("0123456789abcdef", 20_000)
	chunked := fmt.Sprintf("%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n", len(body)/2, body[:len(body)/2], len(body)/2, body[len(body)/2:])
	reqs := []rawRequest{
		{method: "POST", line: "POST /h/ch/big HTTP/1.1",
			headers: append(slices.Clone(headers), Header{"Content-Length", fmt.Sprint(len(body))}),
			body:    body, wantBody: body},
		{method: "POST", line: "POST /h/ch/bigchunked HTTP/1.1",
			headers: append(slices.Clone(headers), Header{"Transfer-Encoding", "chunked"}),
			body:    chunked, wantBody: body},
		keepAliveSequence[0],
	}
	for _, q := range reqs {
		rc.write(q.String())
		q.check(t, rc.read(q.method), true)
	}
}

func TestOversizedHeaderBlock(t *testing.T) {
	t.Parallel()
	addr := startServer(t, 1024, nil)
	rc := dialRaw(t, addr)
	small := keepAliveSequence[0]
	big := rawRequest{method: "GET", line: "GET /h/ch/big HTTP/1.1",
		headers: []Header{{"Host", "relay.example"}, {"X-Big", strings.Repeat("b", 2000)}}}

	rc.write(small.String())
	small.check(t, rc.read(small.method), true)
	// The server (MaxHeaderBytes 1 MiB) serves it; Headers falls back.
	rc.write(big.String())
	big.check(t, rc.read(big.method), false)
	// Recording stopped for good on this connection...
	rc.write(small.String())
	small.check(t, rc.read(small.method), false)
	// ...but not on others.
	rc2 := dialRaw(t, addr)
	rc2.write(small.String())
	small.check(t, rc2.read(small.method), true)
}

func TestExpectContinue(t *testing.T) {
	t.Parallel()
	addr := startServer(t, 0, nil)
	rc := dialRaw(t, addr)
	q := rawRequest{
		method: "PUT",
		line:   "PUT /h/ch/expect HTTP/1.1",
		headers: []Header{{"Host", "relay.example"}, {"Expect", "100-continue"},
			{"Content-Length", "5"}},
		body:     "hello",
		wantBody: "hello",
	}
	// Wait for 100 Continue before sending the body.
	head, _ := strings.CutSuffix(q.String(), q.body)
	rc.write(head)
	if resp := rc.read("PUT"); resp.StatusCode != http.StatusContinue {
		t.Fatalf("got %s, want 100 Continue", resp.Status)
	}
	rc.write(q.body)
	q.check(t, rc.read(q.method), true)

	// A client that does not wait.
	rc.write(q.String())
	if resp := rc.read("PUT"); resp.StatusCode != http.StatusContinue {
		t.Fatalf("got %s, want 100 Continue", resp.Status)
	}
	q.check(t, rc.read(q.method), true)

	next := keepAliveSequence[1]
	rc.write(next.String())
	next.check(t, rc.read(next.method), true)
}

func TestMismatchFallsBack(t *testing.T) {
	t.Parallel()
	addr := startServer(t, 0, nil)
	plain := keepAliveSequence[1]
	tests := []struct {
		name  string
		first rawRequest
		ok    bool // Headers' answer for first
	}{
		{
			name: "a handler that does not call Headers",
			first: rawRequest{method: "POST", line: "POST /skip/ch HTTP/1.1",
				headers: []Header{{"Host", "a"}, {"Content-Length", "1"}}, body: "x", wantBody: "x"},
			ok: true, // not reported
		},
		{
			name: "r.Header changed before Headers",
			first: rawRequest{method: "POST", line: "POST /mutate/ch HTTP/1.1",
				headers: []Header{{"Host", "a"}, {"Content-Length", "1"}}, body: "x", wantBody: "x"},
		},
		{
			name: "Headers called twice",
			first: rawRequest{method: "GET", line: "GET /twice/ch HTTP/1.1",
				headers: []Header{{"Host", "a"}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rc := dialRaw(t, addr)
			rc.write(plain.String())
			plain.check(t, rc.read(plain.method), true)
			rc.write(tt.first.String())
			resp := rc.read(tt.first.method)
			if !strings.HasPrefix(tt.first.line, "POST /skip/") {
				tt.first.check(t, resp, false)
			}
			// The connection's recorder is unusable from now on, even
			// for requests it could match.
			for range 2 {
				rc.write(plain.String())
				plain.check(t, rc.read(plain.method), false)
			}
		})
	}
}

func TestObsFold(t *testing.T) {
	t.Parallel()
	addr := startServer(t, 0, nil)
	rc := dialRaw(t, addr)
	rc.write("POST /h/ch/fold HTTP/1.1\r\nHost: a\r\nX-Folded: first\r\n   second\r\nContent-Length: 2\r\n\r\nhi")
	e := decodeEcho(t, rc.read("POST"))
	if e.OK || e.Headers != nil {
		t.Errorf("folded header: Headers = %q, %v; want nil, false", e.Headers, e.OK)
	}
	if got := e.Header["X-Folded"]; !slices.Equal(got, []string{"first second"}) {
		t.Errorf("r.Header[X-Folded] = %q", got)
	}
	// Only that request falls back.
	next := keepAliveSequence[1]
	rc.write(next.String())
	next.check(t, rc.read(next.method), true)
}

func TestUpgrade(t *testing.T) {
	t.Parallel()
	addr := startServer(t, 0, nil)
	rc := dialRaw(t, addr)
	q := rawRequest{method: "GET", line: "GET /upgrade/ch HTTP/1.1",
		headers: []Header{{"Host", "a"}, {"Connection", "Upgrade"}, {"Upgrade", "echo"}}}
	rc.write(q.String())
	resp, err := http.ReadResponse(rc.br, &http.Request{Method: "GET"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %s", resp.Status)
	}
	if e := decodeEcho(t, resp); !e.OK || !slices.Equal(e.Headers, q.headers) {
		t.Errorf("upgrade request: Headers = %q, %v", e.Headers, e.OK)
	}
	// After the switch the bytes are not HTTP, even if they look like it.
	rc.write("GET /not-http HTTP/1.1\r\nHost: a\r\n\r\n")
	line, err := rc.br.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	if want := `"GET /not-http HTTP/1.1\r\nHost: a\r\n\r\n" stopped=true queued=0` + "\n"; line != want {
		t.Errorf("after upgrade: %q, want %q", line, want)
	}
}

func TestSendfile(t *testing.T) {
	t.Parallel()
	addr := startServer(t, 0, nil)
	rc := dialRaw(t, addr)
	rc.write("GET /file HTTP/1.1\r\nHost: a\r\n\r\n")
	resp, err := http.ReadResponse(rc.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if want := bytes.Repeat([]byte("sendfile "), 10_000); !bytes.Equal(body, want) {
		t.Errorf("file body: %d bytes, want %d", len(body), len(want))
	}
	if e := decodeEcho(t, resp); !e.OK {
		t.Error("Headers ok=false")
	}
	next := keepAliveSequence[0]
	rc.write(next.String())
	next.check(t, rc.read(next.method), true)
}

func TestWithoutRecorder(t *testing.T) {
	t.Parallel()
	r, err := http.NewRequest("GET", "http://a/", nil)
	if err != nil {
		t.Fatal(err)
	}
	if hs, ok := Headers(r); ok || hs != nil {
		t.Errorf("Headers without ConnContext = %q, %v", hs, ok)
	}
	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	if ctx := ConnContext(r.Context(), c1); ctx != r.Context() {
		t.Error("ConnContext changed the context of a connection it did not wrap")
	}
}
