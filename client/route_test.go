package client

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hookrelay/hookrelay/protocol"
)

func TestParseRoute(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in      string
		want    Route
		wantErr string
	}{
		{in: "header:X-GitHub-Event=push http://localhost:3000/push",
			want: Route{Headers: []HeaderCondition{{Name: "X-GitHub-Event", Pattern: "push"}}, Target: "http://localhost:3000/push"}},
		{in: "  channel=stripe-dev   path=/v1/*  http://localhost:4000 ",
			want: Route{Channel: "stripe-dev", Path: "/v1/*", Target: "http://localhost:4000"}},
		{in: "method=POST header:X-Signature header:X-Kind=a=b https://localhost:8443/x?y=1",
			want: Route{Method: "POST", Headers: []HeaderCondition{{Name: "X-Signature", Any: true}, {Name: "X-Kind", Pattern: "a=b"}},
				Target: "https://localhost:8443/x?y=1"}},
		{in: "http://localhost:3000", want: Route{Target: "http://localhost:3000"}},
		{in: "", wantErr: "empty"},
		{in: "path=/x", wantErr: "must end with the URL"},
		{in: "path=/x localhost:3000", wantErr: "must end with the URL"},
		{in: "path=/x http://user:pw@localhost:3000", wantErr: "credentials"},
		{in: "path=x http://localhost:3000", wantErr: "starts with / or *"},
		{in: "path= http://localhost:3000", wantErr: "not KEY=VALUE"},
		{in: "host=a http://localhost:3000", wantErr: `unknown key "host"`},
		{in: "push http://localhost:3000", wantErr: "not KEY=VALUE"},
		{in: "header:=x http://localhost:3000", wantErr: "no valid header"},
		{in: "header:Bad Name=x http://localhost:3000", wantErr: `unknown key "Name"`},
		{in: "path=/a path=/b http://localhost:3000", wantErr: "given twice"},
	} {
		got, err := ParseRoute(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseRoute(%q) error = %v, want one containing %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseRoute(%q): %v", tt.in, err)
			continue
		}
		if got.String() != tt.want.String() || got.Target != tt.want.Target || len(got.Headers) != len(tt.want.Headers) {
			t.Errorf("ParseRoute(%q) = %q, want %q", tt.in, got, tt.want)
		}
		for i := range got.Headers {
			if got.Headers[i] != tt.want.Headers[i] {
				t.Errorf("ParseRoute(%q) header %d = %+v, want %+v", tt.in, i, got.Headers[i], tt.want.Headers[i])
			}
		}
		if again, err := ParseRoute(got.String()); err != nil || again.String() != got.String() {
			t.Errorf("ParseRoute(%q).String() = %q does not parse back: %v", tt.in, got, err)
		}
	}
}

func TestMatchGlob(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		pattern, s string
		want       bool
	}{
		{"push", "push", true},
		{"push", "pushed", false},
		{"push", "Push", false},
		{"*", "", true},
		{"*", "anything/at/all", true},
		{"invoice.*", "invoice.paid", true},
		{"invoice.*", "invoice.", true},
		{"invoice.*", "customer.created", false},
		{"*.paid", "invoice.paid", true},
		{"*.paid", "invoice.paid.later", false},
		{"a*b*c", "abc", true},
		{"a*b*c", "a-b-b-c", true},
		{"a*b*c", "a-c-b", false},
		{"a*a", "a", false}, // prefix and suffix may not overlap
		{"/v1/*/charges", "/v1/acct_1/charges", true},
		{"/v1/*/charges", "/v1/charges", false},
	} {
		if got := matchGlob(tt.pattern, tt.s); got != tt.want {
			t.Errorf("matchGlob(%q, %q) = %v, want %v", tt.pattern, tt.s, got, tt.want)
		}
	}
}

