package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/client"
	"github.com/hookrelay/hookrelay/server"
)

// bodyCounter is a target that counts each distinct body it received.
type bodyCounter struct {
	mu    sync.Mutex
	seen  map[string]int
	block chan struct{} // while non-nil, requests with body "block" wait on it
	hit   chan struct{}
}

func newBodyCounter(t testing.TB) (*bodyCounter, *httptest.Server) {
	bc := &bodyCounter{seen: map[string]int{}, hit: make(chan struct{}, 100)}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		bc.mu.Lock()
		bc.seen[string(b)]++
		block := bc.block
		bc.mu.Unlock()
		select {
		case bc.hit <- struct{}{}:
		default:
		}
		if block != nil && string(b) == "block" {
			select {
			case <-block:
			case <-r.Context().Done():
			}
		}
	}))
	t.Cleanup(ts.Close)
	return bc, ts
}

func (bc *bodyCounter) count(body string) int {
	bc.mu.Lock()
	defer bc.mu.Unlock()
	return bc.seen[body]
}

func TestAgentKilledAndRelayRestartedThenWebhooksFlow(t *testing.T) {
	t.Parallel()
	bc, target := newBodyCounter(t)
	unblock := make(chan struct{})
	bc.block = unblock
	defer func() {
		select {
		case <-unblock:
		default:
			close(unblock)
		}
	}()
	relay := startRelay(t, func(c *server.Config) { c.ResponseTimeout = time.Second })
	ch := relay.channel(t, client.CreateChannel{})

	// Agent 1 takes a delivery and is killed while the app is still busy.
	first := relay.startAgent(t, ch, target.URL, func(c *client.Config) { c.ShutdownGrace = time.Millisecond })
	go func() {
		resp, err := http.Post(relay.ingress(ch), "text/plain", strings.NewReader("block"))
		if err == nil {
			resp.Body.Close()
		}
	}()
	<-bc.hit
	first.Stop()

	// A second agent of the same group (same token and host) starts; then the
	// relay restarts under it.
	second := relay.startAgent(t, ch, target.URL)
	close(unblock)
	relay.Restart()
	waitFor(t, 15*time.Second, "agent reconnected after the relay restart", func() bool {
		return relay.agentCount(t, ch) == 1
	})
	for i := range 5 {
		resp, body := post(t, relay.ingress(ch), "text/plain", []byte(fmt.Sprintf("after-%d", i)))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("webhook after restart: %d %s", resp.StatusCode, body)
		}
	}
	// The event in flight when agent 1 died is delivered again.
	waitFor(t, 15*time.Second, "the interrupted event redelivered", func() bool { return bc.count("block") >= 2 })
	for i := range 5 {
		if n := bc.count(fmt.Sprintf("after-%d", i)); n != 1 {
			t.Errorf("after-%d arrived %d times", i, n)
		}
	}
	if !strings.Contains(second.out.String(), "reconnect") {
		t.Errorf("agent output does not show the reconnect:\n%s", second.out.String())
	}
}
