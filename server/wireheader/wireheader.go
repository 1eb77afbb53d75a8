package wireheader

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"slices"
)

// Header is one header line as sent: the name in its original case and the
// value without the optional whitespace around it (as net/http stores it).
type Header struct{ Name, Value string }

// NewListener wraps inner so that each accepted connection records the raw
// header block of every request net/http reads from it. Serve an http.Server
// on the result and set its ConnContext to ConnContext.
//
// maxHeaderBytes bounds one recorded header block (request line and header
// lines); pass the server's MaxHeaderBytes. Zero or less means
// http.DefaultMaxHeaderBytes. A larger block stops recording on that
// connection; its requests are still served (net/http itself allows 4096
// bytes of slack over its MaxHeaderBytes) and fall back to r.Header.
//
// inner must yield plaintext connections: for HTTPS wrap tls.NewListener's
// result (see the package documentation for what that changes).
func NewListener(inner net.Listener, maxHeaderBytes int) net.Listener {
	if maxHeaderBytes <= 0 {
		maxHeaderBytes = http.DefaultMaxHeaderBytes
	}
	return &listener{Listener: inner, maxHeaderBytes: maxHeaderBytes}
}

type listener struct {
	net.Listener
	maxHeaderBytes int
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &conn{Conn: c, rec: newRecorder(l.maxHeaderBytes)}, nil
}

// conn feeds every byte read from it to its recorder, and writes response
// heads with the header lines a handler set (SetResponseHeaders).
type conn struct {
	net.Conn
	rec *recorder
	out responseEditor
}

func (c *conn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.rec.feed(p[:n])
	}
	return n, err
}

// NetConn returns the wrapped connection, like tls.Conn's NetConn.
func (c *conn) NetConn() net.Conn { return c.Conn }

// CloseWrite half-closes the wrapped connection when it supports that, as
// net/http does to a *net.TCPConn before closing after an error reply.
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// ReadFrom keeps net/http's sendfile and splice path of a wrapped
// *net.TCPConn.
func (c *conn) ReadFrom(src io.Reader) (int64, error) {
	if c.out.active() {
		return io.Copy(struct{ io.Writer }{c}, src) // through Write, which edits the head
	}
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(src)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, src)
}

type connKey struct{}

// ConnContext must be set as http.Server.ConnContext: it stores the
// connection in the context every request on it inherits. For a connection
// not accepted by a NewListener listener it returns ctx unchanged. To
// combine it with another ConnContext hook, call it from that hook.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	wc, ok := c.(*conn)
	if !ok {
		return ctx
	}
	return context.WithValue(ctx, connKey{}, wc)
}

func connOf(r *http.Request) *conn {
	c, _ := r.Context().Value(connKey{}).(*conn)
	return c
}

// Headers returns r's header lines in wire order with original case, Host and
// framing fields included, or ok=false when they could not be recovered; the
// caller then falls back to r.Header.
//
// It must be called exactly once per request, from the request's handler
// (before or after reading the body) and before anything modifies r.Header,
// r.Method or r.RequestURI. The returned strings share one allocation with the
// recorded block.
func Headers(r *http.Request) (hs []Header, ok bool) {
	c := connOf(r)
	if c == nil {
		return nil, false
	}
	c.out.reset() // a previous request's response head is written
	rec := c.rec
	block, ok := rec.pop()
	if !ok {
		return nil, false
	}
	head, ok := parseHead(block)
	if !ok || !head.matches(r) {
		rec.setUnusable()
		return nil, false
	}
	if head.folded {
		// A folded field has no single line to forward (RFC 9112 section
		// 5.2 lets a recipient unfold it); this one request falls back to
		// r.Header, which holds the unfolded value.
		return nil, false
	}
	return head.fields, true
}

// matches reports whether h is the block net/http parsed into r: same method
// and request-URI, and r.Header exactly what net/http makes of h's fields.
//
// It compares without building the expected header: the n-th of the fields
// sharing a name must equal the n-th value of that canonical name in r.Header,
// which must hold as many values as there are such fields, and r.Header must
// have no other names.
func (h *requestHead) matches(r *http.Request) bool {
	if h.method != r.Method || h.requestURI != r.RequestURI {
		return false
	}
	// What net/http's readRequest and readTransfer change: Transfer-Encoding
	// is removed (chunked on HTTP/1.1 also removes Content-Length and
	// Trailer), repeated equal Content-Length fields become one, a first
	// Pragma of "no-cache" adds Cache-Control when there is none, and the
	// server removes Host.
	var chunked, pragmaNoCache, pragmaSeen, cacheControl bool
	contentLengths := 0
	for _, f := range h.fields {
		switch {
		case sameName(f.Name, "Content-Length"):
			contentLengths++
		case sameName(f.Name, "Transfer-Encoding"):
			chunked = h.protoMinor >= 1
		case sameName(f.Name, "Pragma") && !pragmaSeen:
			pragmaSeen = true
			pragmaNoCache = f.Value == "no-cache"
		case sameName(f.Name, "Cache-Control"):
			cacheControl = true
		}
	}
	names := 0 // distinct names expected in r.Header
	var buf [64]byte
	for i, f := range h.fields {
		value := f.Value
		var n, total int // f is the n-th of total fields with its name
		switch {
		case sameName(f.Name, "Host"), sameName(f.Name, "Transfer-Encoding"):
			continue
		case sameName(f.Name, "Trailer") && chunked:
			continue
		case sameName(f.Name, "Content-Length"):
			if chunked || slices.ContainsFunc(h.fields[:i], isContentLength) {
				continue // removed, or deduplicated to the first
			}
			if contentLengths > 1 {
				value = textproto.TrimString(value)
			}
			total = 1
		default:
			for j, g := range h.fields {
				if sameName(g.Name, f.Name) {
					if j < i {
						n++
					}
					total++
				}
			}
		}
		vs := r.Header[string(appendCanonicalKey(buf[:0], f.Name))]
		if len(vs) != total || vs[n] != value {
			return false
		}
		if n == 0 {
			names++
		}
	}
	if pragmaNoCache && !cacheControl {
		if cc := r.Header["Cache-Control"]; len(cc) != 1 || cc[0] != "no-cache" {
			return false
		}
		names++
	}
	return names == len(r.Header)
}

func isContentLength(f Header) bool { return sameName(f.Name, "Content-Length") }