func TestRouteMatches(t *testing.T) {
	t.Parallel()
	req := func(channel, method, path string, headers ...protocol.Header) *protocol.DeliveryRequest {
		r := newRequest("evt", method, path, headers...)
		r.Channel = channel
		return r
	}
	push := protocol.Header{Name: "x-github-event", Value: "push"}
	for _, tt := range []struct {
		route string
		req   *protocol.DeliveryRequest
		want  bool
	}{
		{"header:X-GitHub-Event=push http://t", req("c", "POST", "/", push), true},
		{"header:X-GitHub-Event=push http://t", req("c", "POST", "/", protocol.Header{Name: "X-GitHub-Event", Value: "issues"}), false},
		{"header:X-GitHub-Event=push http://t", req("c", "POST", "/"), false},
		{"header:X-GitHub-Event http://t", req("c", "POST", "/", protocol.Header{Name: "X-GITHUB-EVENT", Value: ""}), true},
		// A repeated header matches when any of its values does.
		{"header:X-Tag=b http://t", req("c", "POST", "/", protocol.Header{Name: "X-Tag", Value: "a"}, protocol.Header{Name: "X-Tag", Value: "b"}), true},
		{"path=/stripe/* http://t", req("c", "POST", "/stripe/events"), true},
		{"path=/stripe/* http://t", req("c", "POST", "/stripe/a/b"), true},
		{"path=/stripe/* http://t", req("c", "POST", "/stripe"), true},
		{"path=/stripe/* http://t", req("c", "POST", "/stripes"), false},
		{"path=/stripe/* http://t", req("c", "POST", "/github"), false},
		// Dot segments are resolved first: a path cannot climb into a route.
		{"path=/stripe/* http://t", req("c", "POST", "/stripe/../admin"), false},
		{"path=/stripe/* http://t", req("c", "POST", "/other/../stripe/x"), true},
		{"path=/stripe/* http://t", req("c", "POST", "/stripe/%2e%2e/admin"), false},
		{"path=/a%2Fb http://t", req("c", "POST", "/a%2Fb"), true},
		{"path=/ http://t", req("c", "GET", "/"), true},
		{"method=post http://t", req("c", "POST", "/"), true},
		{"method=POST http://t", req("c", "GET", "/"), false},
		{"channel=gh http://t", req("gh", "POST", "/"), true},
		{"channel=gh http://t", req("stripe", "POST", "/"), false},
		{"channel=gh method=POST path=/hooks/* header:X-GitHub-Event=p* http://t", req("gh", "POST", "/hooks/1", push), true},
		{"channel=gh method=POST path=/hooks/* header:X-GitHub-Event=p* http://t", req("gh", "PUT", "/hooks/1", push), false},
		{"http://t", req("any", "DELETE", "/x"), true},
	} {
		r, err := ParseRoute(tt.route)
		if err != nil {
			t.Fatalf("ParseRoute(%q): %v", tt.route, err)
		}
		if got := r.Matches(tt.req); got != tt.want {
			t.Errorf("%q matches %s %s on %s %v = %v, want %v", tt.route, tt.req.Method, tt.req.Path, tt.req.Channel, tt.req.Headers, got, tt.want)
		}
	}
}

func TestRouterFirstMatchWinsThenFallback(t *testing.T) {
	t.Parallel()
	var routes []Route
	for _, s := range []string{
		"header:X-GitHub-Event=push http://localhost:3000/push",
		"path=/stripe/* http://localhost:4000",
		"channel=b http://localhost:5000",
		"path=/* http://localhost:6000", // never reached on channel b: the route above takes b first
	} {
		r, err := ParseRoute(s)
		if err != nil {
			t.Fatal(err)
		}
		routes = append(routes, r)
	}
	for _, tt := range []struct {
		fallback      string
		channel, path string
		push          bool
		wantRoute     string // "" for none
		wantTarget    string
	}{
		{"http://localhost:9000", "a", "/stripe/x", true, "header:X-GitHub-Event=push", "http://localhost:3000/push"},
		{"http://localhost:9000", "a", "/stripe/x", false, "path=/stripe/*", "http://localhost:4000"},
		{"http://localhost:9000", "b", "/github", false, "channel=b", "http://localhost:5000"},
		{"http://localhost:9000", "a", "/github", false, "path=/*", "http://localhost:6000"},
		{"http://localhost:9000", "a", "", false, "path=/*", "http://localhost:6000"},
	} {
		rt, err := newRouter(routes, tt.fallback)
		if err != nil {
			t.Fatal(err)
		}
		req := newRequest("evt", "POST", tt.path)
		if tt.path == "" {
			req.Path = "/"
		}
		req.Channel = tt.channel
		if tt.push {
			req.Headers = append(req.Headers, protocol.Header{Name: "X-GitHub-Event", Value: "push"})
		}
		got := rt.route(req)
		if got == nil || got.name != tt.wantRoute || got.target.String() != tt.wantTarget {
			t.Errorf("%s %s push=%v took %+v, want %q → %s", tt.channel, tt.path, tt.push, got, tt.wantRoute, tt.wantTarget)
		}
	}

	// Without a catch-all route, the fallback takes what nothing matched;
	// without a fallback, nothing does, and the reason names the routes.
	rt, err := newRouter(routes[:2], "http://localhost:9000")
	if err != nil {
		t.Fatal(err)
	}
	if got := rt.route(newRequest("evt", "POST", "/github")); got == nil || got.name != "to" || got.target.String() != "http://localhost:9000" {
		t.Errorf("fallback: took %+v", got)
	}
	rt, err = newRouter(routes[:2], "")
	if err != nil {
		t.Fatal(err)
	}
	req := newRequest("evt", "POST", "/github")
	if got := rt.route(req); got != nil {
		t.Errorf("no fallback: took %+v, want none", got)
	}
	te := rt.noRoute(req)
	if te.Code != protocol.ErrCodeNoRoute || !strings.Contains(te.Msg, "POST /github") ||
		!strings.Contains(te.Msg, "header:X-GitHub-Event=push; path=/stripe/*") || !strings.Contains(te.Msg, "no --to") {
		t.Errorf("no route error: %+v", te)
	}
}

