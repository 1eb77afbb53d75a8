package protocol

import (
	"errors"
	"fmt"
	"io"
	"time"
	"unicode/utf8"
)

// Header is one header line. Lists of Header keep name case, order and
// repeats, which a map would lose. Value holds the bytes as received; values
// that are not valid UTF-8 travel exactly too (see rawValue).
type Header struct {
	Name  string `json:"n"`
	Value string `json:"v"`
}

// DeliveryRequest is the header frame the relay writes first on a delivery
// stream; BodyLength body bytes follow it.
type DeliveryRequest struct {
	EventID    string    `json:"event_id"`
	DeliveryID string    `json:"delivery_id"`
	Attempt    int       `json:"attempt"` // 1 for the first attempt
	Channel    string    `json:"channel"`
	Method     string    `json:"method"`
	Path       string    `json:"path"`                // sub-path after the channel, escaped, starts with "/"
	RawQuery   string    `json:"raw_query,omitempty"` // as received, without the "?"
	Headers    []Header  `json:"headers"`
	BodyLength int64     `json:"body_length"`
	ReceivedAt time.Time `json:"received_at"`
	RemoteAddr string    `json:"remote_addr,omitempty"`
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
	Status     int           `json:"status"`
	Headers    []Header      `json:"headers"`
	BodyLength int64         `json:"body_length"`
	Duration   time.Duration `json:"duration_ns"`
	Error      string        `json:"error,omitempty"`
	ErrorCode  string        `json:"error_code,omitempty"`
}

// maxMethodLength bounds DeliveryRequest.Method.
const maxMethodLength = 32

// rawValue carries the exact bytes of a header value that is not valid
// UTF-8: JSON strings hold Unicode text, so encoding/json would replace such
// bytes with U+FFFD. The header's "v" holds the replaced text for readers
// that do not know raw values; Index is the header's position in the list.
type rawValue struct {
	Index int    `json:"i"`
	Bytes []byte `json:"b"` // base64 in JSON
}

// requestFrame is a DeliveryRequest as it travels: its fields plus the exact
// bytes of strings that are not valid UTF-8. encoding/json flattens the
// embedded pointer, so the frame is one flat object; this breaks if
// DeliveryRequest ever gets a MarshalJSON or UnmarshalJSON method, which the
// frame would inherit.
type requestFrame struct {
	*DeliveryRequest
	QueryBytes []byte     `json:"raw_query_bytes,omitempty"`
	RawValues  []rawValue `json:"raw_header_values,omitempty"`
}

// responseFrame is a DeliveryResponse as it travels.
type responseFrame struct {
	*DeliveryResponse
	RawValues []rawValue `json:"raw_header_values,omitempty"`
}

// WriteRequest checks req, writes the request frame and then exactly
// req.BodyLength bytes from body (which may be nil when BodyLength is 0).
func WriteRequest(w io.Writer, req *DeliveryRequest, body io.Reader) error {
	if err := req.Validate(); err != nil {
		return err
	}
	frame := requestFrame{DeliveryRequest: req, RawValues: rawValues(req.Headers)}
	if !utf8.ValidString(req.RawQuery) {
		frame.QueryBytes = []byte(req.RawQuery)
	}
	if err := WriteFrame(w, &frame, MaxHeaderFrame); err != nil {
		return err
	}
	return copyBody(w, body, req.BodyLength)
}

// ReadRequest reads and checks a request frame, with the exact bytes of a
// query and header values that are not UTF-8. The caller then reads exactly
// BodyLength body bytes from r.
//
// When the frame decodes but its fields break the rules (Validate fails),
// ReadRequest returns the decoded request together with the error, so that
// a receiver can still skip the body the frame announces and answer on the
// stream; otherwise the request is nil on error.
func ReadRequest(r io.Reader) (*DeliveryRequest, error) {
	var req DeliveryRequest
	frame := requestFrame{DeliveryRequest: &req}
	if err := ReadFrame(r, &frame, MaxHeaderFrame); err != nil {
		return nil, err
	}
	if frame.QueryBytes != nil {
		req.RawQuery = string(frame.QueryBytes)
	}
	if err := applyRawValues(req.Headers, frame.RawValues); err != nil {
		return nil, err
	}
	if err := req.Validate(); err != nil {
		return &req, err
	}
	return &req, nil
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
	}
	return validHeaders(req.Headers)
}

// WriteResponse checks resp, writes the response frame and then exactly
// resp.BodyLength bytes from body (which may be nil when BodyLength is 0).
func WriteResponse(w io.Writer, resp *DeliveryResponse, body io.Reader) error {
	if err := resp.Validate(); err != nil {
		return err
	}
	frame := responseFrame{DeliveryResponse: resp, RawValues: rawValues(resp.Headers)}
	if err := WriteFrame(w, &frame, MaxHeaderFrame); err != nil {
		return err
	}
	return copyBody(w, body, resp.BodyLength)
}

// ReadResponse reads and checks a response frame. The caller then reads
// exactly BodyLength body bytes from r.
func ReadResponse(r io.Reader) (*DeliveryResponse, error) {
	var resp DeliveryResponse
	frame := responseFrame{DeliveryResponse: &resp}
	if err := ReadFrame(r, &frame, MaxHeaderFrame); err != nil {
		return nil, err
	}
	if err := applyRawValues(resp.Headers, frame.RawValues); err != nil {
		return nil, err
	}
	if err := resp.Validate(); err != nil {
		return nil, err
	}
	return &resp, nil
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

// rawValues lists the header values that are not valid UTF-8; nil when all
// are, which is the common case and costs one scan.
func rawValues(hs []Header) []rawValue {
	var raw []rawValue
	for i, h := range hs {
		if !utf8.ValidString(h.Value) {
			raw = append(raw, rawValue{Index: i, Bytes: []byte(h.Value)})
		}
	}
	return raw
}

// applyRawValues puts the exact bytes of raw values back into hs.
func applyRawValues(hs []Header, raw []rawValue) error {
	for _, rv := range raw {
		if rv.Index < 0 || rv.Index >= len(hs) {
			return fmt.Errorf("protocol: raw header value for header %d of %d", rv.Index, len(hs))
		}
		hs[rv.Index].Value = string(rv.Bytes)
	}
	return nil
}

func copyBody(w io.Writer, body io.Reader, n int64) error {
	if n == 0 {
		return nil
	}
	if body == nil {
		return errors.New("protocol: body missing")
	}
	copied, err := io.CopyN(w, body, n)
	if err != nil {
		return fmt.Errorf("protocol: body: wrote %d of %d bytes: %w", copied, n, err)
	}
	return nil
}
