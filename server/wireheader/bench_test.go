package wireheader

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// webhookRequest is a GitHub-style delivery: 14 header lines, 2 KiB of JSON.
var webhookRequest = func() string {
	body := `{"ref":"refs/heads/main","payload":"` + strings.Repeat("x", 2000) + `"}`
	return "POST /h/0f8fad5bd9cb469fa16570867728950e/github HTTP/1.1\r\n" +
		"Host: relay.example.com\r\n" +
		"User-Agent: GitHub-Hookshot/044aadd\r\n" +
		"Content-Length: " + fmt.Sprint(len(body)) + "\r\n" +
		"Accept: */*\r\n" +
		"Content-Type: application/json\r\n" +
		"X-GitHub-Delivery: 72d3162e-cc78-11e3-81ab-4c9367dc0958\r\n" +
		"X-GitHub-Event: push\r\n" +
		"X-GitHub-Hook-ID: 292430182\r\n" +
		"X-GitHub-Hook-Installation-Target-ID: 79929171\r\n" +
		"X-GitHub-Hook-Installation-Target-Type: repository\r\n" +
		"X-Hub-Signature: sha1=7d38cdd689735b008b3c702edd92eea23791c5f6\r\n" +
		"X-Hub-Signature-256: sha256=d57c68ca6f92289e6987922ff26938930f6e66a2d161ef06abdf1859230aa23c\r\n" +
		"Accept-Encoding: gzip\r\n" +
		"Connection: keep-alive\r\n" +
		"\r\n" + body
}()

// BenchmarkServe measures whole requests over loopback, one keep-alive
// connection per client goroutine: recorder=off serves a plain listener and
// reads r.Header; recorder=on serves NewListener with ConnContext and the
// handler calls Headers. Compare the req/s metrics.
func BenchmarkServe(b *testing.B) {
	for _, on := range []bool{false, true} {
		b.Run(fmt.Sprintf("recorder=%v", on), func(b *testing.B) {
			benchmarkServe(b, on)
		})
	}
}

func benchmarkServe(b *testing.B, on bool) {
	var fallbacks atomic.Int64
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if on {
			if _, ok := Headers(r); !ok {
				fallbacks.Add(1)
			}
		} else {
			_ = r.Header.Get("X-Hub-Signature-256")
		}
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "ok")
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := ln.Addr().String()
	if on {
		ln = NewListener(ln, 0)
	}
	serve(b, h, ln, on)

	b.SetBytes(int64(len(webhookRequest)))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(time.Minute))
		br := bufio.NewReader(c)
		for pb.Next() {
			if _, err := io.WriteString(c, webhookRequest); err != nil {
				b.Error(err)
				return
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
	if n := fallbacks.Load(); n > 0 {
		b.Errorf("%d requests fell back to r.Header", n)
	}
}

// BenchmarkRecorder measures the recorder alone per request: following the
// bytes of one request, then Headers' pop, parse and comparison with r.Header.
func BenchmarkRecorder(b *testing.B) {
	stream := []byte(webhookRequest)
	req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(webhookRequest)))
	if err != nil {
		b.Fatal(err)
	}
	delete(req.Header, "Host")
	rec := newRecorder(http.DefaultMaxHeaderBytes)
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	for b.Loop() {
		// net/http reads in pieces of up to 4 KiB.
		for p := stream; len(p) > 0; {
			n := min(len(p), 4096)
			rec.feed(p[:n])
			p = p[n:]
		}
		block, ok := rec.pop()
		if !ok {
			b.Fatal("nothing queued")
		}
		head, ok := parseHead(block)
		if !ok || !head.matches(req) {
			b.Fatal("mismatch")
		}
	}
}
