package protocol

import (
	"errors"
	"fmt"
	"io"
	"time"
)

// Header is one header line. Lists of Header keep name case, order and
// repeats, which a map would lose. Value holds the bytes as received, which
// need not be UTF-8; they travel exactly.
type Header struct {
	Name  string
	Value string
}

// DeliveryRequest is the header frame the relay writes first on a delivery
// stream; BodyLength body bytes follow it.
type DeliveryRequest struct {
	EventID    string
	DeliveryID string
	Attempt    int // 1 for the first attempt
	Channel    string
	Method     string
	Path       string // sub-path after the channel, escaped, starts with "/"
	RawQuery   string // as received, without the "?"
	Headers    []Header
	BodyLength int64
	ReceivedAt time.Time // travels as an instant; decoded in UTC
	RemoteAddr string
	// RepeatOf, when set, is the id of an event whose commit failed after
	// its delivery had started and whose webhook this one repeats (the
	// sender retried the 503). An optional trailing field (SPEC.md 6.1):
	// written only when set; an older agent ignores it.
	RepeatOf string
}

// Delivery error codes carried in DeliveryResponse.ErrorCode.
const (
	ErrCodeConnectionRefused = "connection_refused"
	ErrCodeTimeout           = "timeout"
	ErrCodeTarget            = "target_error"   // any other failure to reach the target
	ErrCodeBadDelivery       = "bad_delivery"   // the agent refused the request frame
	ErrCodeAgentStopping     = "agent_stopping" // the agent is shutting down
	ErrCodeTooLarge          = "response_too_large"
	ErrCodeNoRoute           = "no_route" // no route of the agent matches and it has no fallback target
)

// DeliveryResponse is the header frame the agent writes back on the same
// stream; BodyLength response body bytes follow it. When the target could
// not be reached, Error and ErrorCode say why (both are set), Status is 0,
// and no headers and no body follow.
type DeliveryResponse struct {
	Status     int
	Headers    []Header
	BodyLength int64
	Duration   time.Duration
	Error      string
	ErrorCode  string
}

// maxMethodLength bounds DeliveryRequest.Method.
const maxMethodLength = 32

// appendFields encodes the request frame's fields in the order of SPEC.md,
// section 6.1.
func (req *DeliveryRequest) appendFields(b []byte) []byte {
	b = appendString(b, req.EventID)
	b = appendString(b, req.DeliveryID)
	b = appendUint(b, uint64(req.Attempt))
	b = appendString(b, req.Channel)
	b = appendString(b, req.Method)
	b = appendString(b, req.Path)
	b = appendString(b, req.RawQuery)
	b = appendHeaders(b, req.Headers)
	b = appendUint(b, uint64(req.BodyLength))
	b = appendTime(b, req.ReceivedAt)
	b = appendString(b, req.RemoteAddr)
	if req.RepeatOf != "" {
		b = appendString(b, req.RepeatOf)
	}
	return b
}

// decodeRequest reads the fields appendFields wrote. Bytes after them are
// fields of a later minor version, and ignored.
func decodeRequest(frame string) (*DeliveryRequest, error) {
	d := decoder{s: frame}
	req := &DeliveryRequest{
		EventID:    d.string(),
		DeliveryID: d.string(),
		Attempt:    d.int31("attempt"),
		Channel:    d.string(),
		Method:     d.string(),
		Path:       d.string(),
		RawQuery:   d.string(),
		Headers:    d.headers(),
		BodyLength: d.int63("body length"),
		ReceivedAt: d.time("received_at"),
		RemoteAddr: d.string(),
	}
	if d.err == nil && d.off < len(d.s) {
		req.RepeatOf = d.string()
	}
	if d.err != nil {
		return nil, fmt.Errorf("protocol: decode request frame: %w", d.err)
	}
	return req, nil
}

// WriteRequest checks req, and that body holds exactly req.BodyLength
// bytes, and writes the request frame and the body: in one Write when the
// body is up to 64 KiB. Nothing is written when a check fails.
func WriteRequest(w io.Writer, req *DeliveryRequest, body []byte) error {
	f, err := EncodeRequest(req, body)
	if err != nil {
		return err
	}
	defer f.Release()
	_, err = f.WriteTo(w)
	return err
}

// ReadRequest reads and checks a request frame. The caller then reads
// exactly BodyLength body bytes from r. When the frame decodes but its
// fields break a rule of SPEC.md, ReadRequest returns the request with the
// error, so that the receiver can skip the body it announces (when
// BodyLength itself is in range) and answer; on any other error the
// request is nil.
func ReadRequest(r io.Reader) (*DeliveryRequest, error) {
	frame, err := readFrame(r, MaxHeaderFrame)
	if err != nil {
		return nil, err
	}
	req, err := decodeRequest(frame)
	if err != nil {
		return nil, err
	}
	return req, req.Validate()
}

