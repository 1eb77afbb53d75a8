package wireheader

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// echo is what the test handler saw of one request. It travels back in the
// X-Echo response header, so HEAD responses carry it too.
type echo struct {
	OK               bool
	Headers          []Header
	Header           http.Header
	Host             string
	Method           string
	RequestURI       string
	Body             string
	Trailer          http.Header
	TransferEncoding []string
	TLS              bool
}

// testHandler reports what Headers returned. The path selects a behaviour:
//
//	/skip/...        never calls Headers (a route that does not use it)
//	/noread/...      calls Headers and leaves the body unread
//	/after-body/...  reads the body first, then calls Headers
//	/mutate/...      changes r.Header before calling Headers
//	/twice/...       calls Headers twice and reports the second call
//	/upgrade/...     calls Headers, then hijacks and echoes one line
//	/file            calls Headers, then serves file
//	anything else    calls Headers, then reads the body
type testHandler struct {
	file string
}

func (th testHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e := echo{Method: r.Method, RequestURI: r.RequestURI, Host: r.Host, TLS: r.TLS != nil}
	readBody := func() {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		e.Body = string(b)
	}
	switch {
	case strings.HasPrefix(r.URL.Path, "/skip/"):
		readBody()
	case strings.HasPrefix(r.URL.Path, "/noread/"):
		e.Headers, e.OK = Headers(r)
	case strings.HasPrefix(r.URL.Path, "/after-body/"):
		readBody()
		e.Headers, e.OK = Headers(r)
	case strings.HasPrefix(r.URL.Path, "/mutate/"):
		r.Header.Add("X-Added-By-Middleware", "1")
		e.Headers, e.OK = Headers(r)
		readBody()
	case strings.HasPrefix(r.URL.Path, "/twice/"):
		Headers(r)
		e.Headers, e.OK = Headers(r)
	case strings.HasPrefix(r.URL.Path, "/upgrade/"):
		e.Headers, e.OK = Headers(r)
		th.upgrade(w, r, e)
		return
	case r.URL.Path == "/file":
		e.Headers, e.OK = Headers(r)
		w.Header().Set("X-Echo", encodeEcho(e))
		http.ServeFile(w, r, th.file)
		return
	default:
		e.Headers, e.OK = Headers(r)
		readBody()
	}
	e.Header = r.Header
	e.Trailer = r.Trailer
	e.TransferEncoding = r.TransferEncoding
	w.Header().Set("X-Echo", encodeEcho(e))
}

// upgrade switches the connection to a line echo protocol, then reports
// whether the recorder stopped and stayed empty although the client sends
// bytes that look like HTTP.
func (testHandler) upgrade(w http.ResponseWriter, r *http.Request, e echo) {
	c, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\nX-Echo: %s\r\n\r\n", encodeEcho(e))
	brw.Flush()
	// Read what looks like a request, up to its empty line.
	var got strings.Builder
	for {
		line, err := brw.ReadString('\n')
		if err != nil {
			return
		}
		got.WriteString(line)
		if line == "\r\n" {
			break
		}
	}
	rec := r.Context().Value(recorderKey{}).(*recorder)
	rec.mu.Lock()
	queued := len(rec.queue)
	rec.mu.Unlock()
	fmt.Fprintf(brw, "%q stopped=%v queued=%d\n", got.String(), rec.stopped.Load(), queued)
	brw.Flush()
}

