package client

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/protocol"
)

// TestTargetHealthReachesRelay starts an agent whose target is down: it
// says so at start, in its output and to the relay, answers deliveries
// connection_refused, and notices when the app starts listening.
func TestTargetHealthReachesRelay(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	target := "http://" + addr

	relay := newFakeRelay(t, nil)
	cfg := testConfig(t, relay, target)
	cfg.TargetCheckInterval = 20 * time.Millisecond
	var changes []TargetStatus
	changed := make(chan struct{}, 16)
	cfg.OnTarget = func(st TargetStatus) {
		changes = append(changes, st) // OnTarget calls come one at a time here: one target
		changed <- struct{}{}
	}
	out := cfg.Out.(*syncBuffer)
	agent := startAgent(t, cfg)
	agent.waitConnected(t)
	rs := relay.next(t)

	h := waitHealth(t, relay, func(h *protocol.Health) bool { return len(h.Targets) == 1 })
	if th := h.Targets[0]; th.URL != target || th.Up || !strings.Contains(th.Error, "connection refused") || th.Since.IsZero() {
		t.Fatalf("health at start: %+v", th)
	}
	waitFor(t, "the down line", func() bool { return strings.Contains(out.String(), "target "+target+" is DOWN: connection refused") })
	if st := agent.Targets(); len(st) != 1 || st[0].Up || !st[0].Known {
		t.Fatalf("Targets() = %+v", st)
	}
	if resp, _ := rs.mustDeliver(t, newRequest("evt-down", "POST", "/"), []byte("x")); resp.ErrorCode != protocol.ErrCodeConnectionRefused {
		t.Fatalf("delivery to a down target: %+v", resp)
	}

	// The app starts: the next check finds it and the relay is told.
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("the port was taken meanwhile: %v", err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "up")
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	h = waitHealth(t, relay, func(h *protocol.Health) bool { return len(h.Targets) == 1 && h.Targets[0].Up })
	if h.Targets[0].Error != "" {
		t.Errorf("an up target with an error: %+v", h.Targets[0])
	}
	waitFor(t, "the up line", func() bool { return strings.Contains(out.String(), "target "+target+" is up") })
	if resp, body := rs.mustDeliver(t, newRequest("evt-up", "POST", "/"), []byte("x")); resp.Status != 200 || string(body) != "up" {
		t.Fatalf("delivery once the target is up: %+v %q", resp, body)
	}
	if err := agent.stop(t); err != nil {
		t.Fatal(err)
	}
	if len(changes) != 2 || changes[0].Up || !changes[1].Up {
		t.Errorf("OnTarget got %+v, want down then up", changes)
	}
}

func waitHealth(t *testing.T, relay *fakeRelay, ok func(*protocol.Health) bool) *protocol.Health {
	t.Helper()
	timeout := time.After(testTimeout)
	for {
		select {
		case h := <-relay.health:
			if ok(h) {
				return h
			}
		case <-timeout:
			t.Fatal("no such health message reached the relay")
			return nil
		}
	}
}
