package main

import (
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/client"
	"github.com/hookrelay/hookrelay/server/verify"
	"github.com/hookrelay/hookrelay/server/wireheader"
)

// The tests in this file run listen, trigger and events replay as
// processes against a real "hookrelay server" process, with an app that
// checks signatures with the relay's own verification code.

func adminAPI(addr string) *client.API { return client.NewAPI("http://"+addr, killTestToken) }

// verifies reports the app's verdict on a request: the relay's verification
// code run on what the app received.
func verifies(scheme, secret string, r targetRequest) error {
	vr := verify.Request{Body: r.body}
	for _, h := range r.headers {
		vr.Headers = append(vr.Headers, verify.Header{Name: h.Name, Value: h.Value})
	}
	return verify.Config{Scheme: scheme, Secret: secret}.Verify(vr)
}

func headerValue(hs []wireheader.Header, name string) string {
	for _, h := range hs {
		if strings.EqualFold(h.Name, name) {
			return h.Value
		}
	}
	return ""
}

// waitAgent waits until an agent of channel is connected, as the relay
// lists it (the agent's own output is not part of what is tested here).
func waitAgent(t *testing.T, addr, channel string) {
	t.Helper()
	ok := pollUntil(20*time.Second, func() bool {
		var out struct {
			Agents []json.RawMessage `json:"agents"`
		}
		err := adminAPI(addr).Do(t.Context(), http.MethodGet, "/api/v1/channels/"+channel+"/agents", nil, &out)
		return err == nil && len(out.Agents) > 0
	})
	if !ok {
		t.Fatalf("no agent of channel %s connected", channel)
	}
}

// stop interrupts p as Ctrl-C would and returns its exit code.
func (p *proc) stop(t *testing.T) int {
	t.Helper()
	if err := p.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	return p.waitExit(t, 20*time.Second)
}

// TestListenCreatesForwardsAndDeletes: "listen PORT" makes a temporary
// channel, prints its URL, forwards a webhook to localhost:PORT with the
// app's answer back to the sender, and deletes the channel on Ctrl-C.
func TestListenCreatesForwardsAndDeletes(t *testing.T) {
	t.Parallel()
	addr, env := relayForCapture(t)
	app := newRawTarget(t, "app")
	port := app.URL[strings.LastIndexByte(app.URL, ':')+1:]
	listen := start(t, env, "listen", port)
	line := listen.waitLine(t, "Webhook URL", 30*time.Second)
	chURL := strings.Fields(line)[2]
	channel := filepath.Base(chURL)
	if chURL != "http://"+addr+"/h/"+channel {
		t.Fatalf("webhook URL line %q", line)
	}
	waitAgent(t, addr, channel)
	ch, err := adminAPI(addr).GetChannel(t.Context(), channel)
	if err != nil || ch.ExpiresAt == nil || time.Until(*ch.ExpiresAt) > 24*time.Hour || time.Until(*ch.ExpiresAt) < 23*time.Hour {
		t.Fatalf("the temporary channel: %+v %v (want a 24h TTL)", ch, err)
	}

	body := []byte(`{"hello":"listen"}`)
	status, _, answer := rawPost(t, addr, "/h/"+channel+"/github", webhookHeaders(body, "Content-Type", "application/json"), body)
	if status != http.StatusAccepted || answer != "app got it" {
		t.Fatalf("sender got %d %q", status, answer)
	}
	if got := app.next(t); string(got.body) != string(body) {
		t.Errorf("app got %q", got.body)
	}
	listen.waitLine(t, "/github", 5*time.Second)

	if code := listen.stop(t); code != 0 {
		t.Fatalf("listen exited %d:\n%s", code, listen.output())
	}
	if !strings.Contains(listen.output(), "deleted channel "+channel) {
		t.Errorf("no word of the deletion:\n%s", listen.output())
	}
	if _, err := adminAPI(addr).GetChannel(t.Context(), channel); !client.IsStatus(err, http.StatusNotFound) {
		t.Errorf("the channel outlived listen: %v", err)
	}
}

