package wireheader

import (
	"slices"
	"strings"
	"testing"
)

// snapshot is the observable state of a recorder: what it queued and whether
// it still records.
type snapshot struct {
	queue   []string
	stopped bool
	state   state
}

func snap(r *recorder) snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	return snapshot{queue: slices.Clone(r.queue), stopped: r.stopped.Load(), state: r.state}
}

// requestLines returns the first line of every queued block.
func requestLines(queue []string) []string {
	var lines []string
	for _, b := range queue {
		line, _, _ := strings.Cut(b, "\n")
		lines = append(lines, strings.TrimSuffix(line, "\r"))
	}
	return lines
}

func TestRecorderStream(t *testing.T) {
	t.Parallel()
	const get2 = "GET /2 HTTP/1.1\r\nHost: a\r\n\r\n"
	tests := []struct {
		name    string
		stream  string
		want    []string // request lines of the queued blocks
		stopped bool
	}{
		{
			name:   "requests without body",
			stream: "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n" + get2,
			want:   []string{"GET /1 HTTP/1.1", "GET /2 HTTP/1.1"},
		},
		{
			name:   "body by length is skipped even when it looks like a request",
			stream: "POST /1 HTTP/1.1\r\nHost: a\r\nContent-Length: 27\r\n\r\nGET /evil HTTP/1.1\r\nA: b\r\n\r\n" + get2,
			want:   []string{"POST /1 HTTP/1.1", "GET /2 HTTP/1.1"},
		},
		{
			name: "chunked body with extensions and trailers",
			stream: "POST /1 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n" +
				"5;name=val\r\nhello\r\n" + "1c;q=\"a;b\"\r\nGET /evil HTTP/1.1\r\nA: b\r\n\r\n\r\n" +
				"0;last\r\nX-Sum: 1\r\nX-More: 2\r\n\r\n" + get2,
			want: []string{"POST /1 HTTP/1.1", "GET /2 HTTP/1.1"},
		},
		{
			name:   "chunked body without trailers, upper-case hex",
			stream: "PUT /1 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\nA\r\n0123456789\r\n0\r\n\r\n" + get2,
			want:   []string{"PUT /1 HTTP/1.1", "GET /2 HTTP/1.1"},
		},
		{
			name:   "chunked overrides a valid Content-Length",
			stream: "POST /1 HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n" + get2,
			want:   []string{"POST /1 HTTP/1.1", "GET /2 HTTP/1.1"},
		},
		{
			name:   "Transfer-Encoding is ignored on HTTP/1.0",
			stream: "POST /1 HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc" + get2,
			want:   []string{"POST /1 HTTP/1.0", "GET /2 HTTP/1.1"},
		},
		{
			name:   "repeated equal Content-Length",
			stream: "POST /1 HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\ncontent-length:  2 \r\n\r\nhi" + get2,
			want:   []string{"POST /1 HTTP/1.1", "GET /2 HTTP/1.1"},
		},
		{
			name:   "zero Content-Length on GET and HEAD",
			stream: "GET /1 HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\nHEAD /h HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n" + get2,
			want:   []string{"GET /1 HTTP/1.1", "HEAD /h HTTP/1.1", "GET /2 HTTP/1.1"},
		},
		{
			name:   "GET with a body",
			stream: "GET /1 HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nbody" + get2,
			want:   []string{"GET /1 HTTP/1.1", "GET /2 HTTP/1.1"},
		},
		{
			name:   "bare LF line endings in headers",
			stream: "GET /1 HTTP/1.1\nHost: a\n\n" + "GET /3 HTTP/1.1\r\nHost: a\n\r\n" + get2,
			want:   []string{"GET /1 HTTP/1.1", "GET /3 HTTP/1.1", "GET /2 HTTP/1.1"},
		},
		{
			name:   "stray CRLF after a POST is skipped",
			stream: "POST /1 HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx\r\n" + get2,
			want:   []string{"POST /1 HTTP/1.1", "GET /2 HTTP/1.1"},
		},
		{
			name:    "at most four stray bytes after a POST",
			stream:  "POST /1 HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx\r\n\r\n\r\n" + get2,
			want:    []string{"POST /1 HTTP/1.1"},
			stopped: true,
		},
		{
			name:    "stray CRLF after a GET stops",
			stream:  "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n\r\n" + get2,
			want:    []string{"GET /1 HTTP/1.1"},
			stopped: true,
		},
		{
			name:   "folded Content-Length still frames the body",
			stream: "POST /1 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n \r\nX-Fold: a\r\n\tb\r\n\r\nabc" + get2,
			want:   []string{"POST /1 HTTP/1.1", "GET /2 HTTP/1.1"},
		},
		{
			name:    "unsupported Transfer-Encoding stops",
			stream:  get2 + "POST /1 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n" + get2,
			want:    []string{"GET /2 HTTP/1.1"},
			stopped: true,
		},
		{
			name:    "two Transfer-Encoding fields stop",
			stream:  "POST /1 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
			stopped: true,
		},
		{
			name:    "conflicting Content-Length stops",
			stream:  "POST /1 HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
			stopped: true,
		},
		{
			name:    "signed Content-Length stops",
			stream:  "POST /1 HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\na",
			stopped: true,
		},
		{
			name:    "empty Content-Length stops",
			stream:  "POST /1 HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n",
			stopped: true,
		},
		{
			name:    "chunk-size line with bare LF stops",
			stream:  "POST /1 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n" + get2,
			want:    []string{"POST /1 HTTP/1.1"},
			stopped: true,
		},
		{
			name:    "whitespace before a chunk extension stops",
			stream:  "POST /1 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5 ;x\r\nhello\r\n0\r\n\r\n" + get2,
			want:    []string{"POST /1 HTTP/1.1"},
			stopped: true,
		},
		{
			name:    "chunk data without CRLF stops",
			stream:  "POST /1 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloX\r\n0\r\n\r\n" + get2,
			want:    []string{"POST /1 HTTP/1.1"},
			stopped: true,
		},
		{
			name:    "chunk size of 17 hex digits stops",
			stream:  "POST /1 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n00000000000000001\r\nx\r\n0\r\n\r\n",
			want:    []string{"POST /1 HTTP/1.1"},
			stopped: true,
		},
		{
			name:    "WebSocket upgrade stops after the request",
			stream:  "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n" + get2,
			want:    []string{"GET /ws HTTP/1.1"},
			stopped: true,
		},
		{
			name:    "CONNECT stops after the request",
			stream:  "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n" + get2,
			want:    []string{"CONNECT example.com:443 HTTP/1.1"},
			stopped: true,
		},
		{
			name:    "HTTP/2 preface stops",
			stream:  "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
			stopped: true,
		},
		{
			name:    "request line without version stops",
			stream:  "GET /\r\n\r\n",
			stopped: true,
		},
		{
			name:    "header line without colon stops",
			stream:  "GET / HTTP/1.1\r\nHost a\r\n\r\n",
			stopped: true,
		},
		{
			name:    "continuation as first header line stops",
			stream:  "GET / HTTP/1.1\r\n Host: a\r\n\r\n",
			stopped: true,
		},
		{
			name:    "space before colon stops",
			stream:  "GET / HTTP/1.1\r\nHost : a\r\n\r\n",
			stopped: true,
		},
		{
			name:    "oversized header block stops, earlier blocks stay",
			stream:  get2 + "GET /big HTTP/1.1\r\nX-Big: " + strings.Repeat("b", 300) + "\r\n\r\n" + get2,
			want:    []string{"GET /2 HTTP/1.1"},
			stopped: true,
		},
		{
			name:   "incomplete block is not queued",
			stream: get2 + "GET /3 HTTP/1.1\r\nHost: a\r\n",
			want:   []string{"GET /2 HTTP/1.1"},
		},
	}
	const maxHeader = 256
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newRecorder(maxHeader)
			r.feed([]byte(tt.stream))
			got := snap(r)
			if lines := requestLines(got.queue); !slices.Equal(lines, tt.want) {
				t.Errorf("queued %q, want %q", lines, tt.want)
			}
			if got.stopped != tt.stopped {
				t.Errorf("stopped = %v, want %v", got.stopped, tt.stopped)
			}
			// The result must not depend on how the stream is split into
			// reads: one byte at a time, and every split in two.
			one := newRecorder(maxHeader)
			for i := range len(tt.stream) {
				one.feed([]byte(tt.stream[i : i+1]))
			}
			if s := snap(one); !equalSnapshots(s, got) {
				t.Errorf("1-byte reads: queued %q stopped %v, whole stream: %q stopped %v",
					requestLines(s.queue), s.stopped, requestLines(got.queue), got.stopped)
			}
			for i := 1; i < len(tt.stream); i++ {
				two := newRecorder(maxHeader)
				two.feed([]byte(tt.stream[:i]))
				two.feed([]byte(tt.stream[i:]))
				if s := snap(two); !equalSnapshots(s, got) {
					t.Fatalf("split at %d: queued %q stopped %v, whole stream: %q stopped %v",
						i, requestLines(s.queue), s.stopped, requestLines(got.queue), got.stopped)
				}
			}
		})
	}
}

