package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/protocol"
)

func TestSavedEventJSON(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name     string
		body     []byte
		encoding string
	}{
		{"text", []byte(`{"msg":"héllo <b>&</b>\n"}`), BodyUTF8},
		{"binary", []byte{0xff, 0xfe, 0, 1, 'a'}, BodyBase64},
		{"empty", nil, BodyUTF8},
	} {
		ev := SavedEvent{EventID: "e1", Method: "POST", Path: "/", Body: tt.body, RawQuery: "q=\xff",
			Headers: []SavedHeader{{"X-A", "1"}, {"x-a", "2"}, {"X-Sig", "a\xffb"}}, ReceivedAt: time.Unix(1, 0).UTC()}
		data, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		var fields map[string]any
		if err := json.Unmarshal(data, &fields); err != nil {
			t.Fatal(err)
		}
		if fields["body_encoding"] != tt.encoding {
			t.Errorf("%s: body_encoding %v, want %s", tt.name, fields["body_encoding"], tt.encoding)
		}
		if tt.encoding == BodyUTF8 && fields["body"] != string(tt.body) {
			t.Errorf("%s: body %q, want the text itself", tt.name, fields["body"])
		}
		if !bytes.Contains(data, []byte(`{"name":"X-Sig","value":"a\ufffdb","value_base64":"Yf9i"}`)) ||
			!bytes.Contains(data, []byte(`"raw_query_base64":"cT3/"`)) || bytes.Contains(data, []byte(`"value":"1","value_base64"`)) {
			t.Errorf("%s: JSON %s, want value_base64 and raw_query_base64 for the bytes that are not UTF-8 only", tt.name, data)
		}
		var back SavedEvent
		if err := json.Unmarshal(data, &back); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(back.Body, tt.body) || !slices.Equal(back.Headers, ev.Headers) || !back.ReceivedAt.Equal(ev.ReceivedAt) ||
			back.RawQuery != ev.RawQuery {
			t.Errorf("%s: round trip %+v, want %+v", tt.name, back, ev)
		}
	}
}

// TestSaveAndReplay saves live deliveries, reads them back and replays them
// to the same raw target: the replayed request is the live one, byte for
// byte.
func TestSaveAndReplay(t *testing.T) {
	t.Parallel()
	target := newRawTarget(t)
	relay := newFakeRelay(t, nil)
	cfg := testConfig(t, relay, target.url()+"/webhooks")
	cfg.SaveDir = filepath.Join(t.TempDir(), "events")
	agent := startAgent(t, cfg)
	agent.waitConnected(t)
	rs := relay.next(t)

	binary := make([]byte, 64<<10)
	rand.Read(binary)
	events := []struct {
		req  *protocol.DeliveryRequest
		body []byte
	}{
		{newRequest("evt-text", "POST", "/github",
			protocol.Header{Name: "Content-Type", Value: "application/json"},
			protocol.Header{Name: "X-GitHub-Event", Value: "push"},
			protocol.Header{Name: "X-Hub-Signature-256", Value: "sha256=0123"},
			protocol.Header{Name: "x-dup", Value: "1"},
			protocol.Header{Name: "x-dup", Value: "2"},
			protocol.Header{Name: "X-Sig", Value: "a\xffb"}), // not UTF-8: kept byte for byte
			[]byte(`{"zen":"Keep it <logically> awesome & é"}`)},
		{newRequest("evt/bin:2", "PUT", "/upload/a%2Fb",
			protocol.Header{Name: "Content-Type", Value: "application/octet-stream"}),
			binary},
	}
	events[1].req.RawQuery = "part=1&x=%20&raw=\xfe"
	events[1].req.ReceivedAt = events[1].req.ReceivedAt.Add(time.Second)

	var live []rawRequest
	for _, ev := range events {
		if resp, _ := rs.mustDeliver(t, ev.req, ev.body); resp.Status != 200 {
			t.Fatalf("live delivery %s: %+v", ev.req.EventID, resp)
		}
		live = append(live, target.next(t))
	}

	files, err := filepath.Glob(filepath.Join(cfg.SaveDir, "*"))
	if err != nil {
		t.Fatal(err)
	}
	wantNames := []string{"20261126T104102.000000000Z-evt-text.json", "20261126T104103.000000000Z-evt_bin_2.json"}
	if len(files) != 2 || filepath.Base(files[0]) != wantNames[0] || filepath.Base(files[1]) != wantNames[1] {
		t.Fatalf("saved files %q, want %q", files, wantNames)
	}
	for i, ev := range events {
		if info, err := os.Stat(files[i]); err != nil || info.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, %v; want 0600", files[i], info.Mode(), err)
		}
		saved, err := ReadSaved(files[i])
		if err != nil {
			t.Fatal(err)
		}
		if saved.EventID != ev.req.EventID || saved.Channel != "ch1" || saved.Method != ev.req.Method ||
			saved.Path != ev.req.Path || saved.RawQuery != ev.req.RawQuery || saved.Attempt != 1 ||
			!saved.ReceivedAt.Equal(ev.req.ReceivedAt) || saved.RemoteAddr != ev.req.RemoteAddr ||
			!bytes.Equal(saved.Body, ev.body) || len(saved.Headers) != len(ev.req.Headers) {
			t.Errorf("saved event %s differs: %+v", ev.req.EventID, saved)
		}
		for j, h := range ev.req.Headers {
			if saved.Headers[j] != (SavedHeader{Name: h.Name, Value: h.Value}) {
				t.Errorf("saved header %d: %+v, want %+v", j, saved.Headers[j], h)
			}
		}

		resp, err := Replay(context.Background(), saved, target.url()+"/webhooks", ReplayOptions{Attempt: 1})
		if err != nil || resp.Status != 200 || string(resp.Body) != "ok" {
			t.Fatalf("replay %s: %+v, %v", saved.EventID, resp, err)
		}
		replayed := target.next(t)
		if replayed.line != live[i].line || !slices.Equal(replayed.headers, live[i].headers) ||
			!bytes.Equal(replayed.body, live[i].body) {
			t.Errorf("replay of %s differs from the live delivery:\nlive   %q %q\nreplay %q %q",
				saved.EventID, live[i].line, live[i].headers, replayed.line, replayed.headers)
		}
	}
}

