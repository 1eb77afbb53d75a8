package verify

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/protocol"
	"github.com/hookrelay/hookrelay/webhook"
)

// Sign signs r as cfg's sender would, with webhook.Signer (the one
// implementation of each scheme's signing), at r.Now (time.Now() when
// zero), and returns r's headers with the signature's set: the tests in
// this file check that Verify accepts what the signer makes, and that the
// signer reproduces the providers' published signatures.
func Sign(cfg Config, r Request) ([]Header, error) {
	now := r.Now
	if now.IsZero() {
		now = time.Now()
	}
	in := make([]protocol.Header, len(r.Headers))
	for i, h := range r.Headers {
		in[i] = protocol.Header(h)
	}
	out, err := webhook.Signer{Scheme: cfg.Scheme, Secret: cfg.Secret, Header: cfg.Header}.Sign(in, r.Body, now)
	if err != nil {
		return nil, err
	}
	hs := make([]Header, len(out))
	for i, h := range out {
		hs[i] = Header(h)
	}
	return hs, nil
}

// signConfigs has one valid Config per scheme (two for hmac).
func signConfigs() []Config {
	return []Config{
		{Scheme: "github", Secret: "gh-secret"},
		{Scheme: "stripe", Secret: "whsec_stripe_as_is"},
		{Scheme: "slack", Secret: "8f742231b10e8888abcd99yyyzzz85a5"},
		{Scheme: "standard-webhooks", Secret: stdSecret},
		{Scheme: "hmac", Secret: "generic"},
		{Scheme: "hmac", Secret: "generic", Header: "X-Webhook-Signature", Tolerance: time.Second},
	}
}

func TestSignVerifyRoundTrip(t *testing.T) {
	t.Parallel()
	bodies := map[string][]byte{
		"empty":  nil,
		"json":   []byte(`{"type":"invoice.paid","data":{"amount":100}}`),
		"binary": {0, 1, 2, 0xff, 0xfe, '\n', '\r', 0},
		"large":  bytes.Repeat([]byte("0123456789abcdef"), 1<<16),
	}
	for _, cfg := range signConfigs() {
		for bodyName, body := range bodies {
			t.Run(cfg.Scheme+"/"+cfg.Header+"/"+bodyName, func(t *testing.T) {
				t.Parallel()
				r := Request{Method: "POST", Path: "/h/ch/x", Body: body, Now: now}
				hs, err := Sign(cfg, r)
				if err != nil {
					t.Fatalf("Sign: %v", err)
				}
				r.Headers = append([]Header{{"Content-Type", "application/json"}}, hs...)
				if err := cfg.Verify(r); err != nil {
					t.Fatalf("Verify after Sign: %v (headers %q)", err, hs)
				}
				// Another secret of the same shape must not verify.
				other := cfg
				other.Secret = strings.Replace(cfg.Secret, "M", "N", 1) + "x"
				if cfg.Scheme == "standard-webhooks" {
					other.Secret = "whsec_" + strings.Repeat("A", 32)
				}
				if err := other.Verify(r); !errors.Is(err, ErrSignature) {
					t.Errorf("Verify with another secret: %v, want ErrSignature", err)
				}
				// Neither must a changed body.
				changed := r
				changed.Body = append(append([]byte(nil), body...), '!')
				if err := cfg.Verify(changed); !errors.Is(err, ErrSignature) {
					t.Errorf("Verify with a changed body: %v, want ErrSignature", err)
				}
			})
		}
	}
}

// TestSignTimestamp: timestamped schemes sign r.Now, so a signature made
// within the tolerance verifies and one made outside does not.
func TestSignTimestamp(t *testing.T) {
	t.Parallel()
	for _, cfg := range signConfigs() {
		t.Run(cfg.Scheme, func(t *testing.T) {
			t.Parallel()
			r := Request{Body: []byte("x"), Now: now.Add(-4 * time.Minute)}
			hs, err := Sign(cfg, r)
			if err != nil {
				t.Fatal(err)
			}
			r.Headers, r.Now = hs, now
			if err := cfg.Verify(r); err != nil {
				t.Errorf("signed 4m ago: %v", err)
			}
			r.Now = now.Add(2 * time.Minute) // 6m after signing
			err = cfg.Verify(r)
			switch cfg.Scheme {
			case "github", "hmac": // no timestamp signed
				if err != nil {
					t.Errorf("signed 6m ago: %v", err)
				}
			default:
				if !errors.Is(err, ErrSignature) || !strings.Contains(err.Error(), "is 6m too old (tolerance 5m0s)") {
					t.Errorf("signed 6m ago: %v, want too old", err)
				}
			}
		})
	}
}

