package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/client"
)

// TestRoutesToTwoTargets runs one agent for two channels with routes to two
// apps: each webhook reaches the app its route names and that app's answer
// reaches the sender; a webhook no route matches gets 502 no_route, and the
// inspector's delivery record says why.
func TestRoutesToTwoTargets(t *testing.T) {
	t.Parallel()
	app := func(name string) *httptest.Server {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			w.Header().Set("X-App", name)
			w.WriteHeader(http.StatusCreated)
			io.WriteString(w, name+" got "+r.URL.Path+" "+string(body))
		}))
		t.Cleanup(srv.Close)
		return srv
	}
	github, stripe := app("github"), app("stripe")
	relay := startRelay(t)
	gh := relay.channel(t, client.CreateChannel{})
	st := relay.channel(t, client.CreateChannel{})
	var routes []client.Route
	for _, s := range []string{
		"channel=" + gh + " header:X-GitHub-Event=push " + github.URL + "/push",
		"channel=" + st + " path=/v1/* " + stripe.URL,
	} {
		r, err := client.ParseRoute(s)
		if err != nil {
			t.Fatal(err)
		}
		routes = append(routes, r)
	}
	relay.startAgent(t, gh, "", func(c *client.Config) {
		c.Subscriptions = append(c.Subscriptions, client.Subscription{Channel: st})
		c.Routes = routes
	})
	waitFor(t, 10*time.Second, "the agent on the second channel", func() bool { return relay.agentCount(t, st) == 1 })

	for _, tt := range []struct {
		channel, path, event string
		wantApp, wantBody    string
	}{
		{gh, "/hooks", "push", "github", "github got /push/hooks {}"},
		{st, "/v1/charges", "", "stripe", "stripe got /v1/charges {}"},
	} {
		headers := map[string]string{"Content-Type": "application/json"}
		if tt.event != "" {
			headers["X-GitHub-Event"] = tt.event
		}
		resp, body := do(t, http.MethodPost, relay.ingress(tt.channel)+tt.path, headers, []byte("{}"))
		if resp.StatusCode != http.StatusCreated || resp.Header.Get("X-App") != tt.wantApp || string(body) != tt.wantBody {
			t.Errorf("%s: %d %s %q, want 201 from %s: %q", tt.path, resp.StatusCode, resp.Header.Get("X-App"), body, tt.wantApp, tt.wantBody)
		}
	}

	// An issues event on the GitHub channel: no route, no --to.
	resp, body := do(t, http.MethodPost, relay.ingress(gh)+"/hooks", map[string]string{"X-GitHub-Event": "issues"}, []byte("{}"))
	var e struct{ Error, Code, EventID string }
	if err := json.Unmarshal(body, &e); err != nil || resp.StatusCode != http.StatusBadGateway || e.Code != "no_route" ||
		!strings.Contains(e.Error, "no route of the agent matches POST /hooks") {
		t.Fatalf("unrouted webhook: %d %s", resp.StatusCode, body)
	}
	id := resp.Header.Get("Hookrelay-Event-Id")
	// The attempt is recorded by the group's worker after the sender has
	// its answer.
	var (
		deliveries []client.Delivery
		err        error
	)
	waitFor(t, 10*time.Second, "the attempt recorded", func() bool {
		deliveries, err = relay.api().Deliveries(context.Background(), id)
		return err != nil || len(deliveries) > 0
	})
	if err != nil || len(deliveries) == 0 || !strings.Contains(deliveries[0].Error, "no route of the agent matches") {
		t.Fatalf("the inspector's record of the unrouted webhook: %+v %v", deliveries, err)
	}
}

// TestAgentListShowsHealth checks what the relay lists about an agent whose
// target is down: when it last heard from it, its deliveries in flight,
// and the target that fails.
func TestAgentListShowsHealth(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	relay := startRelay(t)
	ch := relay.channel(t, client.CreateChannel{})
	relay.startAgent(t, ch, dead)
	type agent struct {
		LastSeen      time.Time `json:"last_seen"`
		InFlight      *int      `json:"in_flight"`
		TargetFailing bool      `json:"target_failing"`
		Targets       []struct {
			URL   string `json:"url"`
			Up    bool   `json:"up"`
			Error string `json:"error"`
		} `json:"targets"`
	}
	var got []agent
	waitFor(t, 10*time.Second, "the relay to learn the target is down", func() bool {
		var out struct{ Agents []agent }
		if err := relay.api().Do(context.Background(), http.MethodGet, "/api/v1/channels/"+ch+"/agents", nil, &out); err != nil {
			t.Fatal(err)
		}
		got = out.Agents
		return len(got) == 1 && got[0].TargetFailing
	})
	a := got[0]
	if len(a.Targets) != 1 || a.Targets[0].URL != dead || a.Targets[0].Up || !strings.Contains(a.Targets[0].Error, "connection refused") {
		t.Errorf("targets %+v", a.Targets)
	}
	if a.InFlight == nil || *a.InFlight != 0 {
		t.Errorf("in_flight %v", a.InFlight)
	}
	if since := time.Since(a.LastSeen); since < 0 || since > time.Minute {
		t.Errorf("last_seen %v is %v ago", a.LastSeen, since)
	}
}
