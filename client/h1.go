package client

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hookrelay/hookrelay/protocol"
)

// Why not net/http's Transport: it writes header names in sorted order
// (and Host, User-Agent and Content-Length first), while the product
// promises the sender's order. This client writes the request head itself,
// in the event's order, and leaves parsing the response to net/http.

const (
	// h1IdleTimeout bounds how long a connection waits in the pool. It is
	// below the keep-alive timeouts of common app servers (Node's 5 s), so
	// the agent rarely reuses a connection the app is closing.
	h1IdleTimeout = 4 * time.Second
	// maxInterim bounds the 1xx responses read before the final one.
	maxInterim = 8
	// maxResponseHead bounds one response head (status line and header
	// lines): what the relay passes on is held to a request's 64 KiB, and
	// reading stops there rather than buffering whatever an app sends.
	maxResponseHead = 64<<10 + 4<<10
	// connReadBuffer is a connection's read buffer; a head larger than it
	// (and within maxResponseHead) grows it for that connection.
	connReadBuffer = 16 << 10
)

// errHeadTooLarge is a response head over maxResponseHead.
var errHeadTooLarge = fmt.Errorf("the app's response header section is larger than %d bytes", maxResponseHead)

// aLongTimeAgo is a deadline in the past: it wakes a blocked read or write.
var aLongTimeAgo = time.Unix(1, 0)

// h1Request is a request as it goes on the wire.
type h1Request struct {
	method        string
	target        string            // the request target: escaped path and query
	header        []protocol.Header // every header line, in order, Host included
	body          io.Reader         // contentLength bytes
	contentLength int64
}

// h1Client sends HTTP/1.1 requests to one host over a small pool of
// keep-alive connections. Its goroutines are a writer inside roundTrip and
// a watcher per idle connection, which closeIdle ends.
type h1Client struct {
	addr    string      // host:port to dial
	tls     *tls.Config // nil for http
	maxIdle int

	mu   sync.Mutex // guards idle
	idle []*h1Conn  // the most recently used last
}

type h1Conn struct {
	conn net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
	sent atomic.Int64 // bytes of the current request the connection took

	// While the connection is idle in the pool, a watcher reads from it:
	// an app that closes an idle connection is noticed before the
	// connection is used again.
	idleSince time.Time
	watchDone chan struct{} // closed when the watcher has returned
	broken    atomic.Bool   // the watcher saw the end of the connection, or bytes
}

func newH1Client(target *url.URL, tlsConfig *tls.Config, maxIdle int) *h1Client {
	port := target.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[target.Scheme]
	}
	c := &h1Client{addr: net.JoinHostPort(target.Hostname(), port), maxIdle: maxIdle}
	if target.Scheme == "https" {
		c.tls = tlsConfig.Clone()
		if c.tls == nil {
			c.tls = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		if c.tls.ServerName == "" {
			c.tls.ServerName = target.Hostname()
		}
		c.tls.NextProtos = []string{"http/1.1"}
	}
	return c
}

// roundTrip sends req and reads the whole response, whose body may hold at
// most maxBody bytes. ctx bounds everything, dialing included. When a
// reused connection turns out to be closed before it took a single byte of
// the request, the request is sent once more on a new one. Once any byte
// went out the app may have seen the request, so it is never sent again
// here: the relay's next attempt carries the next attempt number, which
// the app can tell from a duplicate.
func (c *h1Client) roundTrip(ctx context.Context, req *h1Request, maxBody int64) (*Response, error) {
	body := &countingReader{r: req.body}
	req.body = body
	for tries := 0; ; tries++ {
		pc, reused, err := c.getConn(ctx)
		if err != nil {
			return nil, err
		}
		resp, err := c.exchange(ctx, pc, req, maxBody)
		var stale errNoAnswer
		if err != nil && reused && tries == 0 && errors.As(err, &stale) && pc.sent.Load() == 0 && body.rewind() {
			continue
		}
		return resp, err
	}
}

// errNoAnswer is a connection that ended before the first byte of an
// answer: the app may never have seen the request.
type errNoAnswer struct{ err error }

func (e errNoAnswer) Error() string {
	return "the target closed the connection without an answer: " + e.err.Error()
}
func (e errNoAnswer) Unwrap() error { return e.err }

