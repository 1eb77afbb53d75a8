package protocol_test

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/protocol"
)

// githubHeaders is the header list of a typical GitHub webhook delivery.
func githubHeaders() []protocol.Header {
	return []protocol.Header{
		{Name: "Host", Value: "relay.example.com"},
		{Name: "User-Agent", Value: "GitHub-Hookshot/a1b2c3d"},
		{Name: "Content-Length", Value: "7421"},
		{Name: "Accept", Value: "*/*"},
		{Name: "Content-Type", Value: "application/json"},
		{Name: "X-GitHub-Delivery", Value: "72d3162e-cc78-11e3-81ab-4c9367dc0958"},
		{Name: "X-GitHub-Event", Value: "push"},
		{Name: "X-GitHub-Hook-ID", Value: "292430182"},
		{Name: "X-GitHub-Hook-Installation-Target-ID", Value: "79929171"},
		{Name: "X-GitHub-Hook-Installation-Target-Type", Value: "repository"},
		{Name: "X-Hub-Signature", Value: "sha1=7d38cdd689735b008b3c702edd92eea23791c5f6"},
		{Name: "X-Hub-Signature-256", Value: "sha256=d57c68ca6f92289e6987922ff26938930f6e66a2d161ef06abdf1859230aa23c"},
		{Name: "Accept-Encoding", Value: "gzip"},
		{Name: "X-Forwarded-For", Value: "140.82.115.1"},
		{Name: "X-Forwarded-Proto", Value: "https"},
		{Name: "X-Request-Id", Value: "4f1c2a9e-2b7d-4c55-9d0e-7a1f3b8c6d21"},
		{Name: "Traceparent", Value: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
		{Name: "Cdn-Loop", Value: "cloudflare"},
		{Name: "Cf-Ray", Value: "8a1b2c3d4e5f6a7b-FRA"},
		{Name: "Cf-Connecting-Ip", Value: "140.82.115.1"},
	}
}

// validRequest is a request frame as the relay writes it.
func validRequest(bodyLength int64) *protocol.DeliveryRequest {
	return &protocol.DeliveryRequest{
		EventID:    "evt_01HZX",
		DeliveryID: "dlv_01HZY",
		Attempt:    1,
		Channel:    "ch_7f3a",
		Method:     "POST",
		Path:       "/github/push",
		RawQuery:   "a=1&b=%20x",
		Headers:    githubHeaders(),
		BodyLength: bodyLength,
		ReceivedAt: time.Date(2025, 3, 1, 12, 30, 45, 123456789, time.UTC),
		RemoteAddr: "140.82.115.1",
	}
}

func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestRequestRoundTrip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		req  *protocol.DeliveryRequest
		body []byte
	}{
		{"binary body", validRequest(4096), randomBytes(1, 4096)},
		{"empty body", validRequest(0), nil},
		{"body of NULs and newlines", validRequest(6), []byte("\x00\n\r\n\x00\xff")},
		{"repeated and odd-case headers in order", func() *protocol.DeliveryRequest {
			r := validRequest(3)
			r.Headers = []protocol.Header{
				{Name: "x-lower", Value: "1"},
				{Name: "Set-Cookie", Value: "a=1"},
				{Name: "X-MiXeD-CaSe", Value: "v"},
				{Name: "Set-Cookie", Value: "b=2"},
				{Name: "set-cookie", Value: "c=3"},
				{Name: "Empty", Value: ""},
				{Name: "Tab", Value: "a\tb"},
				{Name: "Utf8", Value: "naïve ✓ 日本"},
				{Name: "Html", Value: "<a href=\"x\">&amp;</a>"},
				{Name: "Set-Cookie", Value: "a=1"},
			}
			return r
		}(), []byte("abc")},
		{"non-UTF-8 header values and query", func() *protocol.DeliveryRequest {
			r := validRequest(1)
			r.RawQuery = "q=caf\xe9&r=\xff"
			r.Headers = []protocol.Header{
				{Name: "X-Latin1", Value: "caf\xe9"},
				{Name: "X-Ok", Value: "fine"},
				{Name: "X-Bytes", Value: "\x80\xff\xfe"},
			}
			return r
		}(), []byte{0}},
		{"no headers, local time, later attempt", func() *protocol.DeliveryRequest {
			r := validRequest(0)
			r.Headers = nil
			r.Attempt = 7
			r.Method = "M-SEARCH"
			r.Path = "/"
			r.RawQuery = ""
			r.RemoteAddr = ""
			r.ReceivedAt = time.Date(2025, 1, 2, 3, 4, 5, 0, time.FixedZone("", 2*3600))
			return r
		}(), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stream bytes.Buffer
			if err := protocol.WriteRequest(&stream, tt.req, bytes.NewReader(tt.body)); err != nil {
				t.Fatalf("WriteRequest: %v", err)
			}
			got, err := protocol.ReadRequest(&stream)
			if err != nil {
				t.Fatalf("ReadRequest: %v", err)
			}
			assertSameRequest(t, got, tt.req)
			body, err := io.ReadAll(&stream)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(body, tt.body) && len(body)+len(tt.body) > 0 {
				t.Errorf("body = %q, want %q", body, tt.body)
			}
		})
	}
}

