package client

import (
	"context"
	"crypto/tls"
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

// maxResponseBody bounds the target's response body the agent sends back
// when the relay announced no limit (welcome.limits.max_body).
const maxResponseBody = 32 << 20

// Headers the agent adds to every forwarded request.
const (
	HeaderEventID = "Hookrelay-Event-Id"
	HeaderAttempt = "Hookrelay-Delivery-Attempt"
	// HeaderRepeatOf names the event a delivery repeats: its commit failed
	// after the app may have had it, and the sender sent it again. Added
	// only when the relay says so.
	HeaderRepeatOf = "Hookrelay-Repeat-Of"
)

// Response is the target's answer to a forwarded event.
type Response struct {
	Status int
	Header http.Header
	// HeaderLines are the header fields as the app wrote them: order, case
	// and repeats. Nil when they could not be told apart from Header's.
	HeaderLines []protocol.Header
	Body        []byte // at most 32 MiB
	Duration    time.Duration
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
	client       *h1Client
}

func newForwarder(target *url.URL, preserveHost bool, timeout time.Duration, conns int, tlsConfig *tls.Config) *forwarder {
	return &forwarder{
		target:       target,
		preserveHost: preserveHost,
		timeout:      timeout,
		client:       newH1Client(target, tlsConfig, conns),
	}
}

func (f *forwarder) closeIdle() { f.client.closeIdle() }

// forward sends one event to the target and reads the whole response, of at
// most maxBody bytes. body yields exactly in.BodyLength bytes. Failures are
// *TargetError. The app's redirects are answers like any other: never
// followed.
func (f *forwarder) forward(ctx context.Context, in *protocol.DeliveryRequest, body io.Reader, maxBody int64) (*Response, error) {
	reqCtx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	req := f.newRequest(in, body)
	start := time.Now()
	resp, err := f.client.roundTrip(reqCtx, req, maxBody)
	if err != nil {
		if te, ok := errors.AsType[*TargetError](err); ok {
			return nil, te
		}
		return nil, f.classify(ctx, reqCtx, fmt.Errorf("%s %s://%s%s: %w", in.Method, f.target.Scheme, f.target.Host, req.target, err))
	}
	resp.Duration = time.Since(start)
	return resp, nil
}

func tooLarge(limit int64) *TargetError {
	return &TargetError{Code: protocol.ErrCodeTooLarge,
		Msg: fmt.Sprintf("the target's response body is over the relay's limit of %d bytes", limit)}
}

// newRequest builds the request to the target for an event.
func (f *forwarder) newRequest(in *protocol.DeliveryRequest, body io.Reader) *h1Request {
	host := f.target.Host
	if f.preserveHost {
		if sent, ok := firstHeader(in.Headers, "Host"); ok {
			host = sent
		}
	}
	return &h1Request{
		method:        in.Method,
		target:        requestTarget(f.target, in.Path, in.RawQuery),
		header:        outgoingHeader(in, host),
		body:          body,
		contentLength: in.BodyLength,
	}
}

// outgoingHeader lists the header lines for the target: the event's, in
// their order with their names' case and their repeats, except hop-by-hop
// headers and the hookrelay headers a sender may have forged. Host takes the
// place of the sender's Host with the value host; Content-Length, from the
// body's length, takes the place of the sender's or follows the sender's
// headers; Hookrelay-Event-Id, Hookrelay-Delivery-Attempt and, for a
// repeat, Hookrelay-Repeat-Of come last.
func outgoingHeader(in *protocol.DeliveryRequest, host string) []protocol.Header {
	contentLength := protocol.Header{Name: "Content-Length", Value: strconv.FormatInt(in.BodyLength, 10)}
	// Like Go's client: a length of 0 is said for methods that carry a body.
	needLength := in.BodyLength > 0 || in.Method == http.MethodPost || in.Method == http.MethodPut || in.Method == http.MethodPatch
	out := make([]protocol.Header, 0, len(in.Headers)+4)
	hostDone, lengthDone := false, false
	for _, hd := range protocol.DropHopByHop(in.Headers) {
		name := strings.ToLower(hd.Name)
		switch {
		case name == "host":
			if !hostDone {
				out = append(out, protocol.Header{Name: hd.Name, Value: host})
				hostDone = true
			}
		case name == "content-length":
			if !lengthDone {
				out = append(out, protocol.Header{Name: hd.Name, Value: contentLength.Value})
				lengthDone = true
			}
		case name == "hookrelay-event-id", name == "hookrelay-delivery-attempt", name == "hookrelay-repeat-of":
		case !validHeaderName(hd.Name) || !validHeaderValue(hd.Value):
			// Validate refuses these; a saved file edited by hand may hold them.
		default:
			out = append(out, hd)
		}
	}
	if !hostDone {
		out = append([]protocol.Header{{Name: "Host", Value: host}}, out...)
	}
	if !lengthDone && needLength {
		out = append(out, contentLength)
	}
	out = append(out,
		protocol.Header{Name: HeaderEventID, Value: in.EventID},
		protocol.Header{Name: HeaderAttempt, Value: strconv.Itoa(in.Attempt)})
	if in.RepeatOf != "" {
		out = append(out, protocol.Header{Name: HeaderRepeatOf, Value: in.RepeatOf})
	}
	return out
}

func firstHeader(headers []protocol.Header, name string) (string, bool) {
	for _, h := range headers {
		if strings.EqualFold(h.Name, name) {
			return h.Value, true
		}
	}
	return "", false
}

// requestTarget builds the request target for an event at the target: the
// target's path joined with the cleaned sub-path, then the target's query
// followed by the event's. It is always a path (origin form): nothing in
// the sub-path can name another host or climb above the target's path, and
// percent-encoded bytes are kept as sent.
func requestTarget(target *url.URL, subPath, rawQuery string) string {
	sub := cleanSubPath(subPath)
	p := target.EscapedPath()
	if sub != "/" {
		p = strings.TrimSuffix(p, "/") + sub
	} else if p == "" {
		p = "/"
	}
	rawQuery = escapeControls(rawQuery)
	switch {
	case target.RawQuery != "" && rawQuery != "":
		return p + "?" + target.RawQuery + "&" + rawQuery
	case rawQuery != "":
		return p + "?" + rawQuery
	case target.RawQuery != "":
		return p + "?" + target.RawQuery
	}
	return p
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

// escapeControls percent-encodes the bytes a request line cannot carry:
// space and controls. A query that passed DeliveryRequest.Validate has none;
// other bytes, non-ASCII ones too, are kept as sent.
func escapeControls(s string) string {
	if strings.IndexFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f }) < 0 {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f {
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
		// Not agent_stopping, which says the request was never started
		// (SPEC.md 6.2): the app may have received this one.
		return &TargetError{Code: protocol.ErrCodeTarget, Msg: "the agent stopped before the target answered", Err: err}
	case errors.Is(reqCtx.Err(), context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return &TargetError{Code: protocol.ErrCodeTimeout,
			Msg: fmt.Sprintf("timeout: the target did not answer within %s", f.timeout), Err: err}
	}
	return &TargetError{Code: protocol.ErrCodeTarget, Msg: err.Error(), Err: err}
}

// responseHeaders lists the target's response headers for the relay: as
// the app wrote them, or, when those are unknown, from the parsed Header
// with names sorted.
func responseHeaders(resp *Response, method string) []protocol.Header {
	if resp.HeaderLines != nil {
		return appHeaders(resp.HeaderLines, method)
	}
	h := resp.Header
	hs := make([]protocol.Header, 0, len(h))
	for _, name := range slices.Sorted(maps.Keys(h)) {
		for _, v := range h[name] {
			hs = append(hs, protocol.Header{Name: name, Value: v})
		}
	}
	return appHeaders(hs, method)
}

// appHeaders keeps, in order, the app's response headers that go back to the
// relay: not hop-by-hop, well formed, and without Content-Length, which
// BodyLength carries, except for HEAD, where there is no body to carry it.
func appHeaders(hs []protocol.Header, method string) []protocol.Header {
	kept := protocol.DropHopByHop(hs)
	out := kept[:0]
	for _, h := range kept {
		if (strings.EqualFold(h.Name, "Content-Length") && method != http.MethodHead) ||
			!validHeaderName(h.Name) || !validHeaderValue(h.Value) {
			continue
		}
		out = append(out, h)
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