// TestSignPublishedVectors: the webhook package's signer reproduces the
// providers' published signatures exactly (see verify_test.go for the
// sources).
func TestSignPublishedVectors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  Config
		req  Request
		want []Header
	}{
		{
			name: "github",
			cfg:  Config{Scheme: "github", Secret: "It's a Secret to Everybody"},
			req:  Request{Body: []byte("Hello, World!"), Now: now},
			want: []Header{{"X-Hub-Signature-256", "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"}},
		},
		{
			name: "slack",
			cfg:  Config{Scheme: "slack", Secret: "8f742231b10e8888abcd99yyyzzz85a5"},
			req: Request{
				Body: []byte("token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"),
				Now:  time.Unix(1531420618, 0),
			},
			want: []Header{
				{"X-Slack-Request-Timestamp", "1531420618"},
				{"X-Slack-Signature", "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"},
			},
		},
		{
			name: "standard-webhooks",
			cfg:  Config{Scheme: "standard-webhooks", Secret: stdSecret},
			req: Request{
				Headers: headers("Webhook-Id", stdMsgID),
				Body:    []byte(stdPayload),
				Now:     time.Unix(1614265330, 0),
			},
			want: []Header{{"Webhook-Id", stdMsgID}, {"webhook-timestamp", stdTS}, {"webhook-signature", stdSig}},
		},
		{
			name: "standard-webhooks, id from svix-id",
			cfg:  Config{Scheme: "standard-webhooks", Secret: strings.TrimPrefix(stdSecret, "whsec_")},
			req: Request{
				Headers: headers("svix-id", stdMsgID),
				Body:    []byte(stdPayload),
				Now:     time.Unix(1614265330, 999_000_000), // sub-second part dropped
			},
			want: []Header{{"svix-id", stdMsgID}, {"svix-timestamp", stdTS}, {"svix-signature", stdSig}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := Sign(tc.cfg, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("Sign = %q, want %q", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("Sign header %d = %q, want %q", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestSignHeaders(t *testing.T) {
	t.Parallel()
	r := Request{Body: []byte("b"), Now: now}
	names := func(hs []Header) string {
		var ns []string
		for _, h := range hs {
			ns = append(ns, h.Name)
		}
		return strings.Join(ns, ",")
	}
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Scheme: "github", Secret: "s"}, "X-Hub-Signature-256"},
		{Config{Scheme: "stripe", Secret: "s"}, "Stripe-Signature"},
		{Config{Scheme: "slack", Secret: "s"}, "X-Slack-Request-Timestamp,X-Slack-Signature"},
		{Config{Scheme: "standard-webhooks", Secret: stdSecret}, "webhook-id,webhook-timestamp,webhook-signature"},
		{Config{Scheme: "hmac", Secret: "s"}, "X-Signature"},
		{Config{Scheme: "hmac", Secret: "s", Header: "X-Custom-Sig"}, "X-Custom-Sig"},
	} {
		hs, err := Sign(tc.cfg, r)
		if err != nil {
			t.Fatal(err)
		}
		if got := names(hs); got != tc.want {
			t.Errorf("%s: Sign header names %s, want %s", tc.cfg.Scheme, got, tc.want)
		}
	}

	// Without a webhook-id, each Sign makes a new message id.
	std := Config{Scheme: "standard-webhooks", Secret: stdSecret}
	a, _ := Sign(std, r)
	b, _ := Sign(std, r)
	if !strings.HasPrefix(a[0].Value, "msg_") || a[0].Value == b[0].Value {
		t.Errorf("generated message ids %q and %q: want distinct msg_ ids", a[0].Value, b[0].Value)
	}

	// Timestamps before 1970 cannot be written in any of the schemes.
	if _, err := Sign(Config{Scheme: "stripe", Secret: "s"}, Request{Now: time.Unix(-1, 0)}); err == nil {
		t.Error("Sign before 1970: no error")
	}
	if _, err := Sign(Config{Scheme: "github", Secret: "s"}, Request{Now: time.Unix(-1, 0)}); err != nil {
		t.Errorf("Sign github before 1970: %v (github signs no timestamp)", err)
	}
}