// TestListenKeepAndNamedChannel: --keep keeps the temporary channel;
// --channel NAME creates a channel the first time, reuses it the next, and
// keeps the signing secret that --verify made the first time.
func TestListenKeepAndNamedChannel(t *testing.T) {
	t.Parallel()
	addr, env := relayForCapture(t)
	app := newRawTarget(t, "app")

	keep := start(t, env, "listen", app.URL, "--keep", "--json")
	var banner struct {
		Listen struct {
			Channel, URL, Target string
			Temporary            bool
		} `json:"listen"`
	}
	if err := json.Unmarshal([]byte(keep.waitLine(t, `{"listen"`, 30*time.Second)), &banner); err != nil {
		t.Fatal(err)
	}
	if banner.Listen.Target != app.URL || banner.Listen.Temporary || banner.Listen.Channel == "" {
		t.Fatalf("--json banner %+v", banner)
	}
	waitAgent(t, addr, banner.Listen.Channel)
	if code := keep.stop(t); code != 0 || strings.Contains(keep.output(), "deleted channel") {
		t.Fatalf("listen --keep exited %d:\n%s", code, keep.output())
	}
	if _, err := adminAPI(addr).GetChannel(t.Context(), banner.Listen.Channel); err != nil {
		t.Errorf("--keep did not keep the channel: %v", err)
	}

	name := randomName("named-")
	secretRE := regexp.MustCompile(`Signing secret  ([0-9a-f]{64}) \(github\)`)
	var secrets []string
	for range 2 {
		l := start(t, env, "listen", app.URL, "--channel", name, "--verify", "github")
		m := secretRE.FindStringSubmatch(l.waitLine(t, "Signing secret", 30*time.Second))
		if m == nil {
			t.Fatalf("no GitHub secret printed:\n%s", l.output())
		}
		secrets = append(secrets, m[1])
		waitAgent(t, addr, name)
		if code := l.stop(t); code != 0 || strings.Contains(l.output(), "deleted channel") {
			t.Fatalf("listen --channel exited %d:\n%s", code, l.output())
		}
	}
	if secrets[0] != secrets[1] {
		t.Errorf("the second listen changed the secret the provider has: %s, then %s", secrets[0], secrets[1])
	}
	s, err := adminAPI(addr).ChannelSecret(t.Context(), name)
	if err != nil || s.Verify != "github" || s.Secret != secrets[0] {
		t.Errorf("named channel's verification %+v %v", s, err)
	}
}

// TestTriggerSignsWithTheChannelSecret: "listen --verify stripe" with the
// provider's secret, then "trigger" sends a sample through the relay (whose
// ingress verifies it) to the app, whose verification accepts it; --set
// changes the body; --url sends straight to the app.
func TestTriggerSignsWithTheChannelSecret(t *testing.T) {
	t.Parallel()
	addr, env := relayForCapture(t)
	app := newRawTarget(t, "app")
	const secret = "whsec_trigger_test_secret"
	name := randomName("stripe-")
	listen := start(t, env, "listen", app.URL+"/webhooks", "--channel", name, "--verify", "stripe", "--secret", secret)
	listen.waitLine(t, "Signing secret", 30*time.Second)
	waitAgent(t, addr, name)
	if !strings.Contains(listen.output(), "Signing secret  "+secret+" (stripe)") {
		t.Errorf("listen did not print the secret:\n%s", listen.output())
	}

	out, code := run(t, env, "trigger", "stripe", "payment_intent.succeeded", "--channel", name, "--set", "data.object.amount=2000")
	if code != 0 || !strings.HasPrefix(out, "202 Accepted\n") || !strings.Contains(out, "app got it") {
		t.Fatalf("trigger: exit %d: %s", code, out)
	}
	got := app.next(t)
	if err := verifies("stripe", secret, got); err != nil {
		t.Errorf("the app rejects the sample: %v", err)
	}
	var ev struct {
		Type string `json:"type"`
		Data struct {
			Object struct{ Amount int } `json:"object"`
		} `json:"data"`
	}
	if err := json.Unmarshal(got.body, &ev); err != nil || ev.Type != "payment_intent.succeeded" || ev.Data.Object.Amount != 2000 {
		t.Errorf("the app got %+v (%v)", ev, err)
	}
	var names []string
	for _, h := range normalized(got.headers) {
		names = append(names, h.Name)
	}
	want := []string{"Content-Type", "Cache-Control", "User-Agent", "Accept", "Stripe-Signature", "Content-Length", "Hookrelay-Event-Id"}
	if !slices.Equal(names, want) {
		t.Errorf("headers at the app %v, want %v", names, want)
	}

	// Straight to the app, with --secret.
	out, code = run(t, nil, "trigger", "slack", "slash_command", "--url", app.URL+"/slack", "--secret", "slack-secret", "--set", "text=deploy prod")
	if code != 0 || out != "202 Accepted\napp got it\n" {
		t.Fatalf("trigger --url: exit %d: %q", code, out)
	}
	got = app.next(t)
	if err := verifies("slack", "slack-secret", got); err != nil || !strings.Contains(string(got.body), "text=deploy+prod") {
		t.Errorf("slash command at the app: %q (%v)", got.body, err)
	}

	// An app that refuses the webhook makes trigger fail.
	out, code = run(t, nil, "trigger", "github", "ping", "--url", "http://"+addr+"/h/no-such-channel")
	if code != 1 || !strings.Contains(out, "404 Not Found") {
		t.Errorf("trigger to a missing channel: exit %d: %s", code, out)
	}
}

