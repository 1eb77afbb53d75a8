package webhook_test

import (
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // GitHub's legacy signature header
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/protocol"
	"github.com/hookrelay/hookrelay/webhook"
)

// The verifiers in this file are written from the providers' published
// verification recipes, apart from package webhook's signer, so that a
// mistake in the signer cannot hide behind the same mistake here.

func header(hs []protocol.Header, name string) string {
	for _, h := range hs {
		if strings.EqualFold(h.Name, name) {
			return h.Value
		}
	}
	return ""
}

func hmacHex(h func() hash.Hash, key, msg []byte) string {
	m := hmac.New(h, key)
	m.Write(msg)
	return hex.EncodeToString(m.Sum(nil))
}

// checkGitHub: X-Hub-Signature-256 is "sha256=" and the hex HMAC-SHA256 of
// the body under the secret; X-Hub-Signature the same with SHA-1.
func checkGitHub(secret string, hs []protocol.Header, body []byte) error {
	want := "sha256=" + hmacHex(sha256.New, []byte(secret), body)
	if got := header(hs, "X-Hub-Signature-256"); !hmac.Equal([]byte(got), []byte(want)) {
		return fmt.Errorf("X-Hub-Signature-256 %q, want %q", got, want)
	}
	if got := header(hs, "X-Hub-Signature"); got != "sha1="+hmacHex(sha1.New, []byte(secret), body) {
		return fmt.Errorf("X-Hub-Signature %q", got)
	}
	return nil
}

// checkStripe: Stripe-Signature is "t=TS,v1=SIG"; SIG is the hex
// HMAC-SHA256 of TS "." body under the whole whsec_ secret.
func checkStripe(secret string, hs []protocol.Header, body []byte, now time.Time) error {
	var ts string
	var sigs []string
	for _, kv := range strings.Split(header(hs, "Stripe-Signature"), ",") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sigs = append(sigs, v)
		}
	}
	if err := checkTime(ts, now); err != nil {
		return err
	}
	want := hmacHex(sha256.New, []byte(secret), []byte(ts+"."+string(body)))
	if !slices.Contains(sigs, want) {
		return fmt.Errorf("no v1 signature matches: %q", header(hs, "Stripe-Signature"))
	}
	return nil
}

// checkSlack: X-Slack-Signature is "v0=" and the hex HMAC-SHA256 of
// "v0:" TIMESTAMP ":" body, TIMESTAMP from X-Slack-Request-Timestamp.
func checkSlack(secret string, hs []protocol.Header, body []byte, now time.Time) error {
	ts := header(hs, "X-Slack-Request-Timestamp")
	if err := checkTime(ts, now); err != nil {
		return err
	}
	want := "v0=" + hmacHex(sha256.New, []byte(secret), []byte("v0:"+ts+":"+string(body)))
	if got := header(hs, "X-Slack-Signature"); got != want {
		return fmt.Errorf("X-Slack-Signature %q, want %q", got, want)
	}
	return nil
}

// checkStandard: webhook-signature holds space-separated "v1,BASE64"
// entries; one is the HMAC-SHA256 of ID "." TIMESTAMP "." body under the
// key that is the base64 after "whsec_".
func checkStandard(secret string, hs []protocol.Header, body []byte, now time.Time) error {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return err
	}
	id, ts := header(hs, "webhook-id"), header(hs, "webhook-timestamp")
	if id == "" {
		return errors.New("no webhook-id")
	}
	if err := checkTime(ts, now); err != nil {
		return err
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id + "." + ts + "."))
	m.Write(body)
	want := "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
	if !slices.Contains(strings.Fields(header(hs, "webhook-signature")), want) {
		return fmt.Errorf("webhook-signature %q lacks %q", header(hs, "webhook-signature"), want)
	}
	return nil
}

func checkTime(ts string, now time.Time) error {
	n, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("timestamp %q: %v", ts, err)
	}
	if n != now.Unix() {
		return fmt.Errorf("timestamp %d, want %d", n, now.Unix())
	}
	return nil
}

var testSecrets = map[string]string{
	webhook.GitHub:           "It's a Secret to Everybody",
	webhook.Stripe:           "whsec_5f1c0a2e9b8d7c6f5e4d3c2b1a0f9e8d",
	webhook.Slack:            "8f742231b10e8888abcd99yyyzzz85a5",
	webhook.StandardWebhooks: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
}

func checkSignature(scheme, secret string, req webhook.Request, now time.Time) error {
	switch scheme {
	case webhook.GitHub:
		return checkGitHub(secret, req.Headers, req.Body)
	case webhook.Stripe:
		return checkStripe(secret, req.Headers, req.Body, now)
	case webhook.Slack:
		return checkSlack(secret, req.Headers, req.Body, now)
	case webhook.StandardWebhooks:
		return checkStandard(secret, req.Headers, req.Body, now)
	}
	return fmt.Errorf("no check for %s", scheme)
}