func TestRoutesConfig(t *testing.T) {
	t.Parallel()
	relay := newFakeRelay(t, nil)
	route := func(s string) Route {
		r, err := ParseRoute(s)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	cfg := testConfig(t, relay, "")
	cfg.Routes = []Route{route("channel=elsewhere http://localhost:3000")}
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), `names channel "elsewhere"`) {
		t.Errorf("a route of a channel not subscribed: %v", err)
	}
	cfg.Routes = nil
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "no target") {
		t.Errorf("no target and no routes: %v", err)
	}
	cfg.Routes = []Route{route("channel=ch1 http://localhost:3000")}
	if _, err := New(cfg); err != nil {
		t.Errorf("routes without a fallback: %v", err)
	}
	cfg.Routes = []Route{{Target: "ftp://localhost"}}
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "route 1") {
		t.Errorf("a route with a bad target: %v", err)
	}
}

// TestRoutedDeliveries sends deliveries through an agent with two targets:
// each goes where its route says, the fallback takes the rest, and without
// a fallback the relay gets no_route with the reason.
func TestRoutedDeliveries(t *testing.T) {
	t.Parallel()
	app := func(name string) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			io.WriteString(w, name+" "+r.URL.Path)
		}))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	github, stripe := app("github"), app("stripe")
	for _, tt := range []struct {
		fallback string
		path     string
		push     bool
		want     string // the body the app answers; "" for no_route
	}{
		{"", "/gh", true, "github /push/gh"},
		{"", "/stripe/evt", false, "stripe /stripe/evt"},
		{"", "/other", false, ""},
		{github, "/other", false, "github /other"},
	} {
		relay := newFakeRelay(t, nil)
		cfg := testConfig(t, relay, tt.fallback)
		cfg.JSON = true
		for _, s := range []string{"header:X-GitHub-Event=push " + github + "/push", "path=/stripe/* " + stripe} {
			r, err := ParseRoute(s)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Routes = append(cfg.Routes, r)
		}
		agent := startAgent(t, cfg)
		agent.waitConnected(t)
		req := newRequest("evt", "POST", tt.path)
		if tt.push {
			req.Headers = append(req.Headers, protocol.Header{Name: "X-GitHub-Event", Value: "push"})
		}
		resp, body := relay.next(t).mustDeliver(t, req, []byte("{}"))
		if tt.want == "" {
			if resp.ErrorCode != protocol.ErrCodeNoRoute || !strings.Contains(resp.Error, "no route of the agent matches POST /other") {
				t.Errorf("%s: %+v, want no_route", tt.path, resp)
			}
		} else if resp.Status != 200 || string(body) != tt.want {
			t.Errorf("%s: %d %q, want %q", tt.path, resp.Status, body, tt.want)
		}
		if err := agent.stop(t); err != nil {
			t.Fatal(err)
		}
		out := cfg.Out.(*syncBuffer).String()
		if tt.want != "" && !strings.Contains(out, `"route":`) {
			t.Errorf("%s: the JSON line names no route:\n%s", tt.path, out)
		}
	}
}
