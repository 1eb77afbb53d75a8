package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hookrelay/hookrelay/protocol"
)

// maxResponseBody bounds the target's response body the agent sends back.
const maxResponseBody = 32 << 20

// Headers the agent adds to every forwarded request.
const (
	HeaderEventID = "Hookrelay-Event-Id"
	HeaderAttempt = "Hookrelay-Delivery-Attempt"
)

// hopByHop lists, in lower case, the headers that belong to one connection
// and are never forwarded (RFC 9110, section 7.6.1).
var hopByHop = map[string]bool{
	"connection":          true,
	"keep-alive":          true,
	"proxy-connection":    true,
	"proxy-authenticate":  true,
	"proxy-authorization": true,
	"te":                  true,
	"trailer":             true,
	"transfer-encoding":   true,
	"upgrade":             true,
}

// Response is the target's answer to a forwarded event.
type Response struct {
	Status   int
	Header   http.Header
	Body     []byte // at most 32 MiB
	Duration time.Duration
}

// TargetError says why the target gave no response. Code is one of the
// protocol.ErrCode* delivery error codes.
type TargetError struct {
	Code string
	Msg  string
	Err  error
}

func (e *TargetError) Error() string { return e.Msg }
func (e *TargetError) Unwrap() error { return e.Err }

// forwarder sends events to the one target the agent was started with. Live
// deliveries and Replay both go through forward, so they follow the same
// rules.
type forwarder struct {
	target       *url.URL
	preserveHost bool
	timeout      time.Duration
	client       *http.Client
	transport    *http.Transport
}

