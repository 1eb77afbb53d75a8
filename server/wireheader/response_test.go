package wireheader

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// serveEdited serves handler through NewListener and returns its address.
func serveEdited(t *testing.T, handler http.HandlerFunc) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: handler, ConnContext: ConnContext, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(NewListener(ln, 0)) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	return ln.Addr().String()
}

// readHead reads a response head and returns its status line and lines.
func readHead(t *testing.T, br *bufio.Reader) (string, []string) {
	t.Helper()
	var lines []string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("read head: %v (so far %q)", err, lines)
		}
		if line == "\r\n" {
			return lines[0], lines[1:]
		}
		lines = append(lines, strings.TrimSuffix(line, "\r\n"))
	}
}

func TestSetResponseHeaders(t *testing.T) {
	t.Parallel()
	app := []Header{{"x-B", "1"}, {"X-a", "2"}, {"x-B", "3"}, {"content-type", "text/html"}}
	big := strings.Repeat("z", 1<<20)
	addr := serveEdited(t, func(w http.ResponseWriter, r *http.Request) {
		Headers(r)
		if r.URL.Path == "/plain" {
			w.Header().Set("X-Relay", "r")
			io.WriteString(w, "plain")
			return
		}
		if !SetResponseHeaders(r, app) {
			t.Error("SetResponseHeaders on a NewListener connection: false")
		}
		io.Copy(io.Discard, r.Body) // sends 100 Continue when asked
		h := w.Header()
		h["Content-Type"] = nil
		h.Set("X-Relay", "r")
		body := "edited"
		if r.URL.Path == "/big" {
			body = big
		}
		h.Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, body)
	})
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	want := []string{"x-B: 1", "X-a: 2", "x-B: 3", "content-type: text/html"}
	for _, tc := range []struct{ path, expect, body string }{
		{"/edited", "", "edited"},
		{"/plain", "", "plain"},
		{"/continue", "100-continue", "edited"},
		{"/big", "", big},
		{"/plain", "", "plain"},
	} {
		fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n", tc.path)
		if tc.expect != "" {
			fmt.Fprintf(conn, "Expect: %s\r\n\r\n", tc.expect)
			if status, lines := readHead(t, br); status != "HTTP/1.1 100 Continue" || len(lines) != 0 {
				t.Fatalf("%s: interim %q %q, want a bare 100 Continue", tc.path, status, lines)
			}
			io.WriteString(conn, "body")
		} else {
			io.WriteString(conn, "\r\nbody")
		}
		status, lines := readHead(t, br)
		n := -1
		for _, l := range lines {
			if v, ok := strings.CutPrefix(l, "Content-Length: "); ok {
				n, _ = strconv.Atoi(v)
			}
		}
		body := make([]byte, max(n, 0))
		if _, err := io.ReadFull(br, body); err != nil || string(body) != tc.body {
			t.Fatalf("%s: body of %d bytes: %v", tc.path, n, err)
		}
		if tc.path == "/plain" {
			if slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, "x-B") }) || !slices.Contains(lines, "X-Relay: r") {
				t.Errorf("%s: lines %q: another request's lines, or its own missing", tc.path, lines)
			}
			continue
		}
		if status != "HTTP/1.1 202 Accepted" || len(lines) < len(want) || !slices.Equal(lines[:len(want)], want) {
			t.Errorf("%s: %q %q, want the lines %q first", tc.path, status, lines, want)
		}
		if !slices.Contains(lines, "X-Relay: r") || slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, "Content-Type") }) {
			t.Errorf("%s: lines %q: want X-Relay and no Content-Type of net/http's", tc.path, lines)
		}
	}
}

func TestSetResponseHeadersWithoutListener(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if SetResponseHeaders(r, []Header{{"X-A", "1"}}) {
			t.Error("SetResponseHeaders without NewListener: true")
		}
	}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}