func TestTriggerErrors(t *testing.T) {
	t.Parallel()
	addr, env := relayForCapture(t)
	out, code := run(t, nil, "trigger", "--list")
	for _, want := range []string{"github    push", "github    workflow_run", "stripe    checkout.session.completed", "slack     slash_command", "standard-webhooks  user.created"} {
		if code != 0 || !strings.Contains(strings.Join(strings.Fields(out), " "), strings.Join(strings.Fields(want), " ")) {
			t.Errorf("trigger --list lacks %q: exit %d:\n%s", want, code, out)
		}
	}
	plain := createChannelProc(t, env)
	signed := randomName("gh-")
	if _, err := adminAPI(addr).CreateChannel(t.Context(), client.CreateChannel{ID: signed}); err != nil {
		t.Fatal(err)
	}
	scheme, sec := "github", "s"
	if _, err := adminAPI(addr).UpdateChannel(t.Context(), signed, client.UpdateChannel{Verify: &scheme, Secret: &sec}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"trigger", "github"}, 2, "a provider and an event"},
		{[]string{"trigger", "github", "push"}, 2, "--channel CHANNEL"},
		{[]string{"trigger", "github", "push", "--channel", plain, "--url", "http://x"}, 2, "--channel CHANNEL"},
		{[]string{"trigger", "gitlab", "push", "--url", "http://x"}, 2, "the providers are"},
		{[]string{"trigger", "github", "nope", "--url", "http://x"}, 2, "has no event"},
		{[]string{"trigger", "github", "push", "--url", "http://x", "--set", "=1"}, 2, "path=value"},
		{[]string{"trigger", "stripe", "invoice.paid", "--channel", plain}, 2, "verifies no signature"},
		{[]string{"trigger", "stripe", "invoice.paid", "--channel", signed}, 1, "verifies github signatures"},
		{[]string{"trigger", "github", "push", "--channel", "no-such-channel"}, 1, "404"},
	} {
		out, code := run(t, env, tc.args...)
		if code != tc.code || !strings.Contains(out, tc.want) {
			t.Errorf("%v: exit %d: %s (want %d and %q)", tc.args, code, out, tc.code, tc.want)
		}
	}
	// GitHub without a secret is sent unsigned, and the relay accepts it on a
	// channel that verifies nothing.
	out, code = run(t, env, "trigger", "github", "push", "--channel", plain)
	if code != 0 || !strings.HasPrefix(out, "202 Accepted") {
		t.Errorf("unsigned GitHub push: exit %d: %s", code, out)
	}
}

