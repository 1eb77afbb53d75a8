package client

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/hookrelay/hookrelay/protocol"
)

// Body encodings of a saved event.
const (
	BodyUTF8   = "utf8"   // the body is valid UTF-8 and stored as text
	BodyBase64 = "base64" // the body is stored in standard base64
)

// SavedEvent is an event as the agent writes it to Config.SaveDir, one JSON
// file per event, named <received time>-<event id>.json. RawQuery and
// header values hold the exact bytes; in the file, one that is not valid
// UTF-8 also carries its bytes in base64 ("raw_query_base64", and see
// Header), so Replay sends them exactly.
type SavedEvent struct {
	EventID  string        `json:"event_id"`
	Channel  string        `json:"channel"`
	Attempt  int           `json:"attempt,omitempty"`
	Method   string        `json:"method"`
	Path     string        `json:"path"`
	RawQuery string        `json:"raw_query"`
	Headers  []SavedHeader `json:"headers"`
	// Body is the body; in the file it is "body" with "body_encoding".
	Body       []byte    `json:"-"`
	ReceivedAt time.Time `json:"received_at"`
	RemoteAddr string    `json:"remote_addr,omitempty"`
}

// SavedHeader is one header line of a saved or captured event.
type SavedHeader = Header

// MarshalJSON writes the body as text when it is valid UTF-8 (JSON strings
// carry that losslessly) and as base64 otherwise.
func (e SavedEvent) MarshalJSON() ([]byte, error) {
	type plain SavedEvent // without the methods, to avoid recursion
	return marshalLine(struct {
		plain
		RawQueryBase64 string `json:"raw_query_base64,omitempty"`
		jsonBody
	}{plain(e), base64IfNotUTF8(e.RawQuery), newJSONBody(e.Body)})
}

// UnmarshalJSON reads the form MarshalJSON writes.
func (e *SavedEvent) UnmarshalJSON(data []byte) error {
	type plain SavedEvent
	var f struct {
		plain
		RawQueryBase64 string `json:"raw_query_base64"`
		jsonBody
	}
	if err := json.Unmarshal(data, &f); err != nil {
		return err
	}
	*e = SavedEvent(f.plain)
	var err error
	if e.RawQuery, err = exact(e.RawQuery, f.RawQueryBase64); err != nil {
		return fmt.Errorf("raw_query_base64: %w", err)
	}
	e.Body, err = f.jsonBody.bytes()
	return err
}

// jsonBody is a body as saved and captured files hold it: "body" as text
// when it is valid UTF-8, else base64, as "body_encoding" says.
type jsonBody struct {
	Text     string `json:"body"`
	Encoding string `json:"body_encoding"`
}

func newJSONBody(b []byte) jsonBody {
	if utf8.Valid(b) {
		return jsonBody{string(b), BodyUTF8}
	}
	return jsonBody{base64.StdEncoding.EncodeToString(b), BodyBase64}
}

func (j jsonBody) bytes() ([]byte, error) {
	switch j.Encoding {
	case BodyUTF8, "":
		return []byte(j.Text), nil
	case BodyBase64:
		body, err := base64.StdEncoding.DecodeString(j.Text)
		if err != nil {
			return nil, fmt.Errorf("body: %w", err)
		}
		return body, nil
	default:
		return nil, fmt.Errorf("body_encoding %q: want %q or %q", j.Encoding, BodyUTF8, BodyBase64)
	}
}

// marshalLine encodes v as one line of JSON with <, > and & as they are
// (json.Marshal would escape them).
func marshalLine(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

// request turns the saved event back into a delivery request, to go through
// the same checks and forwarding code as a live one.
func (e *SavedEvent) request(attempt int) *protocol.DeliveryRequest {
	headers := make([]protocol.Header, len(e.Headers))
	for i, h := range e.Headers {
		headers[i] = protocol.Header{Name: h.Name, Value: h.Value}
	}
	return &protocol.DeliveryRequest{
		EventID: e.EventID,
		// The target never sees these two; they only satisfy Validate.
		DeliveryID: "replay",
		Channel:    cmp.Or(e.Channel, "replay"),
		Attempt:    attempt,
		Method:     e.Method,
		Path:       e.Path,
		RawQuery:   e.RawQuery,
		Headers:    headers,
		BodyLength: int64(len(e.Body)),
		ReceivedAt: e.ReceivedAt,
		RemoteAddr: e.RemoteAddr,
	}
}

// savedName is the file name of an event: its received time, sortable and
// free of characters file systems refuse, then its id.
func savedName(req *protocol.DeliveryRequest) string {
	id := strings.Map(func(r rune) rune {
		if r == '-' || r == '_' || ('0' <= r && r <= '9') || ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z') {
			return r
		}
		return '_'
	}, req.EventID)
	if len(id) > 100 {
		id = id[:100]
	}
	return req.ReceivedAt.UTC().Format("20060102T150405.000000000Z") + "-" + id + ".json"
}

