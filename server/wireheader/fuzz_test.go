package wireheader

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"slices"
	"testing"
)

// FuzzRecorder feeds arbitrary bytes to the recorder, whole and one byte at a
// time, and checks that it neither panics nor outgrows its bounds, that the
// split does not change the result, and that every block it queued describes
// the request net/http parses at the same position of the same stream. Seeds
// are in testdata/fuzz/FuzzRecorder.
func FuzzRecorder(f *testing.F) {
	f.Fuzz(func(t *testing.T, stream []byte) {
		const maxHeader = 1 << 10
		whole := newRecorder(maxHeader)
		whole.feed(stream)
		checkBounds(t, whole, true)

		bytewise := newRecorder(maxHeader)
		for i := range stream {
			bytewise.feed(stream[i : i+1])
			checkBounds(t, bytewise, false)
		}
		checkBounds(t, bytewise, true)
		got, one := snap(whole), snap(bytewise)
		if !equalSnapshots(got, one) {
			t.Fatalf("whole stream queued %q (stopped %v), 1-byte reads queued %q (stopped %v)",
				got.queue, got.stopped, one.queue, one.stopped)
		}

		reqs := readLikeNetHTTP(stream)
		for i, block := range got.queue {
			if i >= len(reqs) {
				// net/http failed on this request or before it: no
				// handler will ever ask for this block.
				break
			}
			head, ok := parseHead(block)
			if !ok {
				t.Fatalf("queued block %d does not parse: %q", i, block)
			}
			if !head.matches(reqs[i]) {
				t.Fatalf("queued block %d %q does not match net/http's request %d: %s %s %q",
					i, block, i, reqs[i].Method, reqs[i].RequestURI, reqs[i].Header)
			}
		}
	})
}

// checkBounds fails t when r holds more memory than its limits allow; full
// also recounts the queue.
func checkBounds(t *testing.T, r *recorder, full bool) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case len(r.block) > r.maxHeaderBytes:
		t.Fatalf("header block buffer %d > %d", len(r.block), r.maxHeaderBytes)
	case len(r.line) > maxChunkLine:
		t.Fatalf("chunk line buffer %d > %d", len(r.line), maxChunkLine)
	case r.trailer > maxTrailer:
		t.Fatalf("trailer %d > %d", r.trailer, maxTrailer)
	case r.queued > r.budget:
		t.Fatalf("queued %d bytes > budget %d", r.queued, r.budget)
	case r.stopped.Load() != (r.state == stateStopped):
		t.Fatalf("stopped flag %v in state %d", r.stopped.Load(), r.state)
	}
	if !full {
		return
	}
	sum := 0
	for _, b := range r.queue {
		sum += len(b) + entryOverhead
	}
	if sum != r.queued {
		t.Fatalf("queued %d, blocks add up to %d", r.queued, sum)
	}
}

// readLikeNetHTTP reads the requests of stream the way net/http's server loop
// does (the tolerance for stray CR/LF after a POST, the request, its whole
// body) up to the first request the server would not hand to a handler.
func readLikeNetHTTP(stream []byte) []*http.Request {
	br := bufio.NewReader(bytes.NewReader(stream))
	var reqs []*http.Request
	lastMethod := ""
	for {
		if lastMethod == "POST" {
			peek, _ := br.Peek(4)
			n := 0
			for n < len(peek) && (peek[n] == '\r' || peek[n] == '\n') {
				n++
			}
			br.Discard(n)
		}
		req, err := http.ReadRequest(br)
		if err != nil || req.ProtoMajor != 1 || len(req.Header["Host"]) > 1 {
			return reqs
		}
		delete(req.Header, "Host") // as the server does
		reqs = append(reqs, req)
		if _, err := io.Copy(io.Discard, req.Body); err != nil {
			return reqs
		}
		lastMethod = req.Method
	}
}

// FuzzParseHead checks parseHead against net/textproto on single blocks,
// including the values of folded fields.
func FuzzParseHead(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\nx-a:  2 \r\n\r\n"))
	f.Add([]byte("GET / HTTP/1.1\nX-F: a\n \tb \n\n"))
	f.Fuzz(func(t *testing.T, block []byte) {
		head, ok := parseHead(string(block))
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(block)))
		if !ok || err != nil {
			return
		}
		delete(req.Header, "Host")
		if !head.matches(req) {
			t.Fatalf("%q: parsed %q, net/http %q", block, head.fields, req.Header)
		}
		if n := bytes.Count(block, []byte("\n")); len(head.fields) > n || slices.ContainsFunc(head.fields, func(h Header) bool { return h.Name == "" }) {
			t.Fatalf("%q: implausible fields %q", block, head.fields)
		}
	})
}