// TestReplayWithEdits drives "events replay" with each edit option: edited
// headers, a new body re-signed so the app's verification accepts it, and
// --to, which sends from the command line with no agent and no new event.
func TestReplayWithEdits(t *testing.T) {
	t.Parallel()
	addr, env := relayForCapture(t)
	app, second := newRawTarget(t, "app"), newRawTarget(t, "second")
	const secret = "replay-edit-secret"
	name := randomName("edit-")
	start(t, env, "listen", app.URL, "--channel", name, "--verify", "github", "--secret", secret)
	waitAgent(t, addr, name)

	out, code := run(t, env, "trigger", "github", "push", "--channel", name)
	if code != 0 {
		t.Fatalf("trigger: exit %d: %s", code, out)
	}
	id := regexp.MustCompile(`event (evt_[a-z0-9]+)`).FindStringSubmatch(out)
	if id == nil {
		t.Fatalf("trigger printed no event id: %s", out)
	}
	orig := app.next(t)
	if err := verifies("github", secret, orig); err != nil {
		t.Fatal(err)
	}
	newID := regexp.MustCompile(`as event (evt_[a-z0-9]+)`)

	// Headers: one replaced in place, one removed.
	out, code = run(t, env, "events", "replay", id[1], "--header", "X-GitHub-Event: ping", "--remove-header", "x-github-hook-id")
	m := newID.FindStringSubmatch(out)
	if code != 0 || m == nil {
		t.Fatalf("replay with edited headers: exit %d: %s", code, out)
	}
	got := app.next(t)
	if headerValue(got.headers, "X-GitHub-Event") != "ping" || headerValue(got.headers, "X-GitHub-Hook-ID") != "" ||
		headerValue(got.headers, "Hookrelay-Event-Id") != m[1] || string(got.body) != string(orig.body) {
		t.Errorf("edited headers at the app: %v", got.headers)
	}
	if err := verifies("github", secret, got); err != nil {
		t.Errorf("same body, same signature: %v", err)
	}
	out, code = run(t, env, "events", "show", m[1])
	if code != 0 || !strings.Contains(out, "an edited replay of event "+id[1]) {
		t.Errorf("events show of the replay: exit %d: %s", code, out)
	}

	// A new body: the old signature fails; --resign makes it verify.
	fixed := filepath.Join(t.TempDir(), "fixed.json")
	if err := os.WriteFile(fixed, []byte(`{"ref":"refs/heads/fixed"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, code = run(t, env, "events", "replay", id[1], "--body-file", fixed); code != 0 {
		t.Fatalf("replay --body-file: exit %d: %s", code, out)
	}
	if got := app.next(t); !errors.Is(verifies("github", secret, got), verify.ErrSignature) || string(got.body) != `{"ref":"refs/heads/fixed"}` {
		t.Errorf("a new body with the old signature: %q verifies: %v", got.body, verifies("github", secret, got))
	}
	if out, code = run(t, env, "events", "replay", id[1], "--body-file", fixed, "--resign"); code != 0 {
		t.Fatalf("replay --resign: exit %d: %s", code, out)
	}
	if got := app.next(t); verifies("github", secret, got) != nil || string(got.body) != `{"ref":"refs/heads/fixed"}` {
		t.Errorf("re-signed body at the app: %q: %v", got.body, verifies("github", secret, got))
	}

	// --to: straight to another app, edited and re-signed, no new event.
	before, err := adminAPI(addr).ListEvents(t.Context(), name, nil)
	if err != nil {
		t.Fatal(err)
	}
	out, code = run(t, env, "events", "replay", id[1], "--to", second.URL+"/hooks", "--body-file", fixed, "--resign", "--header", "X-Extra: 1")
	if code != 0 || out != "202 Accepted\nsecond got it" {
		t.Fatalf("replay --to: exit %d: %q", code, out)
	}
	direct := second.next(t)
	if err := verifies("github", secret, direct); err != nil || string(direct.body) != `{"ref":"refs/heads/fixed"}` {
		t.Errorf("--to re-signed: %q: %v", direct.body, err)
	}
	var origNames, directNames []string
	for _, h := range normalized(orig.headers) {
		origNames = append(origNames, h.Name)
	}
	for _, h := range normalized(direct.headers) {
		if h.Name != "X-Extra" {
			directNames = append(directNames, h.Name)
		}
	}
	if !slices.Equal(origNames, directNames) || headerValue(direct.headers, "Hookrelay-Event-Id") != id[1] {
		t.Errorf("--to header order:\n got  %v\n want %v", directNames, origNames)
	}
	after, err := adminAPI(addr).ListEvents(t.Context(), name, nil)
	if err != nil || len(after.Events) != len(before.Events) {
		t.Errorf("--to stored an event: %d before, %d after (%v)", len(before.Events), len(after.Events), err)
	}

	// A plain replay still reaches the agent; --group does not mix with edits.
	if out, code = run(t, env, "events", "replay", id[1]); code != 0 || !strings.Contains(out, "to 1 group(s)") {
		t.Errorf("plain replay: exit %d: %s", code, out)
	}
	if got := app.next(t); headerValue(got.headers, "Hookrelay-Event-Id") != id[1] {
		t.Errorf("plain replay delivered event %s", headerValue(got.headers, "Hookrelay-Event-Id"))
	}
	for _, args := range [][]string{
		{"events", "replay", id[1], "--group", "g", "--header", "X: 1"},
		{"events", "replay", id[1], "--group", "g", "--to", second.URL},
		{"events", "replay", id[1], "--header", "no colon"},
		{"events", "replay", id[1], "--remove-header", "bad name"},
	} {
		if out, code := run(t, env, args...); code != 2 {
			t.Errorf("%v: exit %d: %s", args, code, out)
		}
	}
}