// exchange runs one request on pc and puts pc back in the pool when it can
// carry another.
func (c *h1Client) exchange(ctx context.Context, pc *h1Conn, req *h1Request, maxBody int64) (*Response, error) {
	reusable := false
	defer func() {
		if reusable {
			c.putConn(pc)
		} else {
			pc.conn.Close()
		}
	}()
	deadline, _ := ctx.Deadline() // zero: none
	_ = pc.conn.SetDeadline(deadline)
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		_ = pc.conn.SetDeadline(aLongTimeAgo)
		close(fired)
	})
	defer func() {
		if !stop() {
			<-fired // the deadline is poisoned; the connection is not reused
			reusable = false
		}
	}()

	// The request is written while the answer is read: an app may answer
	// before it has read the body, and then stop reading.
	pc.sent.Store(0)
	written := make(chan error, 1)
	go func() { written <- writeRequest(pc.bw, req) }()
	stopWriter := func() error {
		_ = pc.conn.SetWriteDeadline(aLongTimeAgo)
		return <-written
	}

	resp, lines, err := pc.readResponse(req.method)
	if err != nil {
		select {
		case werr := <-written: // the writer ended by itself: its error may say more
			if werr != nil && !isConnClosed(werr) {
				return nil, fmt.Errorf("send request: %w", werr)
			}
		default:
			stopWriter() // its error is the deadline set to stop it
		}
		return nil, err
	}
	if resp.ContentLength > maxBody {
		stopWriter()
		return nil, tooLarge(maxBody)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		stopWriter()
		return nil, fmt.Errorf("read response body: %w", err)
	}
	if int64(len(data)) > maxBody {
		stopWriter()
		return nil, tooLarge(maxBody)
	}
	// The writer has usually ended. If not, the app answered before it read
	// the whole body: stop the writer. A nil error then says the request
	// went out whole after all, and the connection can carry another.
	var werr error
	select {
	case werr = <-written:
	default:
		werr = stopWriter()
	}
	reusable = werr == nil && !resp.Close && resp.StatusCode != http.StatusSwitchingProtocols
	if reusable {
		_ = pc.conn.SetDeadline(time.Time{})
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, HeaderLines: lines, Body: data}, nil
}

// writeRequest writes the head in the given order and then the body.
func writeRequest(bw *bufio.Writer, req *h1Request) error {
	bw.WriteString(req.method)
	bw.WriteByte(' ')
	bw.WriteString(req.target)
	bw.WriteString(" HTTP/1.1\r\n")
	for _, h := range req.header {
		bw.WriteString(h.Name)
		bw.WriteString(": ")
		bw.WriteString(h.Value)
		bw.WriteString("\r\n")
	}
	bw.WriteString("\r\n")
	if req.contentLength > 0 {
		n, err := io.CopyN(bw, req.body, req.contentLength)
		if err != nil {
			return fmt.Errorf("body: %d of %d bytes: %w", n, req.contentLength, err)
		}
	}
	return bw.Flush()
}

// readResponse reads the final response's head, skipping 1xx responses,
// and returns it with its header lines as the app wrote them (order, case
// and repeats), which net/http's parsed Header loses.
func (pc *h1Conn) readResponse(method string) (*http.Response, []protocol.Header, error) {
	if _, err := pc.br.Peek(1); err != nil {
		if isTimeout(err) { // the app may be at work: never send it twice
			return nil, nil, fmt.Errorf("read response: %w", err)
		}
		return nil, nil, errNoAnswer{err}
	}
	for range maxInterim {
		head, err := pc.peekHead()
		if err != nil {
			return nil, nil, fmt.Errorf("read response: %w", err)
		}
		lines := headerLines(head)
		resp, err := http.ReadResponse(pc.br, &http.Request{Method: method})
		if err != nil {
			return nil, nil, fmt.Errorf("read response: %w", err)
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			if !sameHeader(lines, resp.Header) {
				lines = nil // parsed differently from net/http: use its Header
			}
			return resp, lines, nil
		}
	}
	return nil, nil, fmt.Errorf("read response: more than %d interim (1xx) responses", maxInterim)
}

// peekHead returns the next response head, up to and including the empty
// line that ends it, without consuming it. A head over maxResponseHead is
// an error; one larger than the read buffer grows the buffer.
func (pc *h1Conn) peekHead() (string, error) {
	for want := 1; ; {
		_, err := pc.br.Peek(want) // waits for want bytes, reading what the connection has
		buf, _ := pc.br.Peek(pc.br.Buffered())
		if end := headEnd(buf); end >= 0 {
			return string(buf[:end]), nil
		}
		switch {
		case len(buf) >= maxResponseHead:
			return "", errHeadTooLarge
		case errors.Is(err, bufio.ErrBufferFull):
			pc.br = bufio.NewReaderSize(pc.br, maxResponseHead) // reads what the old one holds first
		case err != nil:
			return "", err
		}
		want = len(buf) + 1
	}
}

// headEnd returns the length of the head at the start of b (through its
// empty line, which net/textproto lets end in LF alone), or -1.
func headEnd(b []byte) int {
	for i := 0; ; {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return -1
		}
		i += j + 1
		if i < len(b) && b[i] == '\n' {
			return i + 1
		}
		if i+1 < len(b) && b[i] == '\r' && b[i+1] == '\n' {
			return i + 2
		}
	}
}

