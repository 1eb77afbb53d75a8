package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/client"
	"github.com/hookrelay/hookrelay/protocol"
	"github.com/hookrelay/hookrelay/server"
)

// TestAppDownNoRetryStorm (issue 8 item 4): 2,000 webhooks queued for a
// connected agent while the app is down. The group pauses: only the
// attempts in flight when the target first refused, then one probe at a
// time; the rest wait. When the app is back, all 2,000 arrive exactly once,
// oldest first.
func TestAppDownNoRetryStorm(t *testing.T) {
	t.Parallel()
	const total = 2000
	e := startRelay(t, func(c *server.Config) {
		c.ProbeMin, c.ProbeMax = 20*time.Millisecond, 200*time.Millisecond
	})
	channel := e.channel(t, client.CreateChannel{Async: true})

	// The app's address, with nothing listening yet: connections are refused.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	appAddr := ln.Addr().String()
	ln.Close()

	var mu sync.Mutex
	refused := map[string]int{} // event id → deliveries the agent answered connection_refused
	var order []string          // event ids in the order the agent started them
	var failures []string       // every failed delivery, for the log
	// One delivery at a time, so that the order the app sees is the order
	// the relay sends in (with more, a slow one is overtaken by the others).
	const concurrency = 1
	agent := e.startAgent(t, channel, "http://"+appAddr, func(c *client.Config) {
		c.Concurrency = concurrency
		c.OnDelivery = func(d client.DeliveryEvent) {
			mu.Lock()
			defer mu.Unlock()
			if d.Response == nil {
				order = append(order, d.Request.EventID)
				return
			}
			if d.Response.ErrorCode == protocol.ErrCodeConnectionRefused {
				refused[d.Request.EventID]++
			}
			if d.Response.Error != "" {
				failures = append(failures, fmt.Sprintf("%s attempt %d: %s %s", d.Request.EventID, d.Request.Attempt, d.Response.ErrorCode, d.Response.Error))
			}
		}
	})

	// One after the other, so that the relay's order (seq) is n's.
	oldest := postN(t, e.ingress(channel), 0)
	for n := 1; n < total; n++ {
		postN(t, e.ingress(channel), n)
	}
	attempts := func() (all, probes int) {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range refused {
			all += c
		}
		return all, refused[oldest] - 1
	}
	// Wait for ten probes after all 2,000 are queued.
	_, from := attempts()
	waitFor(t, 60*time.Second, "ten probes", func() bool { _, p := attempts(); return p >= from+10 })

	// The relay says so: the API's agents list and the agent's output.
	var list struct {
		Agents []struct {
			GroupState  string     `json:"group_state"`
			NextTryAt   *time.Time `json:"next_try_at"`
			NextTryInMS int64      `json:"next_try_in_ms"`
			GroupError  string     `json:"group_error"`
		} `json:"agents"`
	}
	if err := e.api().Do(context.Background(), http.MethodGet, "/api/v1/channels/"+channel+"/agents", nil, &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Agents) != 1 || list.Agents[0].GroupState != "paused" || list.Agents[0].NextTryAt == nil ||
		!strings.Contains(list.Agents[0].GroupError, "refused") {
		b, _ := json.Marshal(list)
		t.Errorf("agents while the app is down: %s; want group_state paused, next_try_at, the error", b)
	}
	if out := agent.out.String(); !strings.Contains(out, "target down, next try in") {
		t.Errorf("the agent's output does not say the target is down:\n%s", out)
	}

	// Bounded: each event at most once but for the probes of the oldest,
	// and no more of them than were in flight when the target first refused.
	all, probes := attempts()
	mu.Lock()
	distinct := len(refused)
	for id, c := range refused {
		if id != oldest && c > 1 {
			t.Errorf("event %s was attempted %d times while the app was down; only the oldest is probed", id, c)
		}
	}
	mu.Unlock()
	t.Logf("app down: %d attempts for %d webhooks (%d events, %d probes)", all, total, distinct, probes)
	if distinct > concurrency {
		t.Errorf("%d events attempted while the app was down, more than the agent's %d slots", distinct, concurrency)
	}
	if all > concurrency+probes {
		t.Errorf("%d attempts while the app was down, more than %d in flight + %d probes", all, concurrency, probes)
	}

	// The app comes back on its address.
	arrivals := make(chan int, total*2)
	app := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct{ N int }
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		arrivals <- body.N
		w.WriteHeader(http.StatusNoContent)
	})}
	var appLn net.Listener
	waitFor(t, 10*time.Second, "the app's port free again", func() bool {
		appLn, err = net.Listen("tcp", appAddr)
		return err == nil
	})
	go app.Serve(appLn)
	t.Cleanup(func() { _ = app.Close() })

	seen := make([]bool, total)
	var arrived []int
	deadline := time.After(2 * time.Minute)
	for len(arrived) < total {
		select {
		case n := <-arrivals:
			if n < 0 || n >= total {
				t.Fatalf("the app got n=%d", n)
			}
			if seen[n] {
				t.Fatalf("webhook %d arrived twice", n)
			}
			seen[n] = true
			arrived = append(arrived, n)
		case <-deadline:
			t.Fatalf("%d of %d webhooks arrived after the app came back", len(arrived), total)
		}
	}
	// Oldest first.
	for i, n := range arrived {
		if n != i {
			mu.Lock()
			t.Logf("failed deliveries: %d, the last ones:\n%s", len(failures), strings.Join(failures[max(0, len(failures)-20):], "\n"))
			mu.Unlock()
			t.Fatalf("arrival %d was webhook %d: not oldest first", i, n)
		}
	}
	// Nothing more arrives: every event is recorded done.
	waitFor(t, 30*time.Second, "the group's backlog recorded done", func() bool {
		var evs struct {
			Events []struct {
				LastStatus int `json:"last_status"`
			} `json:"events"`
		}
		if err := e.api().Do(context.Background(), http.MethodGet, "/api/v1/channels/"+channel+"/events?limit=1", nil, &evs); err != nil {
			return false
		}
		return len(evs.Events) == 1 && evs.Events[0].LastStatus == http.StatusNoContent
	})
	select {
	case n := <-arrivals:
		t.Errorf("webhook %d arrived again", n)
	default:
	}
	mu.Lock()
	started := len(order)
	mu.Unlock()
	t.Logf("deliveries started in all: %d for %d webhooks", started, total)
}

// postN posts webhook {"n":N} and returns its event id.
func postN(t *testing.T, url string, n int) string {
	t.Helper()
	id, err := postNErr(url, n)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func postNErr(url string, n int) (string, error) {
	resp, err := http.Post(url, "application/json", strings.NewReader(fmt.Sprintf(`{"n":%d}`, n)))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusAccepted {
		return "", fmt.Errorf("webhook %d: %d %s", n, resp.StatusCode, body)
	}
	return resp.Header.Get("Hookrelay-Event-Id"), nil
}
