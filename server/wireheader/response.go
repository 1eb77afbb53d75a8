package wireheader

import (
	"bytes"
	"net/http"
	"sync"
	"sync/atomic"
)

// SetResponseHeaders makes the header section of the response to r start
// with hs, exactly: in this order, with these names' case and with repeats,
// right after the status line and before the fields of w.Header(), which
// net/http writes sorted by name, in the case they have in the map. It is
// how a relayed answer keeps the app's header order and case.
//
// It must be called from r's handler before anything of the response is
// written (an interim 100 Continue may come first), with names that are
// tokens and values free of control characters but tab. It reports false
// when r did not come through a NewListener connection; the caller then
// sets the fields in w.Header() instead. Fields that net/http would also
// write must be kept out of w.Header() (set Date and Content-Type to nil
// to stop net/http from adding its own).
func SetResponseHeaders(r *http.Request, hs []Header) bool {
	c := connOf(r)
	if c == nil {
		return false
	}
	var b []byte
	for _, h := range hs {
		b = append(b, h.Name...)
		b = append(b, ": "...)
		b = append(b, h.Value...)
		b = append(b, "\r\n"...)
	}
	c.out.set(b)
	return true
}

// maxEditedHead bounds the response head held back while looking for its
// end; net/http writes a head through a 4 KiB buffer, so a longer one
// means a handler put many fields in w.Header() too, and it goes out
// unedited.
const maxEditedHead = 64 << 10

// responseEditor inserts header lines into the next response head written
// on a connection. net/http writes one response at a time on a connection,
// from the goroutine serving it, so the head that follows set is the
// response of the request that called it.
type responseEditor struct {
	pending atomic.Bool // lines wait for the next final response head

	mu    sync.Mutex // guards the rest, and keeps writes in order
	lines []byte     // the header lines to insert
	held  []byte     // the head's bytes written so far, not yet sent
}

func (e *responseEditor) set(lines []byte) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.lines, e.held = lines, nil
	e.pending.Store(true)
}

func (e *responseEditor) active() bool { return e.pending.Load() }

// reset drops lines that were never used (their response was not written
// through this connection, for example after a hijack).
func (e *responseEditor) reset() {
	if !e.pending.Load() {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.lines, e.held = nil, nil
	e.pending.Store(false)
}

// Write passes p on, inserting the pending lines after the status line of
// the next final (non-1xx) response head.
func (c *conn) Write(p []byte) (int, error) {
	if !c.out.pending.Load() {
		return c.Conn.Write(p)
	}
	e := &c.out
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.pending.Load() {
		return c.Conn.Write(p)
	}
	e.held = append(e.held, p...)
	for {
		end := bytes.Index(e.held, []byte("\r\n\r\n"))
		if end < 0 {
			if len(e.held) > maxEditedHead {
				return e.flushUnedited(c, len(p))
			}
			return len(p), nil // the head goes out once it is whole
		}
		end += 4
		line := bytes.IndexByte(e.held, '\n') + 1
		if isInterim(e.held[:line]) {
			// A 100 Continue (or another 1xx): send it, keep waiting for
			// the final head.
			if _, err := c.Conn.Write(e.held[:end]); err != nil {
				e.held = nil
				return 0, err
			}
			e.held = e.held[end:]
			continue
		}
		out := make([]byte, 0, len(e.held)+len(e.lines))
		out = append(out, e.held[:line]...)
		out = append(out, e.lines...)
		out = append(out, e.held[line:]...)
		e.lines, e.held = nil, nil
		e.pending.Store(false)
		if _, err := c.Conn.Write(out); err != nil {
			return 0, err
		}
		return len(p), nil
	}
}

// flushUnedited gives up on a head that does not end: its bytes go out as
// written.
func (e *responseEditor) flushUnedited(c *conn, n int) (int, error) {
	held := e.held
	e.lines, e.held = nil, nil
	e.pending.Store(false)
	if _, err := c.Conn.Write(held); err != nil {
		return 0, err
	}
	return n, nil
}

// isInterim reports whether a status line is of an interim response: 1xx
// but 101, after which the connection is no longer HTTP.
func isInterim(statusLine []byte) bool {
	// "HTTP/1.1 100 Continue\r\n"
	sp := bytes.IndexByte(statusLine, ' ')
	if sp < 0 || len(statusLine) < sp+4 {
		return false
	}
	code := statusLine[sp+1 : sp+4]
	return code[0] == '1' && string(code) != "101"
}