func TestReplayDefaultsAndErrors(t *testing.T) {
	t.Parallel()
	target := newRawTarget(t)
	saved := &SavedEvent{EventID: "e1", Method: "POST", Path: "/", Attempt: 4, Body: []byte("x")}
	if _, err := Replay(context.Background(), saved, target.url(), ReplayOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := target.next(t); !slices.Contains(got.headers, HeaderAttempt+": 5") {
		t.Errorf("headers %q: want attempt 5 after a saved attempt 4", got.headers)
	}

	if _, err := Replay(context.Background(), saved, "localhost:3000", ReplayOptions{}); err == nil {
		t.Error("Replay accepted a target without scheme")
	}
	bad := *saved
	bad.Method = "BAD METHOD"
	if _, err := Replay(context.Background(), &bad, target.url(), ReplayOptions{}); err == nil {
		t.Error("Replay accepted a bad method")
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + ln.Addr().String()
	ln.Close()
	_, err = Replay(context.Background(), saved, refused, ReplayOptions{})
	var te *TargetError
	if !errors.As(err, &te) || te.Code != protocol.ErrCodeConnectionRefused {
		t.Errorf("Replay to a closed port: %v, want %s", err, protocol.ErrCodeConnectionRefused)
	}
}

func TestReadSavedRejects(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for name, content := range map[string]string{
		"not-json.json":   "{",
		"encoding.json":   `{"event_id":"e","method":"POST","path":"/","headers":[],"body":"x","body_encoding":"rot13"}`,
		"base64.json":     `{"event_id":"e","method":"POST","path":"/","headers":[],"body":"!!","body_encoding":"base64"}`,
		"bad-path.json":   `{"event_id":"e","method":"POST","path":"x","headers":[],"body":"","body_encoding":"utf8"}`,
		"bad-header.json": `{"event_id":"e","method":"POST","path":"/","headers":[{"name":"a b","value":"1"}],"body":""}`,
	} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadSaved(p); err == nil {
			t.Errorf("ReadSaved accepted %s", name)
		}
	}
}