// assertSameRequest compares two requests, ReceivedAt as an instant.
func assertSameRequest(t *testing.T, got, want *protocol.DeliveryRequest) {
	t.Helper()
	if !got.ReceivedAt.Equal(want.ReceivedAt) {
		t.Errorf("ReceivedAt = %v, want %v", got.ReceivedAt, want.ReceivedAt)
	}
	g, w := *got, *want
	g.ReceivedAt, w.ReceivedAt = time.Time{}, time.Time{}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("request:\n got %+v\nwant %+v", g, w)
	}
}

func TestResponseRoundTrip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		resp *protocol.DeliveryResponse
		body []byte
	}{
		{"binary body", &protocol.DeliveryResponse{
			Status:     200,
			Headers:    []protocol.Header{{Name: "Content-Type", Value: "application/octet-stream"}, {Name: "Set-Cookie", Value: "a=1"}, {Name: "set-cookie", Value: "b=2"}},
			BodyLength: 1000,
			Duration:   12 * time.Millisecond,
		}, randomBytes(2, 1000)},
		{"no body", &protocol.DeliveryResponse{Status: 204, Headers: []protocol.Header{}, Duration: time.Microsecond}, nil},
		{"non-UTF-8 header", &protocol.DeliveryResponse{Status: 500, Headers: []protocol.Header{{Name: "X-Err", Value: "\xe9chec"}}}, nil},
		{"connection refused", &protocol.DeliveryResponse{Error: "dial tcp 127.0.0.1:3000: connect: connection refused", ErrorCode: protocol.ErrCodeConnectionRefused, Duration: time.Millisecond}, nil},
		{"timeout", &protocol.DeliveryResponse{Error: "no answer within 10s", ErrorCode: protocol.ErrCodeTimeout}, nil},
		{"unknown error code", &protocol.DeliveryResponse{Error: "x", ErrorCode: "later_code"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stream bytes.Buffer
			if err := protocol.WriteResponse(&stream, tt.resp, bytes.NewReader(tt.body)); err != nil {
				t.Fatalf("WriteResponse: %v", err)
			}
			got, err := protocol.ReadResponse(&stream)
			if err != nil {
				t.Fatalf("ReadResponse: %v", err)
			}
			if !reflect.DeepEqual(got, tt.resp) {
				t.Errorf("response:\n got %+v\nwant %+v", got, tt.resp)
			}
			if body := stream.Bytes(); !bytes.Equal(body, tt.body) && len(body)+len(tt.body) > 0 {
				t.Errorf("body = %q, want %q", body, tt.body)
			}
		})
	}
}

// TestRequestWireNames pins the JSON names SPEC.md documents.
func TestRequestWireNames(t *testing.T) {
	t.Parallel()
	req := validRequest(2)
	req.Headers = req.Headers[:1]
	var buf bytes.Buffer
	if err := protocol.WriteRequest(&buf, req, strings.NewReader("{}")); err != nil {
		t.Fatal(err)
	}
	want := `{"event_id":"evt_01HZX","delivery_id":"dlv_01HZY","attempt":1,"channel":"ch_7f3a","method":"POST",` +
		`"path":"/github/push","raw_query":"a=1\u0026b=%20x","headers":[{"n":"Host","v":"relay.example.com"}],` +
		`"body_length":2,"received_at":"2025-03-01T12:30:45.123456789Z","remote_addr":"140.82.115.1"}{}`
	if got := string(buf.Bytes()[4:]); got != want {
		t.Errorf("request on the wire:\n got %s\nwant %s", got, want)
	}

	buf.Reset()
	resp := &protocol.DeliveryResponse{Error: "refused", ErrorCode: protocol.ErrCodeConnectionRefused, Duration: 5}
	if err := protocol.WriteResponse(&buf, resp, nil); err != nil {
		t.Fatal(err)
	}
	want = `{"status":0,"headers":null,"body_length":0,"duration_ns":5,"error":"refused","error_code":"connection_refused"}`
	if got := string(buf.Bytes()[4:]); got != want {
		t.Errorf("error response on the wire:\n got %s\nwant %s", got, want)
	}

	buf.Reset()
	resp = &protocol.DeliveryResponse{Status: 200, Headers: []protocol.Header{{Name: "X", Value: "\xff"}}}
	if err := protocol.WriteResponse(&buf, resp, nil); err != nil {
		t.Fatal(err)
	}
	want = `{"status":200,"headers":[{"n":"X","v":"\ufffd"}],"body_length":0,"duration_ns":0,"raw_header_values":[{"i":0,"b":"/w=="}]}`
	if got := string(buf.Bytes()[4:]); got != want {
		t.Errorf("response with a raw value on the wire:\n got %s\nwant %s", got, want)
	}
}

func TestRequestValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		change  func(*protocol.DeliveryRequest)
		wantErr string // "" for valid
	}{
		{"valid", func(*protocol.DeliveryRequest) {}, ""},
		{"extension method", func(r *protocol.DeliveryRequest) { r.Method = "PROPFIND" }, ""},
		{"escaped path", func(r *protocol.DeliveryRequest) { r.Path = "/a%20b/%3F/c;d=e@f:g" }, ""},
		{"query with hash and UTF-8", func(r *protocol.DeliveryRequest) { r.RawQuery = "a=#b&c=ü" }, ""},
		{"obs-text header value", func(r *protocol.DeliveryRequest) { r.Headers = []protocol.Header{{Name: "X", Value: "\xe9"}} }, ""},
		{"max body length", func(r *protocol.DeliveryRequest) { r.BodyLength = protocol.MaxBodyLength }, ""},

		{"empty method", func(r *protocol.DeliveryRequest) { r.Method = "" }, "bad method"},
		{"method with space", func(r *protocol.DeliveryRequest) { r.Method = "GET /x" }, "bad method"},
		{"method with slash", func(r *protocol.DeliveryRequest) { r.Method = "GE/T" }, "bad method"},
		{"method with CRLF", func(r *protocol.DeliveryRequest) { r.Method = "GET\r\nX: y" }, "bad method"},
		{"method too long", func(r *protocol.DeliveryRequest) { r.Method = strings.Repeat("A", 33) }, "bad method"},
		{"empty path", func(r *protocol.DeliveryRequest) { r.Path = "" }, "path"},
		{"path without slash", func(r *protocol.DeliveryRequest) { r.Path = "github" }, "path"},
		{"path with CRLF", func(r *protocol.DeliveryRequest) { r.Path = "/a\r\nX-Injected: 1" }, "path"},
		{"path with LF", func(r *protocol.DeliveryRequest) { r.Path = "/a\nb" }, "path"},
		{"path with space", func(r *protocol.DeliveryRequest) { r.Path = "/a b" }, "path"},
		{"path with question mark", func(r *protocol.DeliveryRequest) { r.Path = "/a?b=1" }, "path"},
		{"path with hash", func(r *protocol.DeliveryRequest) { r.Path = "/a#b" }, "path"},
		{"path not escaped", func(r *protocol.DeliveryRequest) { r.Path = "/café" }, "path"},
		{"query with CRLF", func(r *protocol.DeliveryRequest) { r.RawQuery = "a=1\r\nX: y" }, "query"},
		{"query with space", func(r *protocol.DeliveryRequest) { r.RawQuery = "a=1 HTTP/1.1" }, "query"},
		{"query with NUL", func(r *protocol.DeliveryRequest) { r.RawQuery = "a=\x00" }, "query"},
		{"header value CRLF injection", func(r *protocol.DeliveryRequest) {
			r.Headers = []protocol.Header{{Name: "X-A", Value: "1\r\nX-Injected: 2"}}
		}, "control character in header"},
		{"header value LF", func(r *protocol.DeliveryRequest) { r.Headers = []protocol.Header{{Name: "X-A", Value: "1\n2"}} }, "control character in header"},
		{"header value NUL", func(r *protocol.DeliveryRequest) { r.Headers = []protocol.Header{{Name: "X-A", Value: "1\x002"}} }, "control character in header"},
		{"header value DEL", func(r *protocol.DeliveryRequest) { r.Headers = []protocol.Header{{Name: "X-A", Value: "\x7f"}} }, "control character in header"},
		{"empty header name", func(r *protocol.DeliveryRequest) { r.Headers = []protocol.Header{{Name: "", Value: "v"}} }, "bad header name"},
		{"header name with colon", func(r *protocol.DeliveryRequest) { r.Headers = []protocol.Header{{Name: "X:Y", Value: "v"}} }, "bad header name"},
		{"header name with CRLF", func(r *protocol.DeliveryRequest) { r.Headers = []protocol.Header{{Name: "X\r\nY", Value: "v"}} }, "bad header name"},
		{"header name with space", func(r *protocol.DeliveryRequest) { r.Headers = []protocol.Header{{Name: "X Y", Value: "v"}} }, "bad header name"},
		{"negative body length", func(r *protocol.DeliveryRequest) { r.BodyLength = -1 }, "body length"},
		{"too large body length", func(r *protocol.DeliveryRequest) { r.BodyLength = protocol.MaxBodyLength + 1 }, "body length"},
		{"no event id", func(r *protocol.DeliveryRequest) { r.EventID = "" }, "event id"},
		{"event id with CRLF", func(r *protocol.DeliveryRequest) { r.EventID = "e\r\nX: y" }, "event id"},
		{"no delivery id", func(r *protocol.DeliveryRequest) { r.DeliveryID = "" }, "delivery id"},
		{"no channel", func(r *protocol.DeliveryRequest) { r.Channel = "" }, "channel"},
		{"attempt 0", func(r *protocol.DeliveryRequest) { r.Attempt = 0 }, "attempt"},
		{"remote address with LF", func(r *protocol.DeliveryRequest) { r.RemoteAddr = "1.2.3.4\nX: y" }, "remote address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req := validRequest(0)
			tt.change(req)
			err := req.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate error = %v, want one containing %q", err, tt.wantErr)
			}
			// WriteRequest refuses it before writing anything.
			var buf bytes.Buffer
			if err := protocol.WriteRequest(&buf, req, nil); err == nil || buf.Len() != 0 {
				t.Errorf("WriteRequest = %v after writing %d bytes; want a refusal and nothing written", err, buf.Len())
			}
		})
	}
}

func TestResponseValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		resp    protocol.DeliveryResponse
		wantErr string
	}{
		{"ok", protocol.DeliveryResponse{Status: 200}, ""},
		{"lowest status", protocol.DeliveryResponse{Status: 100}, ""},
		{"highest status", protocol.DeliveryResponse{Status: 999}, ""},
		{"error", protocol.DeliveryResponse{Error: "e", ErrorCode: protocol.ErrCodeTarget}, ""},
		{"status 0 without error", protocol.DeliveryResponse{}, "status 0"},
		{"status 99", protocol.DeliveryResponse{Status: 99}, "status 99"},
		{"status 1000", protocol.DeliveryResponse{Status: 1000}, "status 1000"},
		{"error response with body", protocol.DeliveryResponse{Error: "e", ErrorCode: protocol.ErrCodeTarget, BodyLength: 1}, "with a body"},
		{"error response with status", protocol.DeliveryResponse{Status: 502, Error: "e", ErrorCode: protocol.ErrCodeTarget}, "with status"},
		{"error response with headers", protocol.DeliveryResponse{Error: "e", ErrorCode: protocol.ErrCodeTarget, Headers: []protocol.Header{{Name: "A", Value: "b"}}}, "with headers"},
		{"error without code", protocol.DeliveryResponse{Error: "e"}, "both error and error_code"},
		{"code without error", protocol.DeliveryResponse{ErrorCode: protocol.ErrCodeTimeout}, "both error and error_code"},
		{"negative body length", protocol.DeliveryResponse{Status: 200, BodyLength: -1}, "body length"},
		{"too large body length", protocol.DeliveryResponse{Status: 200, BodyLength: protocol.MaxBodyLength + 1}, "body length"},
		{"negative duration", protocol.DeliveryResponse{Status: 200, Duration: -1}, "duration"},
		{"header CRLF injection", protocol.DeliveryResponse{Status: 200, Headers: []protocol.Header{{Name: "Location", Value: "/x\r\nSet-Cookie: a=1"}}}, "control character in header"},
		{"bad header name", protocol.DeliveryResponse{Status: 200, Headers: []protocol.Header{{Name: "(x)", Value: "v"}}}, "bad header name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.resp.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate error = %v, want one containing %q", err, tt.wantErr)
			}
			var buf bytes.Buffer
			if err := protocol.WriteResponse(&buf, &tt.resp, nil); err == nil || buf.Len() != 0 {
				t.Errorf("WriteResponse = %v after writing %d bytes; want a refusal and nothing written", err, buf.Len())
			}
		})
	}
}

