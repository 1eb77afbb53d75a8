package protocol_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/protocol"
)

// validHello is a hello an agent of this version sends.
func validHello() *protocol.ControlMessage {
	return &protocol.ControlMessage{Type: protocol.TypeHello, Hello: &protocol.Hello{
		Version:      protocol.Version,
		AgentVersion: "1.4.0",
		Host:         "laptop.local",
		Concurrency:  8,
		Subscriptions: []protocol.Subscription{
			{Channel: "ch_1"},
			{Channel: "ch_2", Group: "ci", From: protocol.FromNow},
		},
	}}
}

func TestControlRoundTrip(t *testing.T) {
	t.Parallel()
	messages := []*protocol.ControlMessage{
		validHello(),
		{Type: protocol.TypeWelcome, Welcome: &protocol.Welcome{
			SessionID: "ses_1",
			Channels:  []protocol.ChannelInfo{{Channel: "ch_1", Group: "default:tok_1:laptop", URL: "https://relay.example/h/ch_1"}},
			Limits:    protocol.Limits{MaxBody: 25 << 20, MaxConcurrency: 8},
		}},
		{Type: protocol.TypeError, Error: &protocol.Error{Code: protocol.CodeChannelNotFound, Message: "no channel ch_9"}},
		{Type: protocol.TypeSubscribe, Subscribe: []protocol.Subscription{{Channel: "ch_3", From: protocol.FromResume}}},
		{Type: protocol.TypeUnsubscribe, Unsubscribe: []protocol.Subscription{{Channel: "ch_3"}}},
		{Type: protocol.TypeSubscribed, Subscribed: []protocol.ChannelInfo{{Channel: "ch_3", Group: "g", URL: "https://relay.example/h/ch_3"}}},
		{Type: protocol.TypeDrain, Drain: "relay restarting"},
		{Type: protocol.TypeDrain},
		{Type: protocol.TypeHealth, Health: &protocol.Health{Targets: []protocol.TargetHealth{
			{URL: "http://localhost:3000", Up: true, Since: time.Date(2025, 3, 1, 12, 30, 45, 0, time.UTC)},
			{URL: "http://localhost:4000", Error: "connection refused", Since: time.Date(2025, 3, 1, 12, 31, 2, 0, time.UTC)},
		}}},
		{Type: protocol.TypeWelcome, Welcome: &protocol.Welcome{SessionID: "ses_2", Node: "relay-b", Channels: []protocol.ChannelInfo{}}},
		{Type: protocol.TypeGroupState, GroupState: &protocol.GroupState{Channel: "ch_1", Group: "g", State: protocol.GroupPaused,
			RetryInMS: 4000, Error: "connection refused"}},
		{Type: protocol.TypeGroupState, GroupState: &protocol.GroupState{Channel: "ch_1", Group: "g", State: protocol.GroupFlowing}},
	}
	var stream bytes.Buffer
	for _, m := range messages {
		if err := protocol.WriteControl(&stream, m); err != nil {
			t.Fatalf("WriteControl(%s): %v", m.Type, err)
		}
	}
	for _, want := range messages {
		got, err := protocol.ReadControl(&stream)
		if err != nil {
			t.Fatalf("ReadControl(%s): %v", want.Type, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("ReadControl = %+v, want %+v", got, want)
		}
	}
	if _, err := protocol.ReadControl(&stream); err != io.EOF {
		t.Errorf("ReadControl at the end = %v, want io.EOF", err)
	}
}

// TestControlWireNames pins the JSON names SPEC.md documents.
func TestControlWireNames(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	if err := protocol.WriteControl(&buf, validHello()); err != nil {
		t.Fatal(err)
	}
	want := `{"type":"hello","hello":{"version":2,"agent_version":"1.4.0","host":"laptop.local","concurrency":8,` +
		`"subscriptions":[{"channel":"ch_1"},{"channel":"ch_2","group":"ci","from":"now"}]}}`
	if got := string(buf.Bytes()[4:]); got != want {
		t.Errorf("hello on the wire:\n got %s\nwant %s", got, want)
	}
}

func TestReadControlValidation(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("c", 129)
	tests := []struct {
		name    string
		json    string
		wantErr string // "" for a valid message
	}{
		// group_state
		{"group_state", `{"type":"group_state","group_state":{"channel":"c","group":"g","state":"paused","retry_in_ms":1000}}`, ""},
		{"group_state missing body", `{"type":"group_state"}`, "without group_state"},
		{"group_state bad state", `{"type":"group_state","group_state":{"channel":"c","group":"g","state":"sleepy"}}`, "neither"},
		{"group_state no channel", `{"type":"group_state","group_state":{"channel":"","group":"g","state":"flowing"}}`, "channel"},
		{"group_state negative retry", `{"type":"group_state","group_state":{"channel":"c","group":"g","state":"paused","retry_in_ms":-1}}`, "negative"},
		{"group_state long error", `{"type":"group_state","group_state":{"channel":"c","group":"g","state":"paused","error":"` + strings.Repeat("e", 1025) + `"}}`, "error"},
		// hello
		{"hello", `{"type":"hello","hello":{"version":2,"subscriptions":[{"channel":"c"}]}}`, ""},
		{"hello without subscriptions", `{"type":"hello","hello":{"version":2}}`, ""},
		{"hello missing body", `{"type":"hello"}`, "without hello"},
		{"hello null body", `{"type":"hello","hello":null}`, "without hello"},
		{"hello empty channel", `{"type":"hello","hello":{"version":2,"subscriptions":[{"channel":""}]}}`, "channel"},
		{"hello long channel", `{"type":"hello","hello":{"version":2,"subscriptions":[{"channel":"` + long + `"}]}}`, "channel"},
		{"hello channel with newline", `{"type":"hello","hello":{"version":2,"subscriptions":[{"channel":"a\nb"}]}}`, "channel"},
		{"hello long group", `{"type":"hello","hello":{"version":2,"subscriptions":[{"channel":"c","group":"` + long + `"}]}}`, "group"},
		{"hello bad from", `{"type":"hello","hello":{"version":2,"subscriptions":[{"channel":"c","from":"yesterday"}]}}`, "from"},
		{"hello negative concurrency", `{"type":"hello","hello":{"version":2,"concurrency":-1}}`, "concurrency"},
		{"hello long host", `{"type":"hello","hello":{"version":2,"host":"` + strings.Repeat("h", 256) + `"}}`, "host"},
		// A hello of another version is not checked further, so the relay
		// can answer with version_mismatch.
		{"hello newer version with unknown from", `{"type":"hello","hello":{"version":3,"subscriptions":[{"channel":"c","from":"2024-01-01"}]}}`, ""},
		{"hello of version 1 (an older agent)", `{"type":"hello","hello":{"version":1,"host":"` + strings.Repeat("h", 256) + `"}}`, ""},
		{"hello version 0", `{"type":"hello","hello":{"subscriptions":[{"channel":""}]}}`, ""},
		// welcome
		{"welcome", `{"type":"welcome","welcome":{"session_id":"s","channels":[],"limits":{"max_body":1,"max_concurrency":1}}}`, ""},
		{"welcome missing body", `{"type":"welcome"}`, "without welcome"},
		{"welcome negative limits", `{"type":"welcome","welcome":{"limits":{"max_body":-1}}}`, "negative"},
		// error
		{"error", `{"type":"error","error":{"code":"internal","message":"m"}}`, ""},
		{"error unknown code", `{"type":"error","error":{"code":"later_code"}}`, ""},
		{"error missing body", `{"type":"error"}`, "error code"},
		{"error without code", `{"type":"error","error":{"message":"m"}}`, "error code"},
		// subscribe, unsubscribe, subscribed
		{"subscribe", `{"type":"subscribe","subscribe":[{"channel":"c","from":"resume"}]}`, ""},
		{"subscribe empty", `{"type":"subscribe","subscribe":[]}`, "without subscriptions"},
		{"subscribe missing", `{"type":"subscribe"}`, "without subscriptions"},
		{"subscribe bad channel", `{"type":"subscribe","subscribe":[{"channel":""}]}`, "channel"},
		{"subscribe list in unsubscribe field", `{"type":"subscribe","unsubscribe":[{"channel":"c"}]}`, "without subscriptions"},
		{"unsubscribe", `{"type":"unsubscribe","unsubscribe":[{"channel":"c"}]}`, ""},
		{"unsubscribe missing", `{"type":"unsubscribe"}`, "without subscriptions"},
		{"unsubscribe bad from", `{"type":"unsubscribe","unsubscribe":[{"channel":"c","from":"x"}]}`, "from"},
		{"subscribed", `{"type":"subscribed","subscribed":[{"channel":"c","group":"g","url":"u"}]}`, ""},
		{"subscribed empty", `{"type":"subscribed","subscribed":[]}`, "without subscribed"},
		// drain
		{"drain", `{"type":"drain","drain":"bye"}`, ""},
		{"drain without reason", `{"type":"drain"}`, ""},
		// health
		{"health", `{"type":"health","health":{"targets":[{"url":"http://localhost:3000","up":false,"error":"refused","since":"2025-03-01T12:30:45Z"}]}}`, ""},
		{"health without targets", `{"type":"health","health":{"targets":[]}}`, ""},
		{"health missing body", `{"type":"health"}`, "without health"},
		{"health empty url", `{"type":"health","health":{"targets":[{"url":""}]}}`, "URL"},
		{"health url with newline", `{"type":"health","health":{"targets":[{"url":"http://a\nb"}]}}`, "URL"},
		{"health long error", `{"type":"health","health":{"targets":[{"url":"u","error":"` + strings.Repeat("e", 1025) + `"}]}}`, "error longer"},
		{"health too many targets", `{"type":"health","health":{"targets":[` + strings.Repeat(`{"url":"u"},`, 64) + `{"url":"u"}]}}`, "more than 64"},
		{"health up as string", `{"type":"health","health":{"targets":[{"url":"u","up":"yes"}]}}`, "decode frame"},
		// framing and types
		{"unknown type", `{"type":"notice","notice":"x"}`, "unknown control message type"},
		{"no type", `{"hello":{"version":2}}`, "unknown control message type"},
		{"null", `null`, "unknown control message type"},
		{"not an object", `[]`, "decode frame"},
		{"unknown fields ignored", `{"type":"drain","drain":"x","priority":7,"hello":{"later":true}}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, err := protocol.ReadControl(bytes.NewReader(rawFrame(tt.json)))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("ReadControl: %v", err)
				}
				if m == nil {
					t.Fatal("ReadControl returned no message")
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ReadControl error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestReadControlUnknownTypeKeepsStreamInStep(t *testing.T) {
	t.Parallel()
	var stream bytes.Buffer
	stream.Write(rawFrame(`{"type":"notice","notice":{"text":"maintenance at 02:00"}}`))
	if err := protocol.WriteControl(&stream, &protocol.ControlMessage{Type: protocol.TypeDrain, Drain: "bye"}); err != nil {
		t.Fatal(err)
	}
	if _, err := protocol.ReadControl(&stream); !errors.Is(err, protocol.ErrUnknownType) {
		t.Fatalf("ReadControl(notice) error = %v, want ErrUnknownType", err)
	}
	m, err := protocol.ReadControl(&stream)
	if err != nil || m.Type != protocol.TypeDrain || m.Drain != "bye" {
		t.Fatalf("ReadControl after an unknown type = %+v, %v; want the drain", m, err)
	}
}

// TestReadControlDropsOtherFields checks that a message carries only the
// field of its type, whatever else the sender put in.
func TestReadControlDropsOtherFields(t *testing.T) {
	t.Parallel()
	in := `{"type":"drain","drain":"x","hello":{"version":2},"subscribe":[{"channel":"c"}],"error":{"code":"internal"}}`
	m, err := protocol.ReadControl(bytes.NewReader(rawFrame(in)))
	if err != nil {
		t.Fatal(err)
	}
	want := &protocol.ControlMessage{Type: protocol.TypeDrain, Drain: "x"}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("ReadControl = %+v, want %+v", m, want)
	}
}

func TestReadControlTooLarge(t *testing.T) {
	t.Parallel()
	in := frame(protocol.MaxControlFrame+1, `{"type":"drain"}`)
	if _, err := protocol.ReadControl(bytes.NewReader(in)); !errors.Is(err, protocol.ErrFrameTooLarge) {
		t.Fatalf("ReadControl error = %v, want ErrFrameTooLarge", err)
	}
}

func TestWriteControlRefusesInvalid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		m    *protocol.ControlMessage
	}{
		{"unknown type", &protocol.ControlMessage{Type: "notice"}},
		{"hello without body", &protocol.ControlMessage{Type: protocol.TypeHello}},
		{"error without code", &protocol.ControlMessage{Type: protocol.TypeError, Error: &protocol.Error{Message: "m"}}},
		{"empty subscribe", &protocol.ControlMessage{Type: protocol.TypeSubscribe}},
		{"too large", &protocol.ControlMessage{Type: protocol.TypeDrain, Drain: strings.Repeat("x", protocol.MaxControlFrame)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			if err := protocol.WriteControl(&buf, tt.m); err == nil {
				t.Fatal("WriteControl succeeded")
			}
			if buf.Len() != 0 {
				t.Errorf("wrote %d bytes of a refused message", buf.Len())
			}
		})
	}
}

func TestSubscriptionValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		s     protocol.Subscription
		valid bool
	}{
		{protocol.Subscription{Channel: "c"}, true},
		{protocol.Subscription{Channel: strings.Repeat("c", 128), Group: strings.Repeat("g", 128), From: protocol.FromNow}, true},
		{protocol.Subscription{Channel: "c", From: protocol.FromResume}, true},
		{protocol.Subscription{}, false},
		{protocol.Subscription{Channel: strings.Repeat("c", 129)}, false},
		{protocol.Subscription{Channel: "c", Group: strings.Repeat("g", 129)}, false},
		{protocol.Subscription{Channel: "c", Group: "a\tb"}, false},
		{protocol.Subscription{Channel: "c", From: "Now"}, false},
	}
	for _, tt := range tests {
		if err := tt.s.Validate(); (err == nil) != tt.valid {
			t.Errorf("%+v.Validate() = %v, want valid=%v", tt.s, err, tt.valid)
		}
	}
}

func TestVersionError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		agentVersion int
		want         []string
	}{
		{0, []string{"agent speaks protocol version 0", "relay speaks 2", "upgrade hookrelay on this machine (the agent)"}},
		{1, []string{"agent speaks protocol version 1, relay speaks 2: upgrade hookrelay on this machine (the agent) to a release that speaks version 2"}},
		{protocol.Version + 1, []string{"agent speaks protocol version 3", "relay speaks 2", "upgrade the relay"}},
	}
	for _, tt := range tests {
		e := protocol.VersionError(tt.agentVersion)
		if e.Code != protocol.CodeVersionMismatch {
			t.Errorf("VersionError(%d).Code = %q", tt.agentVersion, e.Code)
		}
		for _, w := range tt.want {
			if !strings.Contains(e.Message, w) {
				t.Errorf("VersionError(%d).Message = %q, want it to contain %q", tt.agentVersion, e.Message, w)
			}
		}
		if got := e.Error(); got != e.Code+": "+e.Message {
			t.Errorf("Error() = %q", got)
		}
		// It travels as a valid error message.
		var buf bytes.Buffer
		if err := protocol.WriteControl(&buf, &protocol.ControlMessage{Type: protocol.TypeError, Error: e}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestDefaultGroup(t *testing.T) {
	t.Parallel()
	if got, want := protocol.DefaultGroup("tok_1", "laptop"), "default:tok_1:laptop"; got != want {
		t.Errorf("DefaultGroup = %q, want %q", got, want)
	}
}

// TestErrorIsAnError checks that *Error can be returned and matched as a Go
// error by the agent.
func TestErrorIsAnError(t *testing.T) {
	t.Parallel()
	var err error = &protocol.Error{Code: protocol.CodeRevoked, Message: "token revoked"}
	var pe *protocol.Error
	if !errors.As(err, &pe) || pe.Code != protocol.CodeRevoked {
		t.Fatalf("errors.As = %v", pe)
	}
	if b, _ := json.Marshal(pe); string(b) != `{"code":"token_revoked","message":"token revoked"}` {
		t.Errorf("error JSON = %s", b)
	}
}