// eventOf says which event a request is, the way an app reads it.
func eventOf(t *testing.T, provider string, req webhook.Request) string {
	t.Helper()
	if provider == "github" {
		return header(req.Headers, "X-GitHub-Event")
	}
	if strings.HasPrefix(header(req.Headers, "Content-Type"), "application/x-www-form-urlencoded") {
		form, err := url.ParseQuery(string(req.Body))
		if err != nil {
			t.Fatalf("form body: %v", err)
		}
		if form.Get("command") != "" {
			return "slash_command"
		}
		return ""
	}
	var body struct {
		Type  string `json:"type"`
		Event struct {
			Type string `json:"type"`
		} `json:"event"`
	}
	if err := json.Unmarshal(req.Body, &body); err != nil {
		t.Fatalf("JSON body: %v", err)
	}
	if body.Type == "event_callback" {
		return body.Event.Type
	}
	return body.Type
}

// TestEverySampleVerifies builds each sample event and checks it as the
// provider's receiving app would: the signature by the published recipe,
// the event it names, fresh ids and times, and header lines that HTTP can
// carry.
func TestEverySampleVerifies(t *testing.T) {
	t.Parallel()
	samples := webhook.Samples()
	want := map[string][]string{
		"github":            {"issues", "ping", "pull_request", "push", "workflow_run"},
		"stripe":            {"checkout.session.completed", "customer.subscription.updated", "invoice.paid", "payment_intent.succeeded"},
		"slack":             {"app_mention", "slash_command", "url_verification"},
		"standard-webhooks": {"invoice.paid", "user.created"},
	}
	got := map[string][]string{}
	for _, s := range samples {
		got[s.Provider] = append(got[s.Provider], s.Event)
	}
	for p, evs := range want {
		if !slices.Equal(got[p], evs) {
			t.Errorf("%s samples %v, want %v", p, got[p], evs)
		}
	}
	now := time.Unix(1795600123, 456789000)
	for _, s := range samples {
		t.Run(s.Provider+"/"+s.Event, func(t *testing.T) {
			t.Parallel()
			secret := testSecrets[s.Scheme]
			req, err := webhook.BuildSample(s.Provider, s.Event, webhook.SampleOptions{Secret: secret, Now: now})
			if err != nil {
				t.Fatal(err)
			}
			if err := checkSignature(s.Scheme, secret, req, now); err != nil {
				t.Fatalf("signature: %v\nheaders %v", err, req.Headers)
			}
			if err := checkSignature(s.Scheme, secret+"x", req, now); err == nil {
				t.Fatal("the signature verifies with another secret too")
			}
			if ev := eventOf(t, s.Provider, req); ev != s.Event {
				t.Errorf("the request names event %q, want %q", ev, s.Event)
			}
			if req.Method != "POST" || header(req.Headers, "Content-Type") == "" || header(req.Headers, "User-Agent") == "" {
				t.Errorf("method %s, headers %v", req.Method, req.Headers)
			}
			for _, h := range req.Headers {
				if err := webhook.ValidHeader(h); err != nil || h.Value == "" {
					t.Errorf("header %q: %q (%v)", h.Name, h.Value, err)
				}
			}
			again, err := webhook.BuildSample(s.Provider, s.Event, webhook.SampleOptions{Secret: secret, Now: now})
			if err != nil {
				t.Fatal(err)
			}
			// Ids differ per delivery, as the providers' do.
			if (s.Provider == "stripe" || s.Provider == "slack") && string(again.Body) == string(req.Body) {
				t.Errorf("two builds of %s have the same body: no fresh id", s.Event)
			}
			switch s.Provider {
			case "github":
				if header(again.Headers, "X-GitHub-Delivery") == header(req.Headers, "X-GitHub-Delivery") {
					t.Error("two builds share an X-GitHub-Delivery")
				}
			case "standard-webhooks":
				if header(again.Headers, "webhook-id") == header(req.Headers, "webhook-id") {
					t.Error("two builds share a webhook-id")
				}
			case "stripe":
				var ev struct {
					ID      string `json:"id"`
					Created int64  `json:"created"`
					Object  string `json:"object"`
					Data    struct {
						Object map[string]any `json:"object"`
					} `json:"data"`
				}
				if err := json.Unmarshal(req.Body, &ev); err != nil || !strings.HasPrefix(ev.ID, "evt_") ||
					ev.Created != now.Unix() || ev.Object != "event" || ev.Data.Object["id"] == nil {
					t.Errorf("stripe event %+v (%v)", ev, err)
				}
				if !strings.HasPrefix(string(req.Body), "{\n  \"id\": ") {
					t.Errorf("stripe sends indented JSON; got %.40q", req.Body)
				}
			}
		})
	}
}