// headerLines lists the header fields of a head as written, with values
// trimmed and folded lines joined as net/textproto does.
func headerLines(head string) []protocol.Header {
	var out []protocol.Header
	lines := strings.Split(head, "\n")
	for _, line := range lines[1:] { // after the status line
		line = strings.TrimSuffix(line, "\r")
		if line == "" {
			break
		}
		if (line[0] == ' ' || line[0] == '\t') && len(out) > 0 {
			last := &out[len(out)-1]
			last.Value = strings.TrimSpace(last.Value + " " + strings.Trim(line, " \t"))
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			return nil
		}
		out = append(out, protocol.Header{Name: name, Value: strings.Trim(value, " \t")})
	}
	return out
}

// sameHeader reports whether lines hold exactly the fields of h: for every
// name, the same values in the same order.
func sameHeader(lines []protocol.Header, h http.Header) bool {
	seen := make(map[string]int, len(h))
	for _, l := range lines {
		key := http.CanonicalHeaderKey(l.Name)
		vs, n := h[key], seen[key]
		if n >= len(vs) || vs[n] != l.Value {
			return false
		}
		seen[key] = n + 1
	}
	for key, vs := range h {
		if seen[key] != len(vs) {
			return false
		}
	}
	return true
}

// getConn returns an idle connection that is still open, or dials one.
func (c *h1Client) getConn(ctx context.Context) (*h1Conn, bool, error) {
	for {
		c.mu.Lock()
		var pc *h1Conn
		if n := len(c.idle); n > 0 {
			pc = c.idle[n-1]
			c.idle = c.idle[:n-1]
		}
		c.mu.Unlock()
		if pc == nil {
			break
		}
		if pc.stopWatch() && time.Since(pc.idleSince) < h1IdleTimeout {
			return pc, true, nil
		}
		pc.conn.Close()
	}
	pc, err := c.dial(ctx)
	return pc, false, err
}

// watch waits, while the connection is idle, for the app to close it (or,
// wrongly, to send something); stopWatch ends the wait.
func (pc *h1Conn) watch() {
	defer close(pc.watchDone)
	if _, err := pc.br.Peek(1); !isTimeout(err) {
		pc.broken.Store(true)
	}
}

// stopWatch ends the watcher and reports whether the connection can carry
// another request.
func (pc *h1Conn) stopWatch() bool {
	_ = pc.conn.SetReadDeadline(aLongTimeAgo)
	<-pc.watchDone
	_ = pc.conn.SetReadDeadline(time.Time{})
	return !pc.broken.Load()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (c *h1Client) dial(ctx context.Context) (*h1Conn, error) {
	d := net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", c.addr)
	if err != nil {
		return nil, err
	}
	if c.tls != nil {
		tc := tls.Client(conn, c.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, fmt.Errorf("TLS handshake with %s: %w", c.addr, err)
		}
		conn = tc
	}
	pc := &h1Conn{conn: conn, br: bufio.NewReaderSize(conn, connReadBuffer)}
	pc.bw = bufio.NewWriterSize(sentCounter{pc}, 32<<10)
	return pc, nil
}

// sentCounter writes to a connection, counting the bytes it took.
type sentCounter struct{ pc *h1Conn }

func (w sentCounter) Write(p []byte) (int, error) {
	n, err := w.pc.conn.Write(p)
	w.pc.sent.Add(int64(n))
	return n, err
}

// warm dials a connection and leaves it in the pool: a check that the
// target accepts connections (and TLS), whose connection the next request
// uses.
func (c *h1Client) warm(ctx context.Context) error {
	pc, err := c.dial(ctx)
	if err != nil {
		return err
	}
	c.putConn(pc)
	return nil
}

func (c *h1Client) putConn(pc *h1Conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.idle) >= c.maxIdle {
		pc.conn.Close()
		return
	}
	pc.idleSince = time.Now()
	pc.watchDone = make(chan struct{})
	pc.broken.Store(false)
	go pc.watch()
	c.idle = append(c.idle, pc)
}

// closeIdle closes the pooled connections and waits for their watchers.
func (c *h1Client) closeIdle() {
	c.mu.Lock()
	idle := c.idle
	c.idle = nil
	c.mu.Unlock()
	for _, pc := range idle {
		pc.conn.Close()
		<-pc.watchDone
	}
}

// countingReader counts the bytes read, so that a request whose body was
// not touched yet can be sent again.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// rewind makes the body readable from its start again, if it can.
func (c *countingReader) rewind() bool {
	if c.n == 0 {
		return true
	}
	if s, ok := c.r.(io.Seeker); ok {
		if _, err := s.Seek(0, io.SeekStart); err == nil {
			c.n = 0
			return true
		}
	}
	return false
}

// isConnClosed reports errors that only say the app closed the connection.
func isConnClosed(err error) bool {
	return errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF)
}
