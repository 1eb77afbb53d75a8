package client

import (
	"bufio"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/protocol"
)

func TestFormatDelivery(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 26, 10, 41, 2, 0, time.UTC)
	tests := []struct {
		line        DeliveryLine
		withChannel bool
		want        string
	}{
		{DeliveryLine{Time: at, Method: "POST", Path: "/github", EventType: "push", Status: 200, DurationMS: 12.3},
			false, "2026-11-26T10:41:02Z  POST /github  push  200  12ms"},
		{DeliveryLine{Time: at, Channel: "ch2", Method: "GET", Path: "/", Query: "a=1", Status: 404, DurationMS: 1500, Attempt: 2},
			true, "2026-11-26T10:41:02Z  ch2  GET /?a=1  -  404  1.5s  (attempt 2)"},
		{DeliveryLine{Time: at, Method: "POST", Path: "/", DurationMS: 0.25, Attempt: 1,
			Error: "connection refused: dial tcp 127.0.0.1:3000", ErrorCode: protocol.ErrCodeConnectionRefused},
			false, "2026-11-26T10:41:02Z  POST /  -  failed  250µs  connection refused: dial tcp 127.0.0.1:3000"},
	}
	for _, tt := range tests {
		if got := formatDelivery(&tt.line, tt.withChannel); got != tt.want {
			t.Errorf("formatDelivery:\n got %q\nwant %q", got, tt.want)
		}
	}
}

func TestJSONLines(t *testing.T) {
	t.Parallel()
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(target.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + ln.Addr().String()
	ln.Close()

	for _, tt := range []struct {
		name, target string
		status       int
		errCode      string
	}{
		{"ok", target.URL, http.StatusNoContent, ""},
		{"failed", refused, 0, protocol.ErrCodeConnectionRefused},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			relay := newFakeRelay(t, nil)
			cfg := testConfig(t, relay, tt.target)
			cfg.JSON = true
			out := cfg.Out.(*syncBuffer)
			agent := startAgent(t, cfg)
			agent.waitConnected(t)
			req := newRequest("evt-json", "POST", "/github", protocol.Header{Name: "X-GitHub-Event", Value: "push"})
			req.RawQuery = "x=1"
			relay.next(t).mustDeliver(t, req, []byte("{}"))
			if err := agent.stop(t); err != nil {
				t.Fatal(err)
			}

			var states []string
			var deliveries, targets []map[string]any
			sc := bufio.NewScanner(strings.NewReader(out.String()))
			for sc.Scan() {
				var m map[string]any
				if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
					t.Fatalf("line %q is not JSON: %v", sc.Text(), err)
				}
				switch m["type"] {
				case "state":
					states = append(states, m["state"].(string))
				case "delivery":
					deliveries = append(deliveries, m)
				case "target":
					targets = append(targets, m)
				default:
					t.Errorf("line of unknown type: %q", sc.Text())
				}
			}
			if strings.Join(states, ",") != "connecting,connected,stopped" {
				t.Errorf("states %q", states)
			}
			if len(deliveries) != 1 {
				t.Fatalf("%d delivery lines, want 1:\n%s", len(deliveries), out)
			}
			// The check at start says whether the target is up; the
			// delivery agrees with it, so there is one target line.
			if len(targets) != 1 || targets[0]["target"] != tt.target || targets[0]["up"] != (tt.errCode == "") {
				t.Errorf("target lines %v, want one saying up=%v", targets, tt.errCode == "")
			}
			d := deliveries[0]
			for _, field := range []string{"time", "event_id", "attempt", "method", "path", "event_type", "status", "duration_ms", "error"} {
				if _, ok := d[field]; !ok {
					t.Errorf("delivery line lacks %q: %v", field, d)
				}
			}
			if d["event_id"] != "evt-json" || d["method"] != "POST" || d["path"] != "/github" || d["query"] != "x=1" ||
				d["event_type"] != "push" || d["status"] != float64(tt.status) || d["attempt"] != float64(1) {
				t.Errorf("delivery line %v", d)
			}
			if (d["error"] != "") != (tt.errCode != "") || (tt.errCode != "" && d["error_code"] != tt.errCode) {
				t.Errorf("delivery line error %q code %v, want code %q", d["error"], d["error_code"], tt.errCode)
			}
			if _, err := time.Parse(time.RFC3339Nano, d["time"].(string)); err != nil {
				t.Errorf("time: %v", err)
			}
		})
	}
}