func equalSnapshots(a, b snapshot) bool {
	return slices.Equal(a.queue, b.queue) && a.stopped == b.stopped && a.state == b.state
}

func TestRecorderQueueBound(t *testing.T) {
	t.Parallel()
	const maxHeader = 1024
	r := newRecorder(maxHeader)
	req := []byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	for i := 0; i < 10_000 && !r.stopped.Load(); i++ {
		r.feed(req)
	}
	if !r.stopped.Load() {
		t.Fatal("recorder never stopped although nothing popped its queue")
	}
	r.mu.Lock()
	queued, n := r.queued, len(r.queue)
	r.mu.Unlock()
	if queued > r.budget {
		t.Errorf("queued %d bytes, budget %d", queued, r.budget)
	}
	// Every queued block is still handed out in order.
	for i := range n {
		block, ok := r.pop()
		if !ok || block != string(req) {
			t.Fatalf("pop %d = %q, %v", i, block, ok)
		}
	}
	if _, ok := r.pop(); ok {
		t.Error("pop on a drained, stopped recorder succeeded")
	}
}

func TestRecorderUnusable(t *testing.T) {
	t.Parallel()
	r := newRecorder(1024)
	if _, ok := r.pop(); ok {
		t.Fatal("pop on an empty queue succeeded")
	}
	r.feed([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
	if _, ok := r.pop(); ok {
		t.Error("pop succeeded after the recorder lost track")
	}
	if !r.stopped.Load() {
		t.Error("an unusable recorder still records")
	}
}

func TestParseHead(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		block  string
		want   []Header
		folded bool
		bad    bool
	}{
		{
			name:  "order, case, repeats and value whitespace",
			block: "POST /x?y HTTP/1.1\r\nhost: a\r\nX-B: 1\r\nx-a:2\r\nX-B:  3 \t\r\nX-Empty:\r\nX-Inner: a  b\r\n\r\n",
			want: []Header{{"host", "a"}, {"X-B", "1"}, {"x-a", "2"}, {"X-B", "3"},
				{"X-Empty", ""}, {"X-Inner", "a  b"}},
		},
		{
			name:  "obs-text and tabs in values",
			block: "GET / HTTP/1.0\nX-Latin: caf\xe9\nX-Tab: a\tb\n\n",
			want:  []Header{{"X-Latin", "caf\xe9"}, {"X-Tab", "a\tb"}},
		},
		{
			name:   "obs-fold joined with one space as net/textproto does",
			block:  "GET / HTTP/1.1\r\nX-F: a \r\n  b\r\n\t\r\nX-G: c\r\n\r\n",
			want:   []Header{{"X-F", "a b "}, {"X-G", "c"}},
			folded: true,
		},
		{name: "control byte in value", block: "GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n", bad: true},
		{name: "empty name", block: "GET / HTTP/1.1\r\n: a\r\n\r\n", bad: true},
		{name: "bad method", block: "G(T / HTTP/1.1\r\n\r\n", bad: true},
		{name: "HTTP/2", block: "GET / HTTP/2.0\r\n\r\n", bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h, ok := parseHead(tt.block)
			if ok == tt.bad {
				t.Fatalf("ok = %v, want %v", ok, !tt.bad)
			}
			if tt.bad {
				return
			}
			if !slices.Equal(h.fields, tt.want) {
				t.Errorf("fields = %q, want %q", h.fields, tt.want)
			}
			if h.folded != tt.folded {
				t.Errorf("folded = %v, want %v", h.folded, tt.folded)
			}
		})
	}
}

