package protocol_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/protocol"
)

// The fuzz targets feed a peer's bytes to the decoders. Each checks that the
// decoder does not panic, refuses an oversized length prefix before reading
// on (ErrFrameTooLarge), and that whatever it accepts encodes and decodes
// again to the same value and the same bytes. Seeds are here and under
// testdata/fuzz/<name>/.

// oversized reports whether in announces a frame longer than limit.
func oversized(in []byte, limit int) bool {
	return len(in) >= 4 && uint64(binary.BigEndian.Uint32(in)) > uint64(limit)
}

func checkLimit(t *testing.T, in []byte, limit int, err error) {
	t.Helper()
	if oversized(in, limit) && !errors.Is(err, protocol.ErrFrameTooLarge) {
		t.Fatalf("a %d-byte prefix over the limit %d gave %v, want ErrFrameTooLarge", binary.BigEndian.Uint32(in), limit, err)
	}
}

// seedFrames are frames every target starts from.
func seedFrames(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 0})
	f.Add(frame(0, ""))
	f.Add(frame(0xFFFFFFFF, "{}"))
	f.Add(frame(protocol.MaxHeaderFrame+1, `{"a":1}`))
	f.Add(frame(100, `{"type":"hello"`))
	f.Add(rawFrame(`null`))
	f.Add(rawFrame(`{"a":[1,2,{"b":null}],"c":"\u00e9\ud83d\ude00","d":-0.5e3}`))
}

func FuzzReadFrame(f *testing.F) {
	seedFrames(f)
	const limit = 512 // small, so seeds at the limit stay small
	f.Fuzz(func(t *testing.T, in []byte) {
		var v any
		err := protocol.ReadFrame(bytes.NewReader(in), &v, limit)
		checkLimit(t, in, limit, err)
		if err != nil {
			return
		}
		var buf bytes.Buffer
		if err := protocol.WriteFrame(&buf, v, limit*2); err != nil {
			t.Fatalf("WriteFrame of a decoded value: %v", err)
		}
		first := bytes.Clone(buf.Bytes())
		var again any
		if err := protocol.ReadFrame(&buf, &again, limit*2); err != nil {
			t.Fatalf("ReadFrame of a re-encoded frame: %v", err)
		}
		if !reflect.DeepEqual(v, again) {
			t.Fatalf("decoded %#v, after a round trip %#v", v, again)
		}
		if err := protocol.WriteFrame(&buf, again, limit*2); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(first, buf.Bytes()) {
			t.Fatalf("re-encoding is not stable:\n%q\n%q", first, buf.Bytes())
		}
	})
}

