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
// and request-URI, and r.Header equal to what net/http makes of h's fields.
func (h *requestHead) matches(r *http.Request) bool {
	if h.method != r.Method || h.requestURI != r.RequestURI {
		return false
	}
	want := make(http.Header, len(h.fields))
	for _, f := range h.fields {
		k := textproto.CanonicalMIMEHeaderKey(f.Name)
		want[k] = append(want[k], f.Value)
	}
	// What net/http's readRequest and readTransfer change:
	if p := want["Pragma"]; len(p) > 0 && p[0] == "no-cache" {
		if _, ok := want["Cache-Control"]; !ok {
			want["Cache-Control"] = []string{"no-cache"}
		}
	}
	_, hasTE := want["Transfer-Encoding"]
	delete(want, "Transfer-Encoding")
	if chunked := hasTE && h.protoMinor >= 1; chunked {
		delete(want, "Content-Length")
		delete(want, "Trailer")
	} else if cl := want["Content-Length"]; len(cl) > 1 {
		want["Content-Length"] = []string{textproto.TrimString(cl[0])}
	}
	delete(want, "Host")

	if len(want) != len(r.Header) {
		return false
	}
	for k, vs := range want {
		if !slices.Equal(vs, r.Header[k]) {
			return false
		}
	}
	return true
}