func TestParseChunkLine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		line string
		size uint64
		ok   bool
	}{
		{"0\r\n", 0, true},
		{"1a\r\n", 0x1a, true},
		{"FF;name=value;q=\"a;b\"\r\n", 0xff, true},
		{"10\t \r\n", 0x10, true},
		{"ffffffffffffffff\r\n", 1<<64 - 1, true},
		{"10000000000000000\r\n", 0, false},
		{"\r\n", 0, false},
		{";ext\r\n", 0, false},
		{"5\n", 0, false},
		{"5\r\r\n", 0, false},
		{"5 ;ext\r\n", 0, false},
		{"0x5\r\n", 0, false},
		{"-5\r\n", 0, false},
		{strings.Repeat("0", 4094) + "\r\n", 0, false},
	}
	for _, tt := range tests {
		var excess int64
		size, ok := parseChunkLine([]byte(tt.line), &excess)
		if size != tt.size || ok != tt.ok {
			t.Errorf("parseChunkLine(%q) = %d, %v; want %d, %v", tt.line, size, ok, tt.size, tt.ok)
		}
	}
	// net/http gives up on chunks whose extensions dwarf their data.
	var excess int64
	line := []byte("1;" + strings.Repeat("x", 1000) + "\r\n")
	for i := range 100 {
		if _, ok := parseChunkLine(line, &excess); !ok {
			if i < 10 {
				t.Fatalf("rejected after %d chunks", i)
			}
			return
		}
	}
	t.Error("chunk overhead is not bounded")
}
