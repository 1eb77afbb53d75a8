package wireheader

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
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
	rec := connOf(r).rec
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