func newForwarder(target *url.URL, preserveHost bool, timeout time.Duration, conns int) *forwarder {
	// HTTP/1.1 only: HTTP/2 would send header names in lower case.
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	tr := &http.Transport{
		Proxy:                  nil, // the target is local; never send it through a proxy
		DialContext:            (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:           conns,
		MaxIdleConnsPerHost:    conns,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    10 * time.Second,
		DisableCompression:     true, // no Accept-Encoding the sender did not send, no decoding
		MaxResponseHeaderBytes: 1 << 20,
		Protocols:              &protocols,
	}
	return &forwarder{
		target:       target,
		preserveHost: preserveHost,
		timeout:      timeout,
		transport:    tr,
		client: &http.Client{
			Transport: tr,
			// The app's redirect goes back to the sender as it is.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
}

func (f *forwarder) closeIdle() { f.transport.CloseIdleConnections() }

// forward sends one event to the target and reads the whole response. body
// yields exactly in.BodyLength bytes. Failures are *TargetError.
func (f *forwarder) forward(ctx context.Context, in *protocol.DeliveryRequest, body io.Reader) (*Response, error) {
	reqCtx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	req, err := f.newRequest(reqCtx, in, body)
	if err != nil {
		return nil, &TargetError{Code: protocol.ErrCodeBadDelivery, Msg: err.Error(), Err: err}
	}
	start := time.Now()
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, f.classify(ctx, reqCtx, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody+1))
	if err != nil {
		return nil, f.classify(ctx, reqCtx, fmt.Errorf("read the response: %w", err))
	}
	if len(data) > maxResponseBody {
		return nil, &TargetError{Code: protocol.ErrCodeTooLarge,
			Msg: fmt.Sprintf("the target's response body is over %d MiB", maxResponseBody>>20)}
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: data, Duration: time.Since(start)}, nil
}

// newRequest builds the request to the target for an event.
func (f *forwarder) newRequest(ctx context.Context, in *protocol.DeliveryRequest, body io.Reader) (*http.Request, error) {
	u, err := joinURL(f.target, in.Path, in.RawQuery)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, in.Method, f.target.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("method %q: %w", in.Method, err)
	}
	req.URL = u
	req.Host = u.Host
	var senderHost string
	req.Header, senderHost = outgoingHeader(in.Headers, in.EventID, in.Attempt)
	if f.preserveHost && senderHost != "" {
		req.Host = senderHost
	}
	req.ContentLength = in.BodyLength
	switch rc, ok := body.(io.ReadCloser); {
	case in.BodyLength == 0:
		req.Body = http.NoBody // a non-nil body of length 0 would be sent chunked
	case ok:
		req.Body = rc
	default:
		req.Body = io.NopCloser(body)
	}
	return req, nil
}

// outgoingHeader copies the event's headers for the target: names as sent,
// repeats in order, without hop-by-hop headers, Content-Length (set from the
// body) and Host (returned). It adds the event id and attempt headers.
func outgoingHeader(in []protocol.Header, eventID string, attempt int) (h http.Header, host string) {
	drop := make(map[string]bool)
	for _, hd := range in {
		if strings.EqualFold(hd.Name, "Connection") {
			for name := range strings.SplitSeq(hd.Value, ",") {
				drop[strings.ToLower(strings.TrimSpace(name))] = true
			}
		}
	}
	h = make(http.Header, len(in)+3)
	// A nil User-Agent keeps Go from adding its own; a sender's exact
	// "User-Agent" replaces it below, and other spellings are written as
	// ordinary headers.
	h["User-Agent"] = nil
	hostSeen := false
	for _, hd := range in {
		name := strings.ToLower(hd.Name)
		switch {
		case name == "host":
			if !hostSeen {
				host, hostSeen = hd.Value, true
			}
			continue
		case hopByHop[name], drop[name], name == "content-length",
			name == "hookrelay-event-id", name == "hookrelay-delivery-attempt":
			continue
		case !validHeaderName(hd.Name) || !validHeaderValue(hd.Value):
			continue // Go's transport would refuse the whole request
		}
		h[hd.Name] = append(h[hd.Name], hd.Value)
	}
	h[HeaderEventID] = []string{eventID}
	h[HeaderAttempt] = []string{strconv.Itoa(attempt)}
	return h, host
}

// joinURL builds the URL of an event at the target: the target's scheme and
// host, the target's path joined with the cleaned sub-path, and the target's
// query followed by the event's. Nothing in the sub-path can change the host
// or climb above the target's path; percent-encoded bytes are kept as sent.
func joinURL(target *url.URL, subPath, rawQuery string) (*url.URL, error) {
	sub := cleanSubPath(subPath)
	escaped := target.EscapedPath()
	if sub != "/" {
		escaped = strings.TrimSuffix(escaped, "/") + sub
	} else if escaped == "" {
		escaped = "/"
	}
	unescaped, err := url.PathUnescape(escaped)
	if err != nil {
		return nil, fmt.Errorf("path %q: %w", subPath, err)
	}
	u := &url.URL{Scheme: target.Scheme, Host: target.Host, Path: unescaped, RawPath: escaped}
	rawQuery = escapeControls(rawQuery)
	switch {
	case target.RawQuery != "" && rawQuery != "":
		u.RawQuery = target.RawQuery + "&" + rawQuery
	case rawQuery != "":
		u.RawQuery = rawQuery
	default:
		u.RawQuery = target.RawQuery
	}
	return u, nil
}

// cleanSubPath resolves dot segments (also percent-encoded ones) and empty
// segments of an escaped sub-path, as if it were rooted: the result starts
// with "/" and never with "//". A trailing slash is kept.
func cleanSubPath(p string) string {
	segments := strings.Split(p, "/")
	for i, s := range segments {
		if strings.Contains(s, "%") {
			if u, err := url.PathUnescape(s); err == nil && (u == "." || u == "..") {
				segments[i] = u
			}
		}
	}
	cleaned := path.Clean("/" + strings.Join(segments, "/"))
	if cleaned != "/" && strings.HasSuffix(p, "/") {
		cleaned += "/"
	}
	return cleaned
}

// escapeControls percent-encodes bytes a request line cannot carry (space,
// controls, non-ASCII); a query received by a relay has none.
func escapeControls(s string) string {
	if !strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r >= 0x7f }) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f {
			fmt.Fprintf(&b, "%%%02X", c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// classify turns a failed request into a *TargetError. parent is the
// deliveries' context, reqCtx the request's own with the timeout.
func (f *forwarder) classify(parent, reqCtx context.Context, err error) *TargetError {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		msg := "connection refused"
		if op, ok := errors.AsType[*net.OpError](err); ok && op.Addr != nil {
			msg = fmt.Sprintf("connection refused: %s %s %s", op.Op, op.Net, op.Addr)
		}
		return &TargetError{Code: protocol.ErrCodeConnectionRefused, Msg: msg, Err: err}
	case parent.Err() != nil:
		return &TargetError{Code: protocol.ErrCodeAgentStopping, Msg: "the agent stopped before the target answered", Err: err}
	case errors.Is(reqCtx.Err(), context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return &TargetError{Code: protocol.ErrCodeTimeout,
			Msg: fmt.Sprintf("timeout: the target did not answer within %s", f.timeout), Err: err}
	}
	return &TargetError{Code: protocol.ErrCodeTarget, Msg: err.Error(), Err: err}
}

// responseHeaders lists the target's response headers for the relay, names
// in sorted order (Go's client keeps no order), repeats kept, without
// hop-by-hop headers and without Content-Length, which BodyLength carries,
// except for HEAD, where there is no body to carry it.
func responseHeaders(h http.Header, method string) []protocol.Header {
	drop := make(map[string]bool)
	for _, v := range h.Values("Connection") {
		for name := range strings.SplitSeq(v, ",") {
			drop[strings.ToLower(strings.TrimSpace(name))] = true
		}
	}
	out := make([]protocol.Header, 0, len(h))
	for _, name := range slices.Sorted(maps.Keys(h)) {
		lower := strings.ToLower(name)
		if hopByHop[lower] || drop[lower] || (lower == "content-length" && method != http.MethodHead) {
			continue
		}
		for _, v := range h[name] {
			if validHeaderName(name) && validHeaderValue(v) {
				out = append(out, protocol.Header{Name: name, Value: v})
			}
		}
	}
	return out
}

// validHeaderName reports whether name is an RFC 9110 token.
func validHeaderName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// validHeaderValue reports whether v holds no control bytes but tab.
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}