func TestTextStateLines(t *testing.T) {
	t.Parallel()
	relay := newFakeRelay(t, nil)
	cfg := testConfig(t, relay, "http://127.0.0.1:1/")
	out := cfg.Out.(*syncBuffer)
	agent := startAgent(t, cfg)
	agent.waitConnected(t)
	relay.next(t).sess.Close()
	relay.next(t)
	waitFor(t, "the second connected line", func() bool { return strings.Count(out.String(), "connected to ") == 2 })
	if err := agent.stop(t); err != nil {
		t.Fatal(err)
	}
	var lines []string
	targetLine := ""
	for l := range strings.SplitSeq(strings.TrimSpace(out.String()), "\n") {
		if strings.HasPrefix(l, "target ") {
			targetLine = l
		} else {
			lines = append(lines, l)
		}
	}
	if !strings.HasPrefix(targetLine, "target http://127.0.0.1:1/ is DOWN: connection refused") {
		t.Errorf("no line says the target is down:\n%s", out)
	}
	if len(lines) != 5 ||
		lines[0] != "connecting to "+relay.srv.URL ||
		!strings.HasPrefix(lines[1], "connected to "+relay.srv.URL+": channel ch1 (group default)") ||
		!strings.HasPrefix(lines[2], "reconnecting in ") || !strings.Contains(lines[2], "(attempt 1): ") ||
		!strings.HasPrefix(lines[3], "connected to ") ||
		lines[4] != "stopped" {
		t.Errorf("output:\n%s", out)
	}
}

// TestGroupStateLines: what the relay says about a paused group (SPEC.md
// 5.8) is printed, as text and as JSON lines.
func TestGroupStateLines(t *testing.T) {
	t.Parallel()
	paused := GroupStatus{Channel: "ch1", Group: "g", Paused: true, NextTry: time.Now().Add(4200 * time.Millisecond),
		Err: "dial tcp 127.0.0.1:3000: connect: connection refused"}
	flowing := GroupStatus{Channel: "ch1", Group: "g"}

	var text strings.Builder
	p := newPrinter(&text, false, false, nil)
	p.groupState(paused)
	p.groupState(flowing)
	lines := strings.Split(strings.TrimSpace(text.String()), "\n")
	if len(lines) != 2 ||
		!strings.HasPrefix(lines[0], "channel ch1 (group g): target down, next try in 4s") ||
		!strings.HasSuffix(lines[0], ": dial tcp 127.0.0.1:3000: connect: connection refused") ||
		!strings.Contains(lines[1], "the target answers again") {
		t.Errorf("text lines:\n%s", text.String())
	}

	var js strings.Builder
	p = newPrinter(&js, true, false, nil)
	p.groupState(paused)
	p.groupState(flowing)
	var got []StateLine
	for l := range strings.SplitSeq(strings.TrimSpace(js.String()), "\n") {
		var s StateLine
		if err := json.Unmarshal([]byte(l), &s); err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		got = append(got, s)
	}
	if len(got) != 2 || got[0].State != "group_paused" || got[0].Channel != "ch1" || got[0].Group != "g" ||
		got[0].RetryInMS <= 3000 || got[0].RetryInMS > 4200 || got[0].Error != paused.Err ||
		got[1].State != "group_flowing" || got[1].RetryInMS != 0 {
		t.Errorf("JSON lines:\n%s", js.String())
	}
}
