package protocol_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
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
		// repeat_of is an optional trailing field: written only when set.
		{"a repeat of a failed event, empty remote address", func() *protocol.DeliveryRequest {
			r := validRequest(2)
			r.RemoteAddr = ""
			r.RepeatOf = "evt_failed"
			return r
		}(), []byte("{}")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stream bytes.Buffer
			if err := protocol.WriteRequest(&stream, tt.req, tt.body); err != nil {
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
		{"no body", &protocol.DeliveryResponse{Status: 204, Duration: time.Microsecond}, nil},
		{"non-UTF-8 header", &protocol.DeliveryResponse{Status: 500, Headers: []protocol.Header{{Name: "X-Err", Value: "\xe9chec"}}}, nil},
		{"connection refused", &protocol.DeliveryResponse{Error: "dial tcp 127.0.0.1:3000: connect: connection refused", ErrorCode: protocol.ErrCodeConnectionRefused, Duration: time.Millisecond}, nil},
		{"timeout", &protocol.DeliveryResponse{Error: "no answer within 10s", ErrorCode: protocol.ErrCodeTimeout}, nil},
		{"unknown error code", &protocol.DeliveryResponse{Error: "x", ErrorCode: "later_code"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stream bytes.Buffer
			if err := protocol.WriteResponse(&stream, tt.resp, tt.body); err != nil {
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

// TestDeliveryWireLayout pins the bytes SPEC.md, section 6, documents for
// a request and a response, field by field.
func TestDeliveryWireLayout(t *testing.T) {
	t.Parallel()
	req := &protocol.DeliveryRequest{
		EventID: "evt_1", DeliveryID: "dlv_1", Attempt: 1, Channel: "ch_7f3a", Method: "POST",
		Path: "/github", RawQuery: "debug=1",
		Headers:    []protocol.Header{{Name: "Content-Type", Value: "application/json"}, {Name: "X-Name", Value: "caf\xe9"}},
		BodyLength: 2, ReceivedAt: time.Date(2025, 3, 1, 12, 30, 45, 123456789, time.UTC), RemoteAddr: "140.82.115.1",
	}
	var buf bytes.Buffer
	if err := protocol.WriteRequest(&buf, req, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	want := fields().str("evt_1").str("dlv_1").uint(1).str("ch_7f3a").str("POST").str("/github").str("debug=1").
		uint(2).str("Content-Type").str("application/json").str("X-Name").str("caf\xe9").
		uint(2).sint(1740832245).uint(123456789).str("140.82.115.1").frame()
	want = append(want, "{}"...)
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("request on the wire:\n got % x\nwant % x", buf.Bytes(), want)
	}

	buf.Reset()
	resp := &protocol.DeliveryResponse{Status: 200, Headers: []protocol.Header{{Name: "X", Value: "\xff"}}, BodyLength: 2, Duration: 3250000}
	if err := protocol.WriteResponse(&buf, resp, []byte("ok")); err != nil {
		t.Fatal(err)
	}
	want = append(fields().uint(200).uint(1).str("X").str("\xff").uint(2).uint(3250000).str("").str("").frame(), "ok"...)
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("response on the wire:\n got % x\nwant % x", buf.Bytes(), want)
	}

	buf.Reset()
	resp = &protocol.DeliveryResponse{Error: "refused", ErrorCode: protocol.ErrCodeConnectionRefused, Duration: 5}
	if err := protocol.WriteResponse(&buf, resp, nil); err != nil {
		t.Fatal(err)
	}
	want = fields().uint(0).uint(0).uint(0).uint(5).str("refused").str("connection_refused").frame()
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("error response on the wire:\n got % x\nwant % x", buf.Bytes(), want)
	}
}

// wire builds frame fields by hand, as SPEC.md, section 6, describes them,
// for frames the encoder would refuse to write.
type wire []byte

func fields() wire { return nil }

func (w wire) uint(v uint64) wire { return binary.AppendUvarint(w, v) }
func (w wire) sint(v int64) wire  { return binary.AppendVarint(w, v) }
func (w wire) str(s string) wire  { return append(w.uint(uint64(len(s))), s...) }
func (w wire) raw(b ...byte) wire { return append(w, b...) }

// frame puts the length prefix in front.
func (w wire) frame() []byte { return append(binary.BigEndian.AppendUint32(nil, uint32(len(w))), w...) }

// rawRequest is a request frame's fields, written in order by wire.
type rawRequest struct {
	eventID, deliveryID       string
	attempt                   uint64
	channel, method, path, rq string
	headers                   []string // name, value, name, value, ...
	bodyLength                uint64
	seconds                   int64
	nanos                     uint64
	remoteAddr                string
}

func goodRawRequest() rawRequest {
	return rawRequest{eventID: "e", deliveryID: "d", attempt: 1, channel: "c", method: "GET", path: "/", seconds: 1735689600}
}

func (r rawRequest) fields() wire {
	w := fields().str(r.eventID).str(r.deliveryID).uint(r.attempt).str(r.channel).str(r.method).str(r.path).str(r.rq)
	w = w.uint(uint64(len(r.headers) / 2))
	for _, s := range r.headers {
		w = w.str(s)
	}
	return w.uint(r.bodyLength).sint(r.seconds).uint(r.nanos).str(r.remoteAddr)
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
	with := func(change func(*rawRequest)) []byte {
		r := goodRawRequest()
		change(&r)
		return r.fields().frame()
	}
	good := goodRawRequest().fields()
	tests := []struct {
		name    string
		in      []byte
		wantErr string
		decoded bool // the frame decodes; only a rule is broken
	}{
		{"valid", good.frame(), "", true},
		{"later fields ignored", goodRawRequest().fields().str("evt_failed").uint(7).str("priority: high").frame(), "", true},
		{"repeat_of with a control character", goodRawRequest().fields().str("evt\n").frame(), "repeat_of", true},
		{"non-UTF-8 bytes", with(func(r *rawRequest) { r.rq = "q=\xff"; r.headers = []string{"X", "caf\xe9"} }), "", true},
		{"bad method", with(func(r *rawRequest) { r.method = "G T" }), "bad method", true},
		{"query with CRLF", with(func(r *rawRequest) { r.rq = "a\r\nb" }), "query", true},
		{"header with LF", with(func(r *rawRequest) { r.headers = []string{"X", "a\nb"} }), "control character in header", true},
		{"attempt 0", with(func(r *rawRequest) { r.attempt = 0 }), "attempt", true},
		{"body length over the maximum", with(func(r *rawRequest) { r.bodyLength = protocol.MaxBodyLength + 1 }), "body length", true},
		{"attempt over 32 bits", with(func(r *rawRequest) { r.attempt = 1 << 31 }), "attempt", false},
		{"body length over 63 bits", with(func(r *rawRequest) { r.bodyLength = 1 << 63 }), "body length", false},
		{"time before year 1", with(func(r *rawRequest) { r.seconds = -62135596801 }), "received_at", false},
		{"time after year 9999", with(func(r *rawRequest) { r.seconds = 253402300800 }), "received_at", false},
		{"nanoseconds of a whole second", with(func(r *rawRequest) { r.nanos = 1e9 }), "received_at", false},
		{"string past the end", fields().str("e").uint(5).raw('d').frame(), "frame ends inside a field", false},
		{"cut inside a varint", fields().str("e").str("d").raw(0x80).frame(), "frame ends inside a field", false},
		{"varint over 64 bits", fields().str("e").str("d").raw(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02).frame(), "longer than 64 bits", false},
		{"more headers than bytes", fields().str("e").str("d").uint(1).str("c").str("GET").str("/").str("").uint(1 << 40).frame(), "frame ends inside a field", false},
		{"empty frame", frame(0, ""), "empty frame", false},
		{"too large", frame(protocol.MaxHeaderFrame+1, ""), "frame too large", false},
		{"truncated", frame(100, "\x01e"), "unexpected EOF", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req, err := protocol.ReadRequest(bytes.NewReader(tt.in))
			if (req != nil) != tt.decoded {
				t.Errorf("ReadRequest returned request %+v with %v; want one: %v", req, err, tt.decoded)
			}
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
		{"valid", fields().uint(200).uint(0).uint(3).uint(1).str("").str("").frame(), ""},
		{"later fields ignored", fields().uint(200).uint(0).uint(3).uint(1).str("").str("").str("x").frame(), ""},
		{"error with body", fields().uint(0).uint(0).uint(3).uint(0).str("x").str("timeout").frame(), "with a body"},
		{"no status", fields().uint(0).uint(0).uint(0).uint(0).str("").str("").frame(), "status 0"},
		{"status over 32 bits", fields().uint(1 << 32).frame(), "status"},
		{"duration over 63 bits", fields().uint(200).uint(0).uint(0).uint(1 << 63).str("").str("").frame(), "duration"},
		{"cut after the headers", fields().uint(200).uint(1).str("A").str("b").frame(), "frame ends inside a field"},
		{"too large", frame(protocol.MaxHeaderFrame+1, ""), "frame too large"},
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

// TestWriteRequestBodyMismatch checks that a body of another length than
// the frame announces is refused before anything is written.
func TestWriteRequestBodyMismatch(t *testing.T) {
	t.Parallel()
	for _, body := range [][]byte{nil, []byte("short"), []byte("longer than ten")} {
		var buf bytes.Buffer
		err := protocol.WriteRequest(&buf, validRequest(10), body)
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("body has %d bytes, the frame announces 10", len(body))) || buf.Len() != 0 {
			t.Errorf("WriteRequest with a %d-byte body = %v after writing %d bytes", len(body), err, buf.Len())
		}
	}
}

// countingWriter records the size of each Write.
type countingWriter struct {
	bytes.Buffer
	writes []int
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.writes = append(w.writes, len(p))
	return w.Buffer.Write(p)
}

// TestWriteRequestWrites checks how a delivery is cut into Writes: frame
// and body in one while they fit in one WebSocket message (with yamux's
// 12-byte header), else message-sized writes, the first starting with the
// frame.
func TestWriteRequestWrites(t *testing.T) {
	t.Parallel()
	const chunk = protocol.MaxMessage - 12
	frameLen := func(size int) int {
		b, err := protocol.AppendRequest(nil, validRequest(int64(size)))
		if err != nil {
			t.Fatal(err)
		}
		return len(b)
	}
	small := chunk - frameLen(0) // the largest body that goes in one write
	for _, size := range []int{0, 1, small, small + 1, 64 << 10, 1 << 20, 1<<20 + 1} {
		body := randomBytes(uint64(size), size)
		var w countingWriter
		if err := protocol.WriteRequest(&w, validRequest(int64(size)), body); err != nil {
			t.Fatal(err)
		}
		total := frameLen(size) + size
		if want := (total + chunk - 1) / chunk; len(w.writes) != want {
			t.Errorf("%d-byte body: %d writes, want %d", size, len(w.writes), want)
		}
		for i, n := range w.writes {
			if n > chunk || (n < chunk && i < len(w.writes)-1) {
				t.Errorf("%d-byte body: writes of %v bytes, want %d each but the last", size, w.writes, chunk)
				break
			}
		}
		if _, err := protocol.ReadRequest(&w.Buffer); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(w.Bytes(), body) {
			t.Errorf("%d-byte body arrived changed", size)
		}
	}
}
