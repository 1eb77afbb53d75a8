package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/client"
)

// sigApp is an app that records the X-Sig header of every request it gets,
// per event, and answers with a header whose value is not UTF-8 either.
// It fails (closes the connection without an answer) every first attempt
// of the events whose body is "fail once", so the relay retries them.
type sigApp struct {
	mu   sync.Mutex
	sigs map[string][]string // event id → X-Sig of each request, in order
}

const appSig = "\xfe\xff app"

func newSigApp(t *testing.T) (*sigApp, *httptest.Server) {
	app := &sigApp{sigs: make(map[string][]string)}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body bytes.Buffer
		_, _ = body.ReadFrom(r.Body)
		id := r.Header.Get(client.HeaderEventID)
		app.mu.Lock()
		app.sigs[id] = append(app.sigs[id], r.Header.Get("X-Sig"))
		app.mu.Unlock()
		if body.String() == "fail once" && r.Header.Get(client.HeaderAttempt) == "1" {
			if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
				conn.Close()
			}
			return
		}
		w.Header().Set("X-App-Sig", appSig)
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(ts.Close)
	return app, ts
}

// received returns the X-Sig values the app got for the event.
func (a *sigApp) received(id string) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.sigs[id]...)
}

// waitReceived waits until the app got n requests of the event and checks
// that each carried sig exactly.
func (a *sigApp) waitReceived(t *testing.T, what, id string, n int, sig string) {
	t.Helper()
	waitFor(t, 15*time.Second, what, func() bool { return len(a.received(id)) >= n })
	for i, got := range a.received(id) {
		if got != sig {
			t.Errorf("%s: request %d of %s carried X-Sig %q, want %q", what, i+1, id, got, sig)
		}
	}
}

// TestHeaderBytesNotUTF8 posts a header value that is not UTF-8 and checks
// that the app gets its exact bytes on every path: live, from the backlog,
// on a retry and on a replay; that the app's own such header reaches the
// sender exactly; and that the API gives both exactly.
func TestHeaderBytesNotUTF8(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const sig = "a\xffb"
	app, target := newSigApp(t)
	relay := startRelay(t)
	ch := relay.channel(t, client.CreateChannel{})
	send := func(body string) (*http.Response, string) {
		t.Helper()
		resp, _ := do(t, http.MethodPost, relay.ingress(ch)+"/hook", map[string]string{"X-Sig": sig}, []byte(body))
		return resp, resp.Header.Get("Hookrelay-Event-Id")
	}

	// Backlog: no agent yet, the event waits in the store.
	resp, queued := send("queued")
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("post without an agent: %d, want 202", resp.StatusCode)
	}
	agent := relay.startAgent(t, ch, target.URL)
	app.waitReceived(t, "from the backlog", queued, 1, sig)

	// Live, synchronous: the sender gets the app's header exactly too.
	resp, live := send("live")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-App-Sig") != appSig {
		t.Errorf("live: sender got %d with X-App-Sig %q, want 200 and %q", resp.StatusCode, resp.Header.Get("X-App-Sig"), appSig)
	}
	app.waitReceived(t, "live", live, 1, sig)

	// A retry: the first attempt fails, the second is read from the store.
	_, retried := send("fail once")
	app.waitReceived(t, "on a retry", retried, 2, sig)

	// A replay of the live event.
	if _, err := relay.api().Replay(ctx, live, ""); err != nil {
		t.Fatalf("replay: %v", err)
	}
	app.waitReceived(t, "on a replay", live, 2, sig)

	// The API: the exact bytes, in base64 beside the text.
	ev, err := relay.api().GetEvent(ctx, live)
	if err != nil {
		t.Fatal(err)
	}
	if i := headerIndex(ev.Headers, "X-Sig"); i < 0 || ev.Headers[i].Value != sig {
		t.Errorf("API event headers %q, want X-Sig %q", ev.Headers, sig)
	}
	_, raw := do(t, http.MethodGet, relay.URL+"/api/v1/events/"+live, map[string]string{"Authorization": "Bearer " + adminToken}, nil)
	if !bytes.Contains(raw, []byte(`{"name":"X-Sig","value":"a\ufffdb","value_base64":"Yf9i"}`)) {
		t.Errorf("API event JSON %s: want X-Sig with value_base64", raw)
	}
	waitFor(t, 10*time.Second, "the deliveries recorded", func() bool {
		ds, err := relay.api().Deliveries(ctx, live)
		return err == nil && len(ds) == 2
	})
	ds, err := relay.api().Deliveries(ctx, live)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		if i := headerIndex(d.ResponseHeaders, "X-App-Sig"); i < 0 || d.ResponseHeaders[i].Value != appSig {
			t.Errorf("API delivery %s response headers %q, want X-App-Sig %q", d.ID, d.ResponseHeaders, appSig)
		}
	}
	agent.Stop()
}

func headerIndex(hs []client.Header, name string) int {
	for i, h := range hs {
		if strings.EqualFold(h.Name, name) {
			return i
		}
	}
	return -1
}

// TestBacklogBodiesArriveByteForByte queues events of every size while no
// agent is connected, then connects one: bodies larger than the worker
// reads with its backlog page are loaded from the store when sent, and
// every one arrives exactly.
func TestBacklogBodiesArriveByteForByte(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	got := make(map[string][32]byte) // event id → SHA-256 of the body the app read
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		_, _ = io.Copy(h, r.Body)
		mu.Lock()
		got[r.Header.Get(client.HeaderEventID)] = [32]byte(h.Sum(nil))
		mu.Unlock()
	}))
	t.Cleanup(target.Close)
	relay := startRelay(t)
	ch := relay.channel(t, client.CreateChannel{})
	want := make(map[string][32]byte)
	for _, size := range []int{0, 1 << 10, 1<<20 + 1, 3 << 20} {
		body := make([]byte, size)
		_, _ = rand.Read(body)
		resp, _ := post(t, relay.ingress(ch), "application/octet-stream", body)
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("%d bytes without an agent: status %d, want 202", size, resp.StatusCode)
		}
		want[resp.Header.Get("Hookrelay-Event-Id")] = sha256.Sum256(body)
	}
	relay.startAgent(t, ch, target.URL)
	waitFor(t, 20*time.Second, "every queued event at the app", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == len(want)
	})
	mu.Lock()
	defer mu.Unlock()
	for id, sum := range want {
		if got[id] != sum {
			t.Errorf("event %s: the app read a body with SHA-256 %x, sent %x", id, got[id], sum)
		}
	}
}