// TestGitHubKnownVector checks the signer against the example GitHub
// publishes for validating deliveries.
func TestGitHubKnownVector(t *testing.T) {
	t.Parallel()
	hs, err := webhook.Signer{Scheme: webhook.GitHub, Secret: "It's a Secret to Everybody"}.Sign(nil, []byte("Hello, World!"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	want := []protocol.Header{{Name: "X-Hub-Signature-256", Value: "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"}}
	if !slices.Equal(hs, want) {
		t.Fatalf("got %v, want %v", hs, want)
	}
}

func TestSampleWithoutSecret(t *testing.T) {
	t.Parallel()
	req, err := webhook.BuildSample("github", "push", webhook.SampleOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range req.Headers {
		if strings.HasPrefix(strings.ToLower(h.Name), "x-hub-signature") {
			t.Errorf("an unsigned GitHub webhook has %s", h.Name)
		}
	}
	for _, p := range []string{"stripe", "slack", "standard-webhooks"} {
		ev := map[string]string{"stripe": "invoice.paid", "slack": "app_mention", "standard-webhooks": "user.created"}[p]
		if _, err := webhook.BuildSample(p, ev, webhook.SampleOptions{}); !errors.Is(err, webhook.ErrNoSecret) {
			t.Errorf("%s without a secret: %v, want ErrNoSecret", p, err)
		}
	}
	for _, c := range [][2]string{{"gitlab", "push"}, {"github", "nope"}, {"github", "../stripe/invoice.paid"}, {"github", ""}} {
		if _, err := webhook.BuildSample(c[0], c[1], webhook.SampleOptions{Secret: "s"}); !errors.Is(err, webhook.ErrUnknownSample) {
			t.Errorf("%s %s: %v, want ErrUnknownSample", c[0], c[1], err)
		}
	}
}

func TestSetOverridesFields(t *testing.T) {
	t.Parallel()
	now := time.Unix(1795600000, 0)
	secret := testSecrets[webhook.Stripe]
	req, err := webhook.BuildSample("stripe", "payment_intent.succeeded", webhook.SampleOptions{
		Secret: secret, Now: now,
		Set: []string{
			"data.object.amount=2000",           // a number stays a number
			"data.object.currency=eur",          // a string
			"data.object.description=1234",      // a string field stays a string
			`data.object.metadata.order_id="7"`, // quoted: a string
			"data.object.metadata.new=true",     // created
			"id=evt_fixed",
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	var ev struct {
		ID   string `json:"id"`
		Data struct {
			Object struct {
				Amount      json.Number    `json:"amount"`
				Currency    string         `json:"currency"`
				Description string         `json:"description"`
				Metadata    map[string]any `json:"metadata"`
			} `json:"object"`
		} `json:"data"`
	}
	if err := json.Unmarshal(req.Body, &ev); err != nil {
		t.Fatal(err)
	}
	o := ev.Data.Object
	if ev.ID != "evt_fixed" || o.Amount != "2000" || o.Currency != "eur" || o.Description != "1234" ||
		o.Metadata["order_id"] != "7" || o.Metadata["new"] != true {
		t.Errorf("after --set: %+v", ev)
	}
	if err := checkStripe(secret, req.Headers, req.Body, now); err != nil {
		t.Errorf("the overridden body is not what was signed: %v", err)
	}
	// Key order is the sample's: "id" still comes first.
	if !strings.HasPrefix(string(req.Body), "{\n  \"id\": \"evt_fixed\"") {
		t.Errorf("body starts %.30q", req.Body)
	}

	form, err := webhook.BuildSample("slack", "slash_command", webhook.SampleOptions{
		Secret: testSecrets[webhook.Slack], Now: now, Set: []string{"text=prod now & later", "extra=1"}})
	if err != nil {
		t.Fatal(err)
	}
	vals, err := url.ParseQuery(string(form.Body))
	if err != nil || vals.Get("text") != "prod now & later" || vals.Get("extra") != "1" || vals.Get("command") != "/deploy" {
		t.Errorf("form after --set: %q (%v)", form.Body, err)
	}
	if !strings.HasPrefix(string(form.Body), "token=") {
		t.Errorf("form fields reordered: %.20q", form.Body)
	}
	if err := checkSlack(testSecrets[webhook.Slack], form.Headers, form.Body, now); err != nil {
		t.Error(err)
	}

	for _, bad := range []string{"novalue", "=x"} {
		if _, err := webhook.BuildSample("github", "ping", webhook.SampleOptions{Set: []string{bad}}); err == nil {
			t.Errorf("--set %q accepted", bad)
		}
	}
}

// TestSignReplacesInPlace: re-signing keeps the signature headers where
// they were, drops repeats, and signs the svix-* headers of a Svix request.
func TestSignReplacesInPlace(t *testing.T) {
	t.Parallel()
	now := time.Unix(1795600000, 0)
	body := []byte(`{"a":1}`)
	in := []protocol.Header{
		{Name: "Content-Type", Value: "application/json"},
		{Name: "stripe-signature", Value: "t=1,v1=old"},
		{Name: "X-Other", Value: "1"},
		{Name: "Stripe-Signature", Value: "t=2,v1=older"},
	}
	out, err := webhook.Signer{Scheme: webhook.Stripe, Secret: "whsec_x"}.Sign(in, body, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 3 || out[1].Name != "stripe-signature" || out[2].Name != "X-Other" || in[1].Value != "t=1,v1=old" {
		t.Fatalf("signed headers %v (input now %v)", out, in)
	}
	if err := checkStripe("whsec_x", out, body, now); err != nil {
		t.Fatal(err)
	}

	svix := []protocol.Header{{Name: "svix-id", Value: "msg_1"}, {Name: "svix-timestamp", Value: "1"}, {Name: "svix-signature", Value: "v1,old"}}
	secret := testSecrets[webhook.StandardWebhooks]
	out, err = webhook.Signer{Scheme: webhook.StandardWebhooks, Secret: secret}.Sign(svix, body, now)
	if err != nil {
		t.Fatal(err)
	}
	renamed := make([]protocol.Header, len(out))
	for i, h := range out {
		renamed[i] = protocol.Header{Name: strings.Replace(h.Name, "svix-", "webhook-", 1), Value: h.Value}
	}
	if len(out) != 3 || out[0].Value != "msg_1" {
		t.Fatalf("svix headers %v", out)
	}
	if err := checkStandard(secret, renamed, body, now); err != nil {
		t.Fatal(err)
	}
	// Without an id, one is made.
	out, err = webhook.Signer{Scheme: webhook.StandardWebhooks, Secret: secret}.Sign(nil, body, now)
	if err != nil || !strings.HasPrefix(header(out, "webhook-id"), "msg_") || checkStandard(secret, out, body, now) != nil {
		t.Fatalf("new id: %v %v", out, err)
	}

	// hmac keeps a "sha256=" prefix and uses the configured header.
	out, err = webhook.Signer{Scheme: webhook.HMAC, Secret: "k", Header: "X-Sig"}.Sign(
		[]protocol.Header{{Name: "X-Sig", Value: "SHA256=old"}}, body, now)
	if err != nil || len(out) != 1 || out[0].Value != "SHA256="+hmacHex(sha256.New, []byte("k"), body) {
		t.Fatalf("hmac: %v %v", out, err)
	}
	out, err = webhook.Signer{Scheme: webhook.HMAC, Secret: "k"}.Sign(nil, body, now)
	if err != nil || header(out, "X-Signature") != hmacHex(sha256.New, []byte("k"), body) {
		t.Fatalf("hmac default header: %v %v", out, err)
	}

	// Slack: both headers, in place.
	out, err = webhook.Signer{Scheme: webhook.Slack, Secret: "s"}.Sign(nil, body, now)
	if err != nil || checkSlack("s", out, body, now) != nil {
		t.Fatalf("slack: %v %v", out, err)
	}

	for _, bad := range []webhook.Signer{{Scheme: "gitlab", Secret: "s"}, {Scheme: webhook.GitHub}, {Scheme: webhook.StandardWebhooks, Secret: "whsec_!!"}, {Scheme: webhook.HMAC, Secret: "s", Header: "bad header"}} {
		if _, err := bad.Sign(nil, body, now); err == nil {
			t.Errorf("%+v signed", bad)
		}
	}
}

func TestNewSecretSignsAndVerifies(t *testing.T) {
	t.Parallel()
	now := time.Now()
	for _, scheme := range []string{webhook.GitHub, webhook.Stripe, webhook.Slack, webhook.StandardWebhooks} {
		a, err := webhook.NewSecret(scheme)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := webhook.NewSecret(scheme)
		if a == b || len(a) < 32 {
			t.Errorf("%s secrets %q %q", scheme, a, b)
		}
		if (scheme == webhook.Stripe || scheme == webhook.StandardWebhooks) != strings.HasPrefix(a, "whsec_") {
			t.Errorf("%s secret %q", scheme, a)
		}
		hs, err := webhook.Signer{Scheme: scheme, Secret: a}.Sign([]protocol.Header{{Name: "X-Hub-Signature", Value: ""}}, []byte("x"), now)
		if err != nil {
			t.Fatal(err)
		}
		if err := checkSignature(scheme, a, webhook.Request{Headers: hs, Body: []byte("x")}, now); err != nil {
			t.Errorf("%s: %v", scheme, err)
		}
	}
	if _, err := webhook.NewSecret("gitlab"); err == nil {
		t.Error("a secret for an unknown scheme")
	}
}
