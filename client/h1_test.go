package client

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/protocol"
)

// countConns counts the connections an httptest server accepts.
func countConns(srv *httptest.Server) *atomic.Int32 {
	var n atomic.Int32
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			n.Add(1)
		}
	}
	return &n
}

func TestKeepAliveAndClosedIdleConnection(t *testing.T) {
	t.Parallel()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "ok")
	}))
	conns := countConns(srv)
	srv.Start()
	t.Cleanup(srv.Close)
	relay := newFakeRelay(t, nil)
	agent := startAgent(t, testConfig(t, relay, srv.URL))
	agent.waitConnected(t)
	// The agent's start check dials the target and leaves that connection
	// in the pool; let it end, or the first delivery may dial a second.
	target := agent.targets.list[0]
	waitFor(t, "the start check of the target", func() bool {
		target.mu.Lock()
		defer target.mu.Unlock()
		return target.status.Known
	})
	rs := relay.next(t)
	for i := range 3 {
		if resp, body := rs.mustDeliver(t, newRequest("evt-ka", "POST", "/"), []byte("x")); resp.Status != 200 || string(body) != "ok" {
			t.Fatalf("delivery %d: %+v %q", i, resp, body)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections for 3 sequential deliveries, want 1 (keep-alive)", n)
	}
	// The app drops its idle connections: the pool notices, and the next
	// delivery dials.
	srv.CloseClientConnections()
	pool := agent.targets.list[0].fwd.client
	waitFor(t, "the pool to notice the closed connection", func() bool {
		pool.mu.Lock()
		defer pool.mu.Unlock()
		return len(pool.idle) == 1 && pool.idle[0].broken.Load()
	})
	if resp, _ := rs.mustDeliver(t, newRequest("evt-ka2", "POST", "/"), []byte("y")); resp.Status != 200 {
		t.Fatalf("delivery after the app closed its connections: %+v", resp)
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("%d connections, want 2", n)
	}
}

// flakyTarget answers the first request it reads, then reads the second
// and hangs up without an answer, as an app closing an idle connection at
// the wrong moment does (when the agent reuses the first connection), or
// one that crashed while handling it (when the agent's pool had not taken
// the first connection back yet and it opened another). Later requests are
// answered. It counts the requests it read by event id.
type flakyTarget struct {
	ln       net.Listener
	wg       sync.WaitGroup
	requests atomic.Int32
	mu       sync.Mutex
	seen     map[string]int
}

func newFlakyTarget(t *testing.T) *flakyTarget {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ft := &flakyTarget{ln: ln, seen: map[string]int{}}
	ft.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			ft.wg.Go(func() { ft.serve(c) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		ft.wg.Wait()
	})
	return ft
}

func (ft *flakyTarget) serve(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(testTimeout))
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		ft.mu.Lock()
		ft.seen[req.Header.Get(HeaderEventID)]++
		ft.mu.Unlock()
		if ft.requests.Add(1) == 2 {
			return // hang up instead of answering
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	}
}

func (ft *flakyTarget) count(eventID string) int {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	return ft.seen[eventID]
}

// TestNoResendOnceTheRequestWentOut: a connection closed without an answer
// after the app read the request fails the attempt; the agent does not
// send the request again itself, whatever the body, because the app cannot
// tell such a copy from the first (the relay's retry carries the next
// attempt number).
func TestNoResendOnceTheRequestWentOut(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name    string
		method  string
		body    string
		saveDir bool
	}{
		{"no body", "GET", "", false},
		{"body from memory", "POST", "payload", true},
		{"body streamed from the relay", "POST", "payload", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			target := newFlakyTarget(t)
			relay := newFakeRelay(t, nil)
			cfg := testConfig(t, relay, "http://"+target.ln.Addr().String())
			if tt.saveDir {
				cfg.SaveDir = t.TempDir()
			}
			agent := startAgent(t, cfg)
			agent.waitConnected(t)
			rs := relay.next(t)
			if resp, _ := rs.mustDeliver(t, newRequest("evt-1", tt.method, "/"), []byte(tt.body)); resp.Status != 200 {
				t.Fatalf("first delivery: %+v", resp)
			}
			resp, _ := rs.mustDeliver(t, newRequest("evt-2", tt.method, "/"), []byte(tt.body))
			if resp.ErrorCode != protocol.ErrCodeTarget || !strings.Contains(resp.Error, "without an answer") {
				t.Errorf("second delivery: %+v, want %s saying the app closed the connection without an answer", resp, protocol.ErrCodeTarget)
			}
			if n := target.count("evt-2"); n != 1 {
				t.Errorf("the app got evt-2 %d times, want once", n)
			}
		})
	}
}

// deadConn is a pooled connection that takes no byte: the app reset it
// while it waited, and the reset was not yet seen when it was taken. Reads
// block until a write finds the reset.
type deadConn struct {
	net.Conn
	once  sync.Once
	reset chan struct{}
}

