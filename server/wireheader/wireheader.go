package wireheader

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/textproto"
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
// connection; its requests are still served and fall back to r.Header.
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

// conn feeds every byte read from it to its recorder.
type conn struct {
	net.Conn
	rec *recorder
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
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(src)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, src)
}

type recorderKey struct{}

// ConnContext must be set as http.Server.ConnContext: it stores the
// connection's recorder in the context every request on it inherits. For a
// connection not accepted by a NewListener listener it returns ctx unchanged.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	wc, ok := c.(*conn)
	if !ok {
		return ctx
	}
	return context.WithValue(ctx, recorderKey{}, wc.rec)
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
	rec, _ := r.Context().Value(recorderKey{}).(*recorder)
	if rec == nil {
		return nil, false
	}
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
		// textproto joined the folded lines; which separator the sender
		// used is lost, so this one request falls back.
		return nil, false
	}
	return head.fields, true
}

// matches reports whether h is the block net/http parsed into r: same method
// and request-URI, and r.Header exactly what net/http makes of h's fields.
//
// Every counted field is mapped to one slot of r.Header, the n-th value of its
// canonical name when n earlier fields have that name, and must equal it; and
// r.Header must hold no value beyond those slots. That is r.Header's equality
// with the expected header, without building it.
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
	slots := 0
	contentLength := false
	var buf [64]byte
	for i, f := range h.fields {
		value := f.Value
		switch {
		case sameName(f.Name, "Host"), sameName(f.Name, "Transfer-Encoding"):
			continue
		case sameName(f.Name, "Trailer") && chunked:
			continue
		case sameName(f.Name, "Content-Length"):
			if chunked || contentLength {
				continue
			}
			contentLength = true
			if contentLengths > 1 {
				value = textproto.TrimString(value)
			}
		}
		n := 0
		for _, g := range h.fields[:i] {
			if sameName(g.Name, f.Name) {
				n++
			}
		}
		vs := r.Header[string(appendCanonicalKey(buf[:0], f.Name))]
		if n >= len(vs) || vs[n] != value {
			return false
		}
		slots++
	}
	if pragmaNoCache && !cacheControl {
		if cc := r.Header["Cache-Control"]; len(cc) != 1 || cc[0] != "no-cache" {
			return false
		}
		slots++
	}
	for _, vs := range r.Header {
		slots -= len(vs)
	}
	return slots == 0
}