// TestReadRequestRejects checks what a receiver refuses on the wire.
func TestReadRequestRejects(t *testing.T) {
	t.Parallel()
	base := `"event_id":"e","delivery_id":"d","attempt":1,"channel":"c","headers":[],"body_length":0,"received_at":"2025-01-01T00:00:00Z"`
	tests := []struct {
		name    string
		in      []byte
		wantErr string
	}{
		{"valid", rawFrame(`{` + base + `,"method":"GET","path":"/"}`), ""},
		{"unknown fields ignored", rawFrame(`{` + base + `,"method":"GET","path":"/","priority":"high","trace":{"id":1}}`), ""},
		{"raw value index out of range", rawFrame(`{` + base + `,"method":"GET","path":"/","raw_header_values":[{"i":0,"b":"/w=="}]}`), "raw header value"},
		{"raw value negative index", rawFrame(`{` + base + `,"method":"GET","path":"/","raw_header_values":[{"i":-1,"b":"/w=="}]}`), "raw header value"},
		{"raw query with CRLF", rawFrame(`{` + base + `,"method":"GET","path":"/","raw_query_bytes":"DQo="}`), "query"},
		{"bad method", rawFrame(`{` + base + `,"method":"G T","path":"/"}`), "bad method"},
		{"bad time", rawFrame(`{` + base + `,"method":"GET","path":"/","received_at":"yesterday"}`), "decode frame"},
		{"body length as string", rawFrame(`{"event_id":"e","delivery_id":"d","attempt":1,"channel":"c","method":"GET","path":"/","body_length":"5"}`), "decode frame"},
		{"too large", frame(protocol.MaxHeaderFrame+1, "{}"), "frame too large"},
		{"truncated", frame(100, `{"event_id":`), "unexpected EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := protocol.ReadRequest(bytes.NewReader(tt.in))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("ReadRequest: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ReadRequest error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestReadResponseRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      []byte
		wantErr string
	}{
		{"valid", rawFrame(`{"status":200,"headers":[],"body_length":3,"duration_ns":1}`), ""},
		{"error with body", rawFrame(`{"status":0,"body_length":3,"error":"x","error_code":"timeout"}`), "with a body"},
		{"no status", rawFrame(`{"headers":[]}`), "status 0"},
		{"too large", frame(protocol.MaxHeaderFrame+1, "{}"), "frame too large"},
		{"raw value out of range", rawFrame(`{"status":200,"headers":[],"raw_header_values":[{"i":3,"b":""}]}`), "raw header value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := protocol.ReadResponse(bytes.NewReader(tt.in))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("ReadResponse: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ReadResponse error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestWriteRequestShortBody(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	err := protocol.WriteRequest(&buf, validRequest(10), strings.NewReader("short"))
	if !errors.Is(err, io.EOF) || !strings.Contains(err.Error(), "wrote 5 of 10") {
		t.Fatalf("WriteRequest error = %v, want a short body error", err)
	}
	if err := protocol.WriteRequest(&buf, validRequest(10), nil); err == nil || !strings.Contains(err.Error(), "body missing") {
		t.Fatalf("WriteRequest with no body = %v", err)
	}
}

// TestWriteRequestLongBody checks that only BodyLength bytes are written,
// so the stream stays in step when the body reader holds more.
func TestWriteRequestLongBody(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	if err := protocol.WriteRequest(&buf, validRequest(3), strings.NewReader("abcdef")); err != nil {
		t.Fatal(err)
	}
	if _, err := protocol.ReadRequest(&buf); err != nil {
		t.Fatal(err)
	}
	if got := buf.String(); got != "abc" {
		t.Errorf("body on the wire = %q, want %q", got, "abc")
	}
}

// TestReadRequestReturnsInvalidFrame checks that a frame that decodes but
// breaks the rules comes back with the error, so the receiver can skip its
// body, while one that does not decode comes back nil.
func TestReadRequestReturnsInvalidFrame(t *testing.T) {
	t.Parallel()
	base := `"event_id":"e","delivery_id":"d","attempt":1,"channel":"c","headers":[],"received_at":"2025-01-01T00:00:00Z"`
	req, err := protocol.ReadRequest(bytes.NewReader(rawFrame(`{` + base + `,"method":"G T","path":"/","body_length":7}`)))
	if err == nil || req == nil || req.BodyLength != 7 {
		t.Errorf("invalid frame: request %+v, error %v; want the request with its body length and an error", req, err)
	}
	req, err = protocol.ReadRequest(bytes.NewReader(frame(100, `{"event_id":`)))
	if err == nil || req != nil {
		t.Errorf("truncated frame: request %+v, error %v; want nil and an error", req, err)
	}
}