func (d *deadConn) Write([]byte) (int, error) {
	d.once.Do(func() {
		close(d.reset)
		_ = d.Conn.SetReadDeadline(aLongTimeAgo) // wake a blocked Read
	})
	return 0, syscall.EPIPE
}

func (d *deadConn) Read(p []byte) (int, error) {
	n, err := d.Conn.Read(p)
	select {
	case <-d.reset:
		return 0, syscall.ECONNRESET
	default:
		return n, err
	}
}

// TestResendWhenNoByteWentOut: a reused connection that took no byte of
// the request is replaced and the request sent on a new one, once.
func TestResendWhenNoByteWentOut(t *testing.T) {
	t.Parallel()
	var got atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Add(1)
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "ok")
	}))
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	c := newH1Client(u, nil, 2)
	t.Cleanup(c.closeIdle)
	local, remote := net.Pipe()
	t.Cleanup(func() { local.Close(); remote.Close() })
	dead := &h1Conn{conn: &deadConn{Conn: local, reset: make(chan struct{})}}
	dead.br = bufio.NewReaderSize(dead.conn, connReadBuffer)
	dead.bw = bufio.NewWriter(sentCounter{dead})
	c.putConn(dead)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	resp, err := c.roundTrip(ctx, &h1Request{method: "POST", target: "/", header: []protocol.Header{{Name: "Host", Value: u.Host},
		{Name: "Content-Length", Value: "4"}}, body: strings.NewReader("body"), contentLength: 4}, 1<<20)
	if err != nil || resp.Status != 200 || got.Load() != 1 {
		t.Fatalf("roundTrip: %+v %v; the app got %d requests, want 1", resp, err, got.Load())
	}
}

func TestHTTPSTarget(t *testing.T) {
	t.Parallel()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Proto", r.Proto)
		w.Write(body)
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake below is expected
	srv.StartTLS()
	t.Cleanup(srv.Close)
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())

	relay := newFakeRelay(t, nil)
	cfg := testConfig(t, relay, srv.URL)
	cfg.TargetTLS = &tls.Config{RootCAs: roots}
	agent := startAgent(t, cfg)
	agent.waitConnected(t)
	rs := relay.next(t)
	resp, body := rs.mustDeliver(t, newRequest("evt-tls", "POST", "/"), []byte("secret"))
	if resp.Status != 200 || string(body) != "secret" {
		t.Errorf("response %+v %q", resp, body)
	}
	for _, h := range resp.Headers {
		if h.Name == "X-Proto" && h.Value != "HTTP/1.1" {
			t.Errorf("target spoke %s, want HTTP/1.1", h.Value)
		}
	}

	// Without the test's root the certificate is refused: a target error.
	_, err := Replay(context.Background(), &SavedEvent{EventID: "e", Method: "GET", Path: "/"}, srv.URL, ReplayOptions{})
	var te *TargetError
	if !errors.As(err, &te) || te.Code != protocol.ErrCodeTarget || !strings.Contains(te.Msg, "certificate") {
		t.Errorf("Replay with an unknown certificate: %v", err)
	}
}

func TestInterimResponsesAndFraming(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body) // sends 100 Continue for Expect: 100-continue
		switch r.URL.Path {
		case "/hints":
			w.Header().Set("Link", "</style.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			w.Write(body)
		case "/head":
			w.Header().Set("Content-Length", "5")
		case "/until-close":
			w.Header().Set("Connection", "close")
			w.(http.Flusher).Flush() // no Content-Length: the body runs to the end of the connection
			io.WriteString(w, "streamed")
		default:
			w.Write(body)
		}
	}))
	t.Cleanup(srv.Close)
	relay := newFakeRelay(t, nil)
	agent := startAgent(t, testConfig(t, relay, srv.URL))
	agent.waitConnected(t)
	rs := relay.next(t)

	resp, body := rs.mustDeliver(t, newRequest("e1", "POST", "/echo", protocol.Header{Name: "Expect", Value: "100-continue"}), []byte("continued"))
	if resp.Status != 200 || string(body) != "continued" {
		t.Errorf("Expect: 100-continue: %+v %q", resp, body)
	}
	resp, body = rs.mustDeliver(t, newRequest("e2", "POST", "/hints"), []byte("hinted"))
	if resp.Status != 200 || string(body) != "hinted" {
		t.Errorf("after 103 Early Hints: %+v %q", resp, body)
	}
	resp, body = rs.mustDeliver(t, newRequest("e3", "HEAD", "/head"), nil)
	if resp.Status != 200 || len(body) != 0 {
		t.Errorf("HEAD: %+v %q", resp, body)
	}
	if v, ok := firstHeader(resp.Headers, "Content-Length"); !ok || v != "5" {
		t.Errorf("HEAD: Content-Length %q %v, want the app's 5", v, ok)
	}
	resp, body = rs.mustDeliver(t, newRequest("e4", "GET", "/until-close"), nil)
	if resp.Status != 200 || string(body) != "streamed" {
		t.Errorf("body until close: %+v %q", resp, body)
	}
}