func FuzzReadControl(f *testing.F) {
	seedFrames(f)
	for _, m := range []*protocol.ControlMessage{
		validHello(),
		{Type: protocol.TypeHello, Hello: &protocol.Hello{Version: protocol.Version + 1, Subscriptions: []protocol.Subscription{{Channel: "c", From: "2024-01-01"}}}},
		{Type: protocol.TypeWelcome, Welcome: &protocol.Welcome{SessionID: "s", Channels: []protocol.ChannelInfo{{Channel: "c", Group: "g", URL: "u"}}, Limits: protocol.Limits{MaxBody: 1, MaxConcurrency: 2}}},
		{Type: protocol.TypeHello, Hello: &protocol.Hello{Version: 1, Host: "an agent of protocol version 1"}},
		{Type: protocol.TypeError, Error: protocol.VersionError(0)},
		{Type: protocol.TypeSubscribe, Subscribe: []protocol.Subscription{{Channel: "c", Group: "g", From: protocol.FromNow}}},
		{Type: protocol.TypeUnsubscribe, Unsubscribe: []protocol.Subscription{{Channel: "c"}}},
		{Type: protocol.TypeSubscribed, Subscribed: []protocol.ChannelInfo{{Channel: "c"}}},
		{Type: protocol.TypeDrain, Drain: "bye"},
		{Type: protocol.TypeHealth, Health: &protocol.Health{Targets: []protocol.TargetHealth{{URL: "http://localhost:3000", Error: "refused"}}}},
	} {
		var buf bytes.Buffer
		if err := protocol.WriteControl(&buf, m); err != nil {
			f.Fatal(err)
		}
		f.Add(buf.Bytes())
	}
	f.Add(rawFrame(`{"type":"health","health":{"targets":[{"url":"u","up":true,"since":"2025-03-01T12:30:45Z"}]}}`))
	f.Add(rawFrame(`{"type":"subscribe","subscribe":[]}`))
	f.Add(rawFrame(`{"type":"notice","x":1}`))
	f.Add(rawFrame(`{"TYPE":"drain","Drain":"case-insensitive keys"}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		m, err := protocol.ReadControl(bytes.NewReader(in))
		checkLimit(t, in, protocol.MaxControlFrame, err)
		if err != nil {
			return
		}
		var buf bytes.Buffer
		if err := protocol.WriteControl(&buf, m); err != nil {
			t.Fatalf("WriteControl of an accepted message: %v", err)
		}
		first := bytes.Clone(buf.Bytes())
		again, err := protocol.ReadControl(&buf)
		if err != nil {
			t.Fatalf("ReadControl of a re-encoded message: %v", err)
		}
		if !reflect.DeepEqual(m, again) {
			t.Fatalf("decoded %#v, after a round trip %#v", m, again)
		}
		if err := protocol.WriteControl(&buf, again); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(first, buf.Bytes()) {
			t.Fatalf("re-encoding is not stable:\n%q\n%q", first, buf.Bytes())
		}
	})
}

func FuzzReadRequest(f *testing.F) {
	seedFrames(f)
	// Seeds stay small: the fuzzer's minimizer is quadratic in input length.
	short := func(bodyLength int64) *protocol.DeliveryRequest {
		r := validRequest(bodyLength)
		r.Headers = r.Headers[:3]
		return r
	}
	for _, req := range []*protocol.DeliveryRequest{short(0), short(12), func() *protocol.DeliveryRequest {
		r := validRequest(0)
		r.RawQuery = "q=\xff"
		r.Headers = []protocol.Header{{Name: "X", Value: "caf\xe9"}, {Name: "x", Value: "2"}, {Name: "X", Value: "\x80"}}
		return r
	}()} {
		b, err := protocol.AppendRequest(nil, req)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(goodRawRequest().fields().str("a later field").frame())
	f.Fuzz(func(t *testing.T, in []byte) {
		req, err := protocol.ReadRequest(bytes.NewReader(in))
		checkLimit(t, in, protocol.MaxHeaderFrame, err)
		if err != nil {
			if req != nil && req.Validate() == nil {
				t.Fatalf("ReadRequest refused a request that passes Validate: %v", err)
			}
			return
		}
		first, err := protocol.AppendRequest(nil, req)
		if err != nil {
			t.Fatalf("AppendRequest of an accepted request: %v", err)
		}
		again, err := protocol.ReadRequest(bytes.NewReader(first))
		if err != nil {
			t.Fatalf("ReadRequest of a re-encoded request: %v", err)
		}
		if !sameRequest(req, again) {
			t.Fatalf("decoded %#v, after a round trip %#v", req, again)
		}
		if second, _ := protocol.AppendRequest(nil, again); !bytes.Equal(first, second) {
			t.Fatalf("re-encoding is not stable:\n%q\n%q", first, second)
		}
	})
}

// sameRequest compares ReceivedAt as an instant (a zone comes back as UTC)
// and the rest field by field.
func sameRequest(a, b *protocol.DeliveryRequest) bool {
	if !a.ReceivedAt.Equal(b.ReceivedAt) {
		return false
	}
	x, y := *a, *b
	x.ReceivedAt, y.ReceivedAt = time.Time{}, time.Time{}
	return reflect.DeepEqual(x, y)
}

func FuzzReadResponse(f *testing.F) {
	seedFrames(f)
	for _, resp := range []*protocol.DeliveryResponse{
		{Status: 200, Headers: []protocol.Header{{Name: "Content-Type", Value: "text/plain"}}, BodyLength: 5, Duration: time.Second},
		{Status: 204, Headers: []protocol.Header{{Name: "X", Value: "\xff"}}},
		{Error: "refused", ErrorCode: protocol.ErrCodeConnectionRefused},
	} {
		b, err := protocol.AppendResponse(nil, resp)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		resp, err := protocol.ReadResponse(bytes.NewReader(in))
		checkLimit(t, in, protocol.MaxHeaderFrame, err)
		if err != nil {
			return
		}
		first, err := protocol.AppendResponse(nil, resp)
		if err != nil {
			t.Fatalf("AppendResponse of an accepted response: %v", err)
		}
		again, err := protocol.ReadResponse(bytes.NewReader(first))
		if err != nil {
			t.Fatalf("ReadResponse of a re-encoded response: %v", err)
		}
		if !reflect.DeepEqual(resp, again) {
			t.Fatalf("decoded %#v, after a round trip %#v", resp, again)
		}
		if second, _ := protocol.AppendResponse(nil, again); !bytes.Equal(first, second) {
			t.Fatalf("re-encoding is not stable:\n%q\n%q", first, second)
		}
	})
}
