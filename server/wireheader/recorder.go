package wireheader

import (
	"bytes"
	"sync"
	"sync/atomic"
)

const (
	// maxChunkLine bounds a chunk-size line including its CRLF; net/http
	// reads it within one 4 KiB bufio buffer.
	maxChunkLine = 4096
	// maxTrailer bounds the trailer section of a chunked body; net/http
	// requires its end within one 4 KiB bufio buffer.
	maxTrailer = 4096
	// queueSlack is what the queue may hold beyond one maximal header
	// block: net/http reads at most 4 KiB (plus one byte) ahead of the
	// request it is serving, so with Headers called for every request the
	// queue holds the current block and the few that fit in that read-ahead.
	queueSlack = 32 << 10
	// entryOverhead is charged per queued block on top of its length, so
	// that many tiny blocks also exhaust the budget.
	entryOverhead = 64
	// keepBuffer is the largest block buffer kept between requests.
	keepBuffer = 4 << 10
)

// state is where the recorder is in a connection's byte stream.
type state uint8

const (
	stateHeader    state = iota // collecting a header block
	stateBody                   // skipping a body of known length
	stateChunkLine              // collecting a chunk-size line
	stateChunkData              // skipping chunk data
	stateChunkEnd               // expecting the CRLF after chunk data
	stateTrailer                // skipping trailer lines up to an empty line
	stateStopped                // not recording any more
)

// recorder follows the bytes net/http reads from one connection and queues the
// header block of every request in it. It is written by the connection's Read
// (net/http's reading goroutine, which reads ahead while a handler runs) and
// read by the handler goroutine through pop.
type recorder struct {
	// stopped is set with state = stateStopped and lets Read skip the lock
	// once recording has ended, for example on a hijacked WebSocket.
	stopped atomic.Bool

	maxHeaderBytes int // bound on one header block
	budget         int // bound on queued bytes (with entryOverhead each)

	mu sync.Mutex
	// Guarded by mu:
	state     state
	block     []byte   // stateHeader: the header block so far
	lineStart int      // stateHeader: offset in block of the current line
	skipCRLF  int      // stateHeader: stray CR/LF bytes still to skip before the block
	afterPost bool     // the last block was a POST (net/http's skip of stray CR/LF)
	remaining uint64   // stateBody, stateChunkData: bytes left; stateChunkEnd: bytes of CRLF seen
	line      []byte   // stateChunkLine: the chunk-size line so far
	excess    int64    // chunk overhead, counted as net/http counts it
	trailer   int      // stateTrailer: bytes of trailer section so far
	lineLen   int      // stateTrailer: length of the current line so far
	lineCR    bool     // stateTrailer: the current line starts with CR
	queue     []string // complete header blocks, oldest first
	queued    int      // bytes charged for queue
	unusable  bool     // a Headers call found a mismatch; always fall back
}

func newRecorder(maxHeaderBytes int) *recorder {
	return &recorder{
		maxHeaderBytes: maxHeaderBytes,
		budget:         maxHeaderBytes + queueSlack,
	}
}

// feed advances the recorder over p, the next bytes read from the connection.
func (r *recorder) feed(p []byte) {
	if r.stopped.Load() {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for len(p) > 0 {
		switch r.state {
		case stateHeader:
			p = r.feedHeader(p)
		case stateBody, stateChunkData:
			n := min(uint64(len(p)), r.remaining)
			p = p[n:]
			r.remaining -= n
			if r.remaining > 0 {
				break
			}
			if r.state == stateBody {
				r.startHeader()
			} else {
				r.state = stateChunkEnd
			}
		case stateChunkEnd:
			// net/http reads exactly two bytes here and wants CRLF.
			if p[0] != "\r\n"[r.remaining] {
				r.stop()
				return
			}
			p = p[1:]
			r.remaining++
			if r.remaining == 2 {
				r.state = stateChunkLine
			}
		case stateChunkLine:
			p = r.feedChunkLine(p)
		case stateTrailer:
			p = r.feedTrailer(p)
		case stateStopped:
			return
		}
	}
}

// feedHeader collects header block bytes and returns the rest of p once the
// block is complete.
func (r *recorder) feedHeader(p []byte) []byte {
	// After a POST, net/http peeks at the next 4 bytes and discards the
	// leading CR and LF among them (RFC 9112 section 2.2 tolerance).
	for r.skipCRLF > 0 && len(p) > 0 {
		if p[0] != '\r' && p[0] != '\n' {
			r.skipCRLF = 0
			break
		}
		p = p[1:]
		r.skipCRLF--
	}
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		n := len(p)
		if i >= 0 {
			n = i + 1
		}
		if len(r.block)+n > r.maxHeaderBytes {
			r.stop()
			return nil
		}
		r.block = append(r.block, p[:n]...)
		p = p[n:]
		if i < 0 {
			break
		}
		line := r.block[r.lineStart : len(r.block)-1]
		if len(line) == 0 || len(line) == 1 && line[0] == '\r' {
			if r.lineStart == 0 {
				// Empty request line: net/http answers 400 and closes.
				r.stop()
				return nil
			}
			r.endHeader()
			return p
		}
		r.lineStart = len(r.block)
	}
	return p
}