// rawApp answers every request on a connection with response, exactly.
func rawApp(t *testing.T, response string) string {
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

// TestResponseHeadersAsWritten: the app's response header lines go back to
// the relay in the app's order and case, repeats kept, folded lines joined,
// hop-by-hop and framing fields left out; 1xx heads before are skipped.
func TestResponseHeadersAsWritten(t *testing.T) {
	t.Parallel()
	head := "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" +
		"HTTP/1.1 200 OK\r\nx-Second: 2\r\nX-First:  1 \r\nConnection: x-hop\r\nx-hop: gone\r\nX-Second: 3\r\n" +
		"X-Folded: a\r\n  b\r\nContent-Length: 2\r\n\r\nok"
	relay := newFakeRelay(t, nil)
	agent := startAgent(t, testConfig(t, relay, rawApp(t, head)))
	agent.waitConnected(t)
	rs := relay.next(t)
	for i := range 2 {
		resp, body := rs.mustDeliver(t, newRequest(fmt.Sprintf("evt-%d", i), "POST", "/"), []byte("x"))
		want := []protocol.Header{{Name: "x-Second", Value: "2"}, {Name: "X-First", Value: "1"}, {Name: "X-Second", Value: "3"}, {Name: "X-Folded", Value: "a b"}}
		if resp.Status != 200 || string(body) != "ok" || !slices.Equal(resp.Headers, want) {
			t.Errorf("delivery %d: %d %q %v, want 200 ok %v", i, resp.Status, body, resp.Headers, want)
		}
	}
}

// FuzzResponseHead: reading an app's response head never panics, and the
// lines kept in the app's order are exactly the fields net/http parsed.
func FuzzResponseHead(f *testing.F) {
	f.Add("HTTP/1.1 200 OK\r\nX-B: 1\r\nx-a:  2 \r\nX-B: 3\r\n\r\n")
	f.Add("HTTP/1.1 200 OK\nFolded: a\n b\n\n")
	f.Add("HTTP/1.1 204 No Content\r\n\r\n")
	f.Add("HTTP/1.1 200 OK\r\nbad line\r\n\r\n")
	f.Fuzz(func(t *testing.T, head string) {
		end := headEnd([]byte(head))
		if end < 0 {
			return
		}
		lines := headerLines(head[:end])
		resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(head[:end])), nil)
		if err != nil || lines == nil || !sameHeader(lines, resp.Header) {
			return
		}
		n := 0
		for _, vs := range resp.Header {
			n += len(vs)
		}
		if n != len(lines) {
			t.Fatalf("%d lines for %d parsed values", len(lines), n)
		}
	})
}

// TestResponseHeadIsCapped: the agent reads at most 68 KiB of an app's
// response head (the relay passes 64 KiB), and says so.
func TestResponseHeadIsCapped(t *testing.T) {
	t.Parallel()
	var head strings.Builder
	head.WriteString("HTTP/1.1 200 OK\r\n")
	for i := 0; head.Len() < 100<<10; i++ {
		fmt.Fprintf(&head, "X-Filler-%d: %s\r\n", i, strings.Repeat("f", 100))
	}
	head.WriteString("Content-Length: 2\r\n\r\nok")
	relay := newFakeRelay(t, nil)
	agent := startAgent(t, testConfig(t, relay, rawApp(t, head.String())))
	agent.waitConnected(t)
	rs := relay.next(t)
	resp, _ := rs.mustDeliver(t, newRequest("evt-big-head", "POST", "/"), []byte("x"))
	if resp.ErrorCode != protocol.ErrCodeTarget || !strings.Contains(resp.Error, "header section is larger than") {
		t.Fatalf("delivery: %+v, want %s about the header size", resp, protocol.ErrCodeTarget)
	}
	// A head just under the cap, larger than the connection's read buffer,
	// is read whole.
	var ok strings.Builder
	ok.WriteString("HTTP/1.1 200 OK\r\n")
	for i := 0; ok.Len() < 60<<10; i++ {
		fmt.Fprintf(&ok, "X-Filler-%d: %s\r\n", i, strings.Repeat("f", 100))
	}
	ok.WriteString("Content-Length: 2\r\n\r\nok")
	relay2 := newFakeRelay(t, nil)
	agent2 := startAgent(t, testConfig(t, relay2, rawApp(t, ok.String())))
	agent2.waitConnected(t)
	rs2 := relay2.next(t)
	if resp, body := rs2.mustDeliver(t, newRequest("evt-60k-head", "POST", "/"), []byte("x")); resp.Status != 200 || string(body) != "ok" || len(resp.Headers) < 500 {
		t.Fatalf("a 60 KiB head: %d %q with %d headers", resp.Status, body, len(resp.Headers))
	}
}