func encodeEcho(e echo) string {
	b, err := json.Marshal(e)
	if err != nil {
		panic(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

func decodeEcho(t *testing.T, resp *http.Response) echo {
	t.Helper()
	var e echo
	b, err := base64.StdEncoding.DecodeString(resp.Header.Get("X-Echo"))
	if err != nil {
		t.Fatalf("X-Echo of %s: %v", resp.Status, err)
	}
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("X-Echo of %s: %v", resp.Status, err)
	}
	return e
}

// startServer serves testHandler on 127.0.0.1 through NewListener. wrap, if
// not nil, wraps the TCP listener first (TLS, 1-byte reads).
func startServer(t *testing.T, maxHeaderBytes int, wrap func(net.Listener) net.Listener) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var inner net.Listener = ln
	if wrap != nil {
		inner = wrap(ln)
	}
	file := filepath.Join(t.TempDir(), "file.txt")
	if err := os.WriteFile(file, bytes.Repeat([]byte("sendfile "), 10_000), 0o644); err != nil {
		t.Fatal(err)
	}
	serve(t, testHandler{file: file}, NewListener(inner, maxHeaderBytes), true)
	return ln.Addr().String()
}

// serve serves h on ln until the test ends, with this package's ConnContext
// when recording.
func serve(tb testing.TB, h http.Handler, ln net.Listener, recording bool) {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	if recording {
		srv.ConnContext = ConnContext
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	tb.Cleanup(func() {
		srv.Close()
		<-done
	})
}

// rawClient writes exact bytes to a server and reads its responses.
type rawClient struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawClient {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return newRawClient(t, c)
}

func newRawClient(t *testing.T, c net.Conn) *rawClient {
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return &rawClient{t: t, c: c, br: bufio.NewReader(c)}
}

func (rc *rawClient) write(s string) {
	rc.t.Helper()
	if _, err := io.WriteString(rc.c, s); err != nil {
		rc.t.Fatal(err)
	}
}

// read reads one response to a request with the given method.
func (rc *rawClient) read(method string) *http.Response {
	rc.t.Helper()
	resp, err := http.ReadResponse(rc.br, &http.Request{Method: method})
	if err != nil {
		rc.t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		rc.t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// rawRequest is a request written byte for byte.
type rawRequest struct {
	method   string
	line     string   // request line
	headers  []Header // written as "Name: Value"
	body     string   // as sent, chunked encoding included
	wantBody string   // the body the handler reads
	trailer  http.Header
}

func (q rawRequest) String() string {
	var b strings.Builder
	b.WriteString(q.line + "\r\n")
	for _, h := range q.headers {
		b.WriteString(h.Name + ": " + h.Value + "\r\n")
	}
	b.WriteString("\r\n" + q.body)
	return b.String()
}

// check verifies the handler's report for q.
func (q rawRequest) check(t *testing.T, resp *http.Response, wantOK bool) echo {
	t.Helper()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: status %s", q.line, resp.Status)
	}
	e := decodeEcho(t, resp)
	if e.OK != wantOK {
		t.Fatalf("%s: Headers ok = %v, want %v", q.line, e.OK, wantOK)
	}
	if wantOK && !slices.Equal(e.Headers, q.headers) {
		t.Errorf("%s: Headers\n got %q\nwant %q", q.line, e.Headers, q.headers)
	}
	if !wantOK && e.Headers != nil {
		t.Errorf("%s: Headers returned %q with ok=false", q.line, e.Headers)
	}
	if e.Body != q.wantBody {
		t.Errorf("%s: body %q, want %q", q.line, e.Body, q.wantBody)
	}
	if q.trailer != nil && !equalHeader(e.Trailer, q.trailer) {
		t.Errorf("%s: trailer %q, want %q", q.line, e.Trailer, q.trailer)
	}
	return e
}

func equalHeader(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

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

// oneByteListener hands out connections whose Read returns at most one byte.
type oneByteListener struct{ net.Listener }

func (l oneByteListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return oneByteConn{c}, nil
}

type oneByteConn struct{ net.Conn }

func (c oneByteConn) Read(p []byte) (int, error) {
	return c.Conn.Read(p[:min(len(p), 1)])
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

func TestGoClient(t *testing.T) {
	t.Parallel()
	addr := startServer(t, 0, nil)
	tr := &http.Transport{ExpectContinueTimeout: 10 * time.Second}
	t.Cleanup(tr.CloseIdleConnections)
	testGoClient(t, &http.Client{Transport: tr, Timeout: 20 * time.Second}, "http://"+addr)
}

// testGoClient sends requests with Go's client, whose header order is its own,
// and checks that Headers recovers them consistently with r.Header on a reused
// connection.
func testGoClient(t *testing.T, client *http.Client, base string) {
	t.Helper()
	type request struct {
		method string
		body   io.Reader
		header http.Header
	}
	unsized := func(s string) io.Reader { return io.MultiReader(strings.NewReader(s)) } // sent chunked
	reqs := []request{
		{method: "GET", header: http.Header{"X-B": {"1"}, "X-A": {"2", "3"}}},
		{method: "POST", body: strings.NewReader(`{"a":1}`), header: http.Header{"Content-Type": {"application/json"}}},
		{method: "POST", body: unsized("chunked body"), header: http.Header{"Trailer": {"X-Sum"}}},
		{method: "PUT", body: strings.NewReader("continue"), header: http.Header{"Expect": {"100-continue"}}},
		{method: "HEAD"},
		{method: "DELETE", header: http.Header{"Pragma": {"no-cache"}}},
	}
	reused := 0
	for i, rq := range reqs {
		req, err := http.NewRequest(rq.method, fmt.Sprintf("%s/h/ch/%d?n=%d", base, i, i), rq.body)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range rq.header {
			req.Header[k] = v
		}
		if rq.header.Get("Trailer") != "" {
			req.Header.Del("Trailer")
			req.Trailer = http.Header{"X-Sum": {"42"}}
		}
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			GotConn: func(info httptrace.GotConnInfo) {
				if info.Reused {
					reused++
				}
			},
		}))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		e := decodeEcho(t, resp)
		if !e.OK {
			t.Fatalf("%s %s: Headers ok=false", rq.method, req.URL)
		}
		// Rebuild r.Header from the wire headers independently of the
		// package: canonical names, Host and framing fields set aside.
		got := http.Header{}
		host := ""
		for _, h := range e.Headers {
			switch k := textproto.CanonicalMIMEHeaderKey(h.Name); k {
			case "Host":
				host = h.Value
			case "Transfer-Encoding":
				if !slices.Equal(e.TransferEncoding, []string{h.Value}) {
					t.Errorf("wire Transfer-Encoding %q, r.TransferEncoding %q", h.Value, e.TransferEncoding)
				}
			case "Trailer":
				// net/http moves it to r.Trailer.
			default:
				got[k] = append(got[k], h.Value)
			}
		}
		// net/http adds Cache-Control for a lone Pragma: no-cache.
		if p := got["Pragma"]; len(p) > 0 && p[0] == "no-cache" && got["Cache-Control"] == nil {
			got["Cache-Control"] = []string{"no-cache"}
		}
		if host != e.Host {
			t.Errorf("wire Host %q, r.Host %q", host, e.Host)
		}
		if !equalHeader(got, e.Header) {
			t.Errorf("%s: wire headers %q, r.Header %q", rq.method, got, e.Header)
		}
		if e.Method != rq.method || e.RequestURI != req.URL.RequestURI() {
			t.Errorf("handler saw %s %s", e.Method, e.RequestURI)
		}
	}
	if reused != len(reqs)-1 {
		t.Errorf("%d of %d requests reused the connection", reused, len(reqs)-1)
	}
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

func TestTLS(t *testing.T) {
	t.Parallel()
	cert, pool := testCertificate(t)
	addr := startServer(t, 0, func(ln net.Listener) net.Listener {
		return tls.NewListener(ln, &tls.Config{
			Certificates: []tls.Certificate{cert},
			NextProtos:   []string{"http/1.1"},
		})
	})
	clientConfig := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}

	c, err := tls.Dial("tcp", addr, clientConfig)
	if err != nil {
		t.Fatal(err)
	}
	rc := newRawClient(t, c)
	for _, q := range keepAliveSequence[:3] {
		rc.write(q.String())
		if e := q.check(t, rc.read(q.method), true); e.TLS {
			t.Error("r.TLS is set; the package documentation says it is nil")
		}
	}

	tr := &http.Transport{TLSClientConfig: clientConfig, ExpectContinueTimeout: 10 * time.Second}
	t.Cleanup(tr.CloseIdleConnections)
	testGoClient(t, &http.Client{Transport: tr, Timeout: 20 * time.Second}, "https://"+addr)
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

// testCertificate makes a self-signed certificate for 127.0.0.1.
func testCertificate(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "wireheader test"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true,

		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}