// endHeader queues the complete block and sets up skipping its body.
func (r *recorder) endHeader() {
	block := string(r.block)
	fr, ok := parseFraming(block)
	if !ok {
		r.stop()
		return
	}
	cost := len(block) + entryOverhead
	if r.queued+cost > r.budget {
		// Handlers are not draining the queue, or a client pipelines far
		// ahead: stop rather than grow. Queued blocks stay valid.
		r.stop()
		return
	}
	r.queue = append(r.queue, block)
	r.queued += cost
	if fr.final {
		r.stop()
		return
	}
	r.afterPost = fr.post
	switch {
	case fr.chunked:
		r.state = stateChunkLine
		r.excess = 0
		r.line = r.line[:0]
	case fr.length > 0:
		r.state = stateBody
		r.remaining = uint64(fr.length)
	default:
		r.startHeader()
	}
}

// startHeader starts collecting the next request's header block.
func (r *recorder) startHeader() {
	r.state = stateHeader
	if cap(r.block) > keepBuffer {
		r.block = nil
	}
	r.block = r.block[:0]
	r.lineStart = 0
	r.skipCRLF = 0
	if r.afterPost {
		r.skipCRLF = 4
	}
}

// feedChunkLine collects a chunk-size line and returns the rest of p once it
// is complete.
func (r *recorder) feedChunkLine(p []byte) []byte {
	i := bytes.IndexByte(p, '\n')
	n := len(p)
	if i >= 0 {
		n = i + 1
	}
	if len(r.line)+n > maxChunkLine {
		r.stop()
		return nil
	}
	r.line = append(r.line, p[:n]...)
	if i < 0 {
		return nil
	}
	size, ok := parseChunkLine(r.line, &r.excess)
	r.line = r.line[:0]
	if !ok {
		r.stop()
		return nil
	}
	if size == 0 {
		r.state = stateTrailer
		r.trailer, r.lineLen, r.lineCR = 0, 0, false
	} else {
		r.state = stateChunkData
		r.remaining = size
	}
	return p[n:]
}

// feedTrailer skips trailer lines up to the empty line that ends the chunked
// body and returns the rest of p after it.
func (r *recorder) feedTrailer(p []byte) []byte {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		seg := p
		if i >= 0 {
			seg = p[:i]
		}
		if r.lineLen == 0 && len(seg) > 0 {
			r.lineCR = seg[0] == '\r'
		}
		r.lineLen += len(seg)
		r.trailer += len(seg)
		if i < 0 {
			p = nil
		} else {
			r.trailer++
			p = p[i+1:]
		}
		if r.trailer > maxTrailer {
			r.stop()
			return nil
		}
		if i < 0 {
			break
		}
		if r.lineLen == 0 || r.lineLen == 1 && r.lineCR {
			r.startHeader()
			return p
		}
		r.lineLen = 0
	}
	return p
}

// stop ends recording on this connection for good. Queued blocks stay: they
// describe the requests net/http has yet to hand to handlers, in order.
func (r *recorder) stop() {
	r.state = stateStopped
	r.stopped.Store(true)
	r.block, r.line = nil, nil
}

// pop removes and returns the oldest queued block. ok is false when there is
// none or the recorder is unusable; an empty queue when a handler asks means
// the recorder stopped or lost track, so it also becomes unusable.
func (r *recorder) pop() (block string, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.unusable {
		return "", false
	}
	if len(r.queue) == 0 {
		r.setUnusableLocked()
		return "", false
	}
	block = r.queue[0]
	r.queue[0] = ""
	r.queue = r.queue[1:]
	r.queued -= len(block) + entryOverhead
	return block, true
}

// setUnusable makes every later pop fail and stops recording.
func (r *recorder) setUnusable() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.setUnusableLocked()
}

func (r *recorder) setUnusableLocked() {
	r.unusable = true
	r.queue, r.queued = nil, 0
	r.stop()
}