// saveEvent writes one event to dir and returns the file's path. The file is
// written under a temporary name and renamed, so readers never see half of
// it; it is readable by its owner only, as webhooks carry secrets.
func saveEvent(dir string, req *protocol.DeliveryRequest, body []byte) (string, error) {
	ev := SavedEvent{
		EventID:    req.EventID,
		Channel:    req.Channel,
		Attempt:    req.Attempt,
		Method:     req.Method,
		Path:       req.Path,
		RawQuery:   req.RawQuery,
		Headers:    make([]SavedHeader, len(req.Headers)),
		Body:       body,
		ReceivedAt: req.ReceivedAt,
		RemoteAddr: req.RemoteAddr,
	}
	for i, h := range req.Headers {
		ev.Headers[i] = SavedHeader{Name: h.Name, Value: h.Value}
	}
	var data bytes.Buffer
	enc := json.NewEncoder(&data)
	enc.SetEscapeHTML(false) // keep <, > and & readable in the file
	enc.SetIndent("", "  ")
	if err := enc.Encode(ev); err != nil {
		return "", fmt.Errorf("encode event %s: %w", req.EventID, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("create save directory: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".saving-*")
	if err != nil {
		return "", fmt.Errorf("save event %s: %w", req.EventID, err)
	}
	name := filepath.Join(dir, savedName(req))
	_, err = tmp.Write(data.Bytes())
	if closeErr := tmp.Close(); err == nil {
		err = closeErr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), name)
	}
	if err != nil {
		_ = os.Remove(tmp.Name()) // best effort: it may not exist
		return "", fmt.Errorf("save event %s: %w", req.EventID, err)
	}
	return name, nil
}

// ReadSaved reads an event file written by an agent with Config.SaveDir.
func ReadSaved(path string) (*SavedEvent, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var ev SavedEvent
	if err := json.Unmarshal(data, &ev); err != nil {
		return nil, fmt.Errorf("read saved event %s: %w", path, err)
	}
	if err := ev.request(1).Validate(); err != nil {
		return nil, fmt.Errorf("read saved event %s: %w", path, err)
	}
	return &ev, nil
}

// ReplayOptions tunes Replay.
type ReplayOptions struct {
	// PreserveHost keeps the saved Host header instead of the target's.
	PreserveHost bool
	// Timeout bounds the request (default 30s).
	Timeout time.Duration
	// Attempt is sent in Hookrelay-Delivery-Attempt (default: the saved
	// attempt plus one).
	Attempt int
	// TLSConfig is used for an https target (default: the system's roots).
	TLSConfig *tls.Config
}

// Replay sends a saved event to target again, byte for byte, following the
// same rules as a live delivery, and returns the target's response. A
// failure to reach the target is a *TargetError.
func Replay(ctx context.Context, saved *SavedEvent, target string, opts ReplayOptions) (*Response, error) {
	if saved == nil {
		return nil, errors.New("client: replay of a nil event")
	}
	u, err := parseTarget(target)
	if err != nil {
		return nil, err
	}
	if opts.Timeout <= 0 {
		opts.Timeout = defaultRequestTimeout
	}
	if opts.Attempt <= 0 {
		opts.Attempt = max(saved.Attempt, 0) + 1
	}
	req := saved.request(opts.Attempt)
	if err := req.Validate(); err != nil {
		return nil, fmt.Errorf("client: saved event %s: %w", saved.EventID, err)
	}
	f := newForwarder(u, opts.PreserveHost, opts.Timeout, 1, opts.TLSConfig)
	defer f.closeIdle()
	return f.forward(ctx, req, bytes.NewReader(saved.Body), maxResponseBody)
}