// Validate checks the fields a receiver relies on: nothing in them can break
// out of an HTTP request line or header when the agent replays it.
func (req *DeliveryRequest) Validate() error {
	switch {
	case req.EventID == "" || hasCTL(req.EventID):
		return fmt.Errorf("protocol: bad event id %q", req.EventID)
	case req.DeliveryID == "" || hasCTL(req.DeliveryID):
		return fmt.Errorf("protocol: bad delivery id %q", req.DeliveryID)
	case req.Channel == "" || hasCTL(req.Channel):
		return fmt.Errorf("protocol: bad channel %q", req.Channel)
	case req.Attempt < 1:
		return fmt.Errorf("protocol: attempt %d, want 1 or more", req.Attempt)
	case req.Method == "" || len(req.Method) > maxMethodLength || !isToken(req.Method):
		return fmt.Errorf("protocol: bad method %q", req.Method)
	case !ValidPath(req.Path):
		return fmt.Errorf("protocol: path %q is not an escaped path starting with /", req.Path)
	case hasCTL(req.RawQuery) || containsByte(req.RawQuery, ' '):
		return fmt.Errorf("protocol: control character or space in query %q", req.RawQuery)
	case req.BodyLength < 0 || req.BodyLength > MaxBodyLength:
		return fmt.Errorf("protocol: body length %d out of range 0 to %d", req.BodyLength, MaxBodyLength)
	case hasCTL(req.RemoteAddr):
		return fmt.Errorf("protocol: control character in remote address %q", req.RemoteAddr)
	case hasCTL(req.RepeatOf):
		return fmt.Errorf("protocol: control character in repeat_of %q", req.RepeatOf)
	case req.ReceivedAt.Unix() < minUnixSeconds || req.ReceivedAt.Unix() > maxUnixSeconds:
		return fmt.Errorf("protocol: received_at %v outside years 1 to 9999", req.ReceivedAt)
	}
	return validHeaders(req.Headers)
}

// appendFields encodes the response frame's fields in the order of
// SPEC.md, section 6.2.
func (resp *DeliveryResponse) appendFields(b []byte) []byte {
	b = appendUint(b, uint64(resp.Status))
	b = appendHeaders(b, resp.Headers)
	b = appendUint(b, uint64(resp.BodyLength))
	b = appendUint(b, uint64(resp.Duration))
	b = appendString(b, resp.Error)
	return appendString(b, resp.ErrorCode)
}

// decodeResponse reads the fields appendFields wrote; bytes after them are
// ignored.
func decodeResponse(frame string) (*DeliveryResponse, error) {
	d := decoder{s: frame}
	resp := &DeliveryResponse{
		Status:     d.int31("status"),
		Headers:    d.headers(),
		BodyLength: d.int63("body length"),
		Duration:   time.Duration(d.int63("duration")),
		Error:      d.string(),
		ErrorCode:  d.string(),
	}
	if d.err != nil {
		return nil, fmt.Errorf("protocol: decode response frame: %w", d.err)
	}
	return resp, nil
}

// WriteResponse checks resp, and that body holds exactly resp.BodyLength
// bytes, and writes the response frame and the body: in one Write when
// the body is up to 64 KiB. Nothing is written when a check fails.
func WriteResponse(w io.Writer, resp *DeliveryResponse, body []byte) error {
	f, err := EncodeResponse(resp, body)
	if err != nil {
		return err
	}
	defer f.Release()
	_, err = f.WriteTo(w)
	return err
}

// ReadResponse reads and checks a response frame. The caller then reads
// exactly BodyLength body bytes from r.
func ReadResponse(r io.Reader) (*DeliveryResponse, error) {
	frame, err := readFrame(r, MaxHeaderFrame)
	if err != nil {
		return nil, err
	}
	resp, err := decodeResponse(frame)
	if err != nil {
		return nil, err
	}
	if err := resp.Validate(); err != nil {
		return nil, err
	}
	return resp, nil
}

// Validate checks the fields a receiver relies on.
func (resp *DeliveryResponse) Validate() error {
	if resp.Error != "" || resp.ErrorCode != "" {
		switch {
		case resp.Error == "" || resp.ErrorCode == "":
			return errors.New("protocol: error response needs both error and error_code")
		case resp.Status != 0:
			return fmt.Errorf("protocol: error response with status %d", resp.Status)
		case resp.BodyLength != 0:
			return errors.New("protocol: error response with a body")
		case len(resp.Headers) != 0:
			return errors.New("protocol: error response with headers")
		}
	} else if resp.Status < 100 || resp.Status > 999 {
		return fmt.Errorf("protocol: status %d out of range 100 to 999", resp.Status)
	}
	if resp.BodyLength < 0 || resp.BodyLength > MaxBodyLength {
		return fmt.Errorf("protocol: body length %d out of range 0 to %d", resp.BodyLength, MaxBodyLength)
	}
	if resp.Duration < 0 {
		return fmt.Errorf("protocol: negative duration %d", resp.Duration)
	}
	return validHeaders(resp.Headers)
}

// validHeaders checks names are HTTP tokens and values hold no control
// character but tab, as net/http requires; bytes 0x80 and up (obs-text) are
// allowed.
func validHeaders(hs []Header) error {
	for _, h := range hs {
		if !isToken(h.Name) {
			return fmt.Errorf("protocol: bad header name %q", h.Name)
		}
		for i := 0; i < len(h.Value); i++ {
			if c := h.Value[i]; c < ' ' && c != '\t' || c == 0x7f {
				return fmt.Errorf("protocol: control character in header %q", h.Name)
			}
		}
	}
	return nil
}

// ValidPath reports whether p is a sub-path a delivery can carry: it starts
// with "/" and holds only printable ASCII other than space, "?" and "#".
// Other bytes travel percent-encoded ("%FF"), as URLs write them. Ingress
// refuses a path that breaks this rule, so nothing undeliverable is stored.
func ValidPath(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; c <= ' ' || c >= 0x7f || c == '?' || c == '#' {
			return false
		}
	}
	return true
}

// isToken reports whether s is an HTTP token (RFC 9110, section 5.6.2).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case containsByte("!#$%&'*+-.^_`|~", c):
		default:
			return false
		}
	}
	return true
}

// hasCTL reports whether s holds an ASCII control character.
func hasCTL(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] == 0x7f {
			return true
		}
	}
	return false
}

func containsByte(s string, b byte) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == b {
			return true
		}
	}
	return false
}
