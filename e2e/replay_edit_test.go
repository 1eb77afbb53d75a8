package e2e

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/client"
	"github.com/hookrelay/hookrelay/server"
	"github.com/hookrelay/hookrelay/server/verify"
	"github.com/hookrelay/hookrelay/server/wireheader"
	"github.com/hookrelay/hookrelay/webhook"
)

// appRequest is one request a verifying app received.
type appRequest struct {
	headers []wireheader.Header
	body    []byte
	verr    error // the app's verification of the signature
}

// verifyingApp is the developer's app: it checks each request's signature
// with the relay's own verification code, as an app's library would, and
// records the request with its wire headers.
func verifyingApp(t testing.TB, cfg verify.Config) (*httptest.Server, chan appRequest) {
	seen := make(chan appRequest, 32)
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hs, _ := wireheader.Headers(r)
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("app: %v", err)
		}
		vr := verify.Request{Method: r.Method, Path: r.URL.Path, Body: body}
		for _, h := range hs {
			vr.Headers = append(vr.Headers, verify.Header{Name: h.Name, Value: h.Value})
		}
		verr := cfg.Verify(vr)
		seen <- appRequest{hs, body, verr}
		if verr != nil {
			http.Error(w, verr.Error(), http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	ts.Listener = wireheader.NewListener(ts.Listener, 1<<20)
	ts.Config.ConnContext = wireheader.ConnContext
	ts.Start()
	t.Cleanup(ts.Close)
	return ts, seen
}

func next(t *testing.T, seen chan appRequest) appRequest {
	t.Helper()
	select {
	case r := <-seen:
		return r
	case <-time.After(15 * time.Second):
		t.Fatal("the app got nothing")
		return appRequest{}
	}
}

func headerOf(hs []wireheader.Header, name string) string {
	for _, h := range hs {
		if strings.EqualFold(h.Name, name) {
			return h.Value
		}
	}
	return ""
}

// names lists header names, leaving out those that differ per delivery.
func names(hs []wireheader.Header) []string {
	var out []string
	for _, h := range hs {
		switch strings.ToLower(h.Name) {
		case "host", "hookrelay-event-id", "hookrelay-delivery-attempt":
		default:
			out = append(out, h.Name)
		}
	}
	return out
}

// sendSample sends a provider's sample event to url, as the provider would.
func sendSample(t *testing.T, url, provider, event, secret string) *client.Response {
	t.Helper()
	req, err := webhook.BuildSample(provider, event, webhook.SampleOptions{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Send(t.Context(), url, req.Method, req.Headers, req.Body, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// TestEditedReplayIsANewEventThatVerifies: a GitHub webhook arrives signed;
// an edited replay with a new body and re-signing reaches the app as a new
// event, its headers in the original order with the edits in place, and
// the app's verification accepts it; without re-signing it does not.
func TestEditedReplayIsANewEventThatVerifies(t *testing.T) {
	t.Parallel()
	relay := startRelay(t)
	ctx := t.Context()
	api := relay.api()
	const secret = "edited-replay-secret"
	ch := relay.channel(t, client.CreateChannel{})
	scheme, sec := "github", secret
	if _, err := api.UpdateChannel(ctx, ch, client.UpdateChannel{Verify: &scheme, Secret: &sec}); err != nil {
		t.Fatal(err)
	}
	app, seen := verifyingApp(t, verify.Config{Scheme: "github", Secret: secret})
	relay.startAgent(t, ch, app.URL+"/hooks")

	resp := sendSample(t, relay.ingress(ch)+"/github", "github", "push", secret)
	orig := next(t, seen)
	if resp.Status != http.StatusNoContent || orig.verr != nil {
		t.Fatalf("first delivery: sender got %d, app's verification: %v", resp.Status, orig.verr)
	}
	origID := resp.Header.Get("Hookrelay-Event-Id")

	body := `{"ref":"refs/heads/hotfix","edited":true}`
	res, err := api.ReplayEdited(ctx, origID, client.ReplayEdits{
		SetHeaders:    []client.Header{{Name: "x-github-event", Value: "ping"}, {Name: "X-Replayed-By", Value: "test"}},
		RemoveHeaders: []string{"X-GitHub-Hook-ID"},
		Body:          &body,
		Resign:        true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.EventID == "" || res.EventID == origID || res.ReplayOf != origID || !slices.Equal(res.Groups, []string{"default:admin:test-host"}) {
		t.Fatalf("replay answer %+v", res)
	}
	got := next(t, seen)
	if got.verr != nil {
		t.Errorf("the app rejects the re-signed replay: %v", got.verr)
	}
	if string(got.body) != body || headerOf(got.headers, "Hookrelay-Event-Id") != res.EventID {
		t.Errorf("the app got %q as event %s", got.body, headerOf(got.headers, "Hookrelay-Event-Id"))
	}
	if headerOf(got.headers, "X-GitHub-Event") != "ping" || headerOf(got.headers, "X-GitHub-Hook-ID") != "" {
		t.Errorf("edited headers: %v", got.headers)
	}
	wantNames := slices.DeleteFunc(names(orig.headers), func(n string) bool { return n == "X-GitHub-Hook-ID" })
	wantNames = append(wantNames, "X-Replayed-By") // added after the sender's last line
	if gotNames := names(got.headers); !slices.Equal(gotNames, wantNames) {
		t.Errorf("header order:\n got  %v\n want %v", gotNames, wantNames)
	}

	ev, err := api.GetEvent(ctx, res.EventID)
	if err != nil {
		t.Fatal(err)
	}
	if ev.ReplayOf != origID || *ev.Body != body || ev.Channel != ch || ev.Path != "/github" {
		t.Errorf("stored replay %+v", ev)
	}
	page, err := api.ListEvents(ctx, ch, nil)
	if err != nil || len(page.Events) != 2 || page.Events[0].ReplayOf != origID || page.Events[1].ReplayOf != "" {
		t.Errorf("listed events %+v (%v)", page.Events, err)
	}

	// The same edit without --resign: the old signature no longer matches.
	if _, err := api.ReplayEdited(ctx, origID, client.ReplayEdits{Body: &body}); err != nil {
		t.Fatal(err)
	}
	if got := next(t, seen); !errors.Is(got.verr, verify.ErrSignature) {
		t.Errorf("a changed body with the old signature: app's verification says %v", got.verr)
	}

	// A binary body, base64 in the API, arrives byte for byte.
	bin := string([]byte{0, 0xff, 0xfe, '\r', '\n', 0x80})
	b64 := base64.StdEncoding.EncodeToString([]byte(bin))
	if _, err := api.ReplayEdited(ctx, origID, client.ReplayEdits{Body: &b64, BodyEncoding: "base64", Resign: true}); err != nil {
		t.Fatal(err)
	}
	if got := next(t, seen); string(got.body) != bin || got.verr != nil {
		t.Errorf("binary body %q (%v)", got.body, got.verr)
	}

	// The whole header list replaced, as the inspector's editor sends it.
	if _, err := api.ReplayEdited(ctx, origID, client.ReplayEdits{
		Headers: []client.Header{{Name: "Content-Type", Value: "text/plain"}, {Name: "X-Only", Value: "1"}}}); err != nil {
		t.Fatal(err)
	}
	got = next(t, seen)
	if n := names(got.headers); !slices.Equal(n, []string{"Content-Type", "X-Only", "Content-Length"}) {
		t.Errorf("replaced header list arrived as %v", n)
	}
}

// TestEditedReplayErrorsAndQueueing: bad edits get clear 4xx answers; an
// edited replay needs no agent (it waits in the queue like a webhook); a
// rejected event can be fixed by an edited, re-signed replay.
func TestEditedReplayErrorsAndQueueing(t *testing.T) {
	t.Parallel()
	relay := startRelay(t, func(c *server.Config) { c.MaxBody = 8 << 10 })
	ctx := t.Context()
	api := relay.api()
	plain := relay.channel(t, client.CreateChannel{})
	resp, _ := post(t, relay.ingress(plain), "application/json", []byte(`{"a":1}`))
	id := resp.Header.Get("Hookrelay-Event-Id")

	call := func(body string) (int, string) {
		var out map[string]any
		err := api.Do(ctx, http.MethodPost, "/api/v1/events/"+id+"/replay", json.RawMessage(body), &out)
		var ae *client.APIError
		if errors.As(err, &ae) {
			return ae.Status, ae.Code
		}
		if err != nil {
			t.Fatal(err)
		}
		return http.StatusAccepted, ""
	}
	for _, tc := range []struct {
		body   string
		status int
		code   string
	}{
		{`{"group":"g","set_headers":[{"name":"X","value":"1"}]}`, 400, "bad_request"},
		{`{"body":"!!!","body_encoding":"base64"}`, 400, "bad_request"},
		{`{"body":"x","body_encoding":"hex"}`, 400, "bad_request"},
		{`{"body_encoding":"utf8","remove_headers":["X"]}`, 400, "bad_request"},
		{`{"set_headers":[{"name":"Bad Name","value":"1"}]}`, 400, "bad_request"},
		{`{"set_headers":[{"name":"X","value":"a\r\nInjected: 1"}]}`, 400, "bad_request"},
		{`{"remove_headers":["bad name"]}`, 400, "bad_request"},
		{`{"body":"` + strings.Repeat("x", 8<<10+1) + `"}`, 413, "body_too_large"},
		{`{"resign":true}`, 400, "no_secret"},
		{`{"set_headers":"x"}`, 400, "bad_request"},
		{`{"set_headers":[{"name":"X-Bin","value_base64":"!!"}]}`, 400, "bad_request"},
	} {
		if status, code := call(tc.body); status != tc.status || code != tc.code {
			t.Errorf("%.60s: %d %s, want %d %s", tc.body, status, code, tc.status, tc.code)
		}
	}
	// A value that is not UTF-8 goes in base64, as events show it, and is kept exactly.
	var bin struct {
		EventID string `json:"event_id"`
	}
	if err := api.Do(ctx, http.MethodPost, "/api/v1/events/"+id+"/replay",
		json.RawMessage(`{"set_headers":[{"name":"X-Bin","value":"ignored","value_base64":"/37/"}]}`), &bin); err != nil {
		t.Fatal(err)
	}
	var stored struct {
		Headers []struct {
			Name        string `json:"name"`
			ValueBase64 string `json:"value_base64"`
		} `json:"headers"`
	}
	if err := api.Do(ctx, http.MethodGet, "/api/v1/events/"+bin.EventID, nil, &stored); err != nil {
		t.Fatal(err)
	}
	if h := stored.Headers[len(stored.Headers)-1]; h.Name != "X-Bin" || h.ValueBase64 != "/37/" {
		t.Errorf("the edited header came back as %+v", h)
	}

	// No agent: a plain replay has nobody to go to; an edited one is queued.
	if _, err := api.Replay(ctx, id, ""); !client.IsStatus(err, http.StatusConflict) {
		t.Errorf("plain replay without an agent: %v", err)
	}
	res, err := api.ReplayEdited(ctx, id, client.ReplayEdits{SetHeaders: []client.Header{{Name: "X-Queued", Value: "yes"}}})
	if err != nil || len(res.Groups) != 0 {
		t.Fatalf("edited replay without an agent: %+v %v", res, err)
	}

	// A rejected webhook, fixed by re-signing.
	const secret = "whsec_rejected-then-fixed"
	signed := relay.channel(t, client.CreateChannel{})
	scheme, sec := "stripe", secret
	if _, err := api.UpdateChannel(ctx, signed, client.UpdateChannel{Verify: &scheme, Secret: &sec}); err != nil {
		t.Fatal(err)
	}
	bad := sendSample(t, relay.ingress(signed), "stripe", "invoice.paid", "whsec_the-wrong-one")
	rejected := bad.Header.Get("Hookrelay-Event-Id")
	if bad.Status != http.StatusUnauthorized || rejected == "" {
		t.Fatalf("a wrongly signed webhook got %d", bad.Status)
	}
	if _, err := api.Replay(ctx, rejected, ""); !client.IsStatus(err, http.StatusConflict) {
		t.Errorf("plain replay of a rejected event: %v", err)
	}
	fixed, err := api.ReplayEdited(ctx, rejected, client.ReplayEdits{Resign: true})
	if err != nil {
		t.Fatal(err)
	}
	app, seen := verifyingApp(t, verify.Config{Scheme: "stripe", Secret: secret})
	relay.startAgent(t, signed, app.URL)
	got := next(t, seen)
	if got.verr != nil || headerOf(got.headers, "Hookrelay-Event-Id") != fixed.EventID {
		t.Errorf("the re-signed replay of a rejected event: %v, event %s", got.verr, headerOf(got.headers, "Hookrelay-Event-Id"))
	}

	// The queued replays on the plain channel reach the first agent.
	app2, seen2 := verifyingApp(t, verify.Config{Scheme: "hmac", Secret: "unused"})
	relay.startAgent(t, plain, app2.URL)
	// The original, the binary edit, then the replay: event id → X-Queued.
	queued := map[string]string{}
	for range 3 {
		r := next(t, seen2)
		queued[headerOf(r.headers, "Hookrelay-Event-Id")] = headerOf(r.headers, "X-Queued")
	}
	if queued[id] != "" || queued[res.EventID] != "yes" {
		t.Errorf("queued deliveries (event id → X-Queued): %v; want %s and %s", queued, id, res.EventID)
	}
}

// TestChannelSecretByRole: members and admins read a channel's signing
// secret; agent tokens and read keys may not; other teams do not see it.
func TestChannelSecretByRole(t *testing.T) {
	t.Parallel()
	relay := startRelay(t)
	s := setupTeams(t, relay)
	ctx := t.Context()
	member := client.NewAPI(relay.URL, s.tokens["A-member"])
	scheme, secret := "standard-webhooks", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	if _, err := member.UpdateChannel(ctx, s.chanA, client.UpdateChannel{Verify: &scheme, Secret: &secret}); err != nil {
		t.Fatal(err)
	}
	for who, want := range map[string]int{
		"admin": 200, "A-admin": 200, "A-member": 200, "A-agent": 403, "readkey-A": 403,
		"B-admin": 404, "B-member": 404,
	} {
		got, err := client.NewAPI(relay.URL, s.tokens[who]).ChannelSecret(ctx, s.chanA)
		switch {
		case want == 200 && (err != nil || got.Verify != scheme || got.Secret != secret):
			t.Errorf("%s: %+v %v", who, got, err)
		case want != 200 && !client.IsStatus(err, want):
			t.Errorf("%s: %v, want %d", who, err, want)
		}
	}
	// Editing a replay is for the same tokens: the relay would sign what
	// an agent token or a read key wrote.
	page, err := member.ListEvents(ctx, s.chanA, nil)
	if err != nil || len(page.Events) == 0 {
		t.Fatalf("team A's events: %v", err)
	}
	evID := page.Events[0].ID
	for who, want := range map[string]int{"A-member": 202, "A-agent": 403, "readkey-A": 403, "B-member": 404} {
		_, err := client.NewAPI(relay.URL, s.tokens[who]).ReplayEdited(ctx, evID, client.ReplayEdits{Resign: true})
		if (want == 202) != (err == nil) || (want != 202 && !client.IsStatus(err, want)) {
			t.Errorf("%s: edited replay: %v, want %d", who, err, want)
		}
	}
	got, err := member.ChannelSecret(ctx, s.chanB)
	if !client.IsStatus(err, http.StatusNotFound) {
		t.Errorf("team A reads team B's secret: %+v %v", got, err)
	}
	// A channel without verification answers with empty fields.
	got, err = client.NewAPI(relay.URL, s.tokens["B-member"]).ChannelSecret(ctx, s.chanB)
	if err != nil || got != (client.SigningSecret{}) {
		t.Errorf("no verification: %+v %v", got, err)
	}
}

// TestSamplesPassServerVerify checks every sample event with the relay's
// verification code, directly and at the ingress of a channel that
// verifies the provider's signatures.
func TestSamplesPassServerVerify(t *testing.T) {
	t.Parallel()
	relay := startRelay(t)
	ctx := t.Context()
	secrets := map[string]string{
		webhook.GitHub: "gh-secret", webhook.Stripe: "whsec_stripe-secret",
		webhook.Slack: "0123456789abcdef0123456789abcdef", webhook.StandardWebhooks: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
	}
	channels := map[string]string{}
	for scheme, secret := range secrets {
		ch := relay.channel(t, client.CreateChannel{})
		if _, err := relay.api().UpdateChannel(ctx, ch, client.UpdateChannel{Verify: &scheme, Secret: &secret}); err != nil {
			t.Fatal(err)
		}
		channels[scheme] = ch
	}
	for _, s := range webhook.Samples() {
		secret := secrets[s.Scheme]
		req, err := webhook.BuildSample(s.Provider, s.Event, webhook.SampleOptions{Secret: secret})
		if err != nil {
			t.Fatal(err)
		}
		vr := verify.Request{Method: req.Method, Body: req.Body}
		for _, h := range req.Headers {
			vr.Headers = append(vr.Headers, verify.Header{Name: h.Name, Value: h.Value})
		}
		if err := (verify.Config{Scheme: s.Scheme, Secret: secret}).Verify(vr); err != nil {
			t.Errorf("%s %s: server/verify: %v", s.Provider, s.Event, err)
		}
		other, err := webhook.NewSecret(s.Scheme)
		if err != nil {
			t.Fatal(err)
		}
		if err := (verify.Config{Scheme: s.Scheme, Secret: other}).Verify(vr); !errors.Is(err, verify.ErrSignature) {
			t.Errorf("%s %s verifies under another secret: %v", s.Provider, s.Event, err)
		}
		resp, err := client.Send(ctx, relay.ingress(channels[s.Scheme]), req.Method, req.Headers, req.Body, 10*time.Second)
		if err != nil || resp.Status != http.StatusAccepted {
			t.Errorf("%s %s at the relay's ingress: %v %v %s", s.Provider, s.Event, resp.Status, err, resp.Body)
		}
	}
}
