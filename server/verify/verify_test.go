package verify

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

// now is the time most cases are judged at; stale and future timestamps are
// taken relative to it.
var now = time.Unix(1700000000, 0)

func unix(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }

// hmacSum computes HMAC-SHA256 here, independently of the package, so the
// tests do not check the code against itself.
func hmacSum(secret string, parts ...string) []byte {
	h := hmac.New(sha256.New, []byte(secret))
	for _, p := range parts {
		h.Write([]byte(p))
	}
	return h.Sum(nil)
}

func hmacHex(secret string, parts ...string) string {
	return hex.EncodeToString(hmacSum(secret, parts...))
}

// headers builds a header list from name, value pairs.
func headers(nameValues ...string) []Header {
	var hs []Header
	for i := 0; i+1 < len(nameValues); i += 2 {
		hs = append(hs, Header{nameValues[i], nameValues[i+1]})
	}
	return hs
}

type verifyCase struct {
	name    string
	cfg     Config
	req     Request
	wantErr string // "" means Verify must pass; else the exact failure message
}

func runVerifyCases(t *testing.T, cases []verifyCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.cfg.Verify(tc.req)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Verify: %v, want success", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Verify passed, want %q", tc.wantErr)
			}
			if !errors.Is(err, ErrSignature) {
				t.Errorf("Verify error %q does not wrap ErrSignature", err)
			}
			if err.Error() != tc.wantErr {
				t.Errorf("Verify error:\n got %q\nwant %q", err, tc.wantErr)
			}
		})
	}
}

const mismatchMsg = "signature does not match (check the secret)"

func TestVerifyGitHub(t *testing.T) {
	t.Parallel()
	// GitHub's published example, from "Validating webhook deliveries":
	// https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries
	docCfg := Config{Scheme: "github", Secret: "It's a Secret to Everybody"}
	docBody := []byte("Hello, World!")
	const docSig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"

	cfg := Config{Scheme: "github", Secret: "s3cret"}
	body := []byte(`{"action":"opened","number":1}`)
	sig := "sha256=" + hmacHex("s3cret", string(body))
	req := func(hs ...string) Request {
		return Request{Method: "POST", Headers: headers(hs...), Body: body, Now: now}
	}

	runVerifyCases(t, []verifyCase{
		{name: "published vector", cfg: docCfg, req: Request{Headers: headers("X-Hub-Signature-256", docSig), Body: docBody}},
		{name: "published vector, body changed", cfg: docCfg, req: Request{Headers: headers("X-Hub-Signature-256", docSig), Body: []byte("Hello, World?")}, wantErr: mismatchMsg},
		{name: "valid", cfg: cfg, req: req("X-Hub-Signature-256", sig)},
		{name: "valid, lower-case header name", cfg: cfg, req: req("x-hub-signature-256", sig)},
		{name: "valid, upper-case hex", cfg: cfg, req: req("X-Hub-Signature-256", "sha256="+strings.ToUpper(sig[len("sha256="):]))},
		{name: "valid among other headers", cfg: cfg, req: req("X-GitHub-Event", "push", "X-Hub-Signature", "sha1=00", "X-Hub-Signature-256", sig)},
		{name: "tampered body", cfg: cfg, req: Request{Headers: headers("X-Hub-Signature-256", sig), Body: append(body, ' ')}, wantErr: mismatchMsg},
		{name: "empty body", cfg: cfg, req: Request{Headers: headers("X-Hub-Signature-256", sig)}, wantErr: mismatchMsg},
		{name: "wrong secret", cfg: Config{Scheme: "github", Secret: "other"}, req: req("X-Hub-Signature-256", sig), wantErr: mismatchMsg},
		{name: "missing header", cfg: cfg, req: req(), wantErr: "missing header X-Hub-Signature-256"},
		{name: "only the SHA-1 header", cfg: cfg, req: req("X-Hub-Signature", "sha1="+strings.Repeat("0", 40)), wantErr: "missing header X-Hub-Signature-256"},
		{name: "empty header", cfg: cfg, req: req("X-Hub-Signature-256", " "), wantErr: "missing header X-Hub-Signature-256"},
		{name: "first of repeated headers counts", cfg: cfg, req: req("X-Hub-Signature-256", "sha256="+strings.Repeat("0", 64), "X-Hub-Signature-256", sig), wantErr: mismatchMsg},
		{name: "no sha256= prefix", cfg: cfg, req: req("X-Hub-Signature-256", sig[len("sha256="):]), wantErr: "malformed X-Hub-Signature-256 header: want sha256=<hex>"},
		{name: "sha1 prefix", cfg: cfg, req: req("X-Hub-Signature-256", "sha1="+sig[len("sha256="):]), wantErr: "malformed X-Hub-Signature-256 header: want sha256=<hex>"},
		{name: "not hex", cfg: cfg, req: req("X-Hub-Signature-256", "sha256="+strings.Repeat("z", 64)), wantErr: "malformed X-Hub-Signature-256 header: want sha256= followed by 64 hex digits"},
		{name: "truncated", cfg: cfg, req: req("X-Hub-Signature-256", sig[:len(sig)-2]), wantErr: "malformed X-Hub-Signature-256 header: want sha256= followed by 64 hex digits"},
	})
}

func TestVerifyStripe(t *testing.T) {
	t.Parallel()
	// Stripe's endpoint secrets start with whsec_ but, unlike Standard
	// Webhooks, the whole string is the HMAC key.
	const secret = "whsec_test_Xb4bGd3a9f"
	cfg := Config{Scheme: "stripe", Secret: secret}
	body := []byte(`{"id":"evt_1","type":"invoice.paid"}`)
	sigAt := func(ts string) string { return hmacHex(secret, ts, ".", string(body)) }
	ts := unix(now)
	valid := "t=" + ts + ",v1=" + sigAt(ts)
	req := func(v string) Request {
		return Request{Headers: headers("Stripe-Signature", v), Body: body, Now: now}
	}
	stale := unix(now.Add(-(3*time.Hour + 12*time.Minute)))
	future := unix(now.Add(2 * time.Hour))
	zeros := strings.Repeat("0", 64)

	runVerifyCases(t, []verifyCase{
		{name: "valid", cfg: cfg, req: req(valid)},
		{name: "valid with v0", cfg: cfg, req: req(valid + ",v0=" + hmacHex("x", "y"))},
		{name: "valid, v1 first", cfg: cfg, req: req("v1=" + sigAt(ts) + ",t=" + ts)},
		{name: "valid, spaces after commas", cfg: cfg, req: req("t=" + ts + ", v1=" + sigAt(ts))},
		{name: "valid, lower-case header name", cfg: cfg, req: Request{Headers: headers("stripe-signature", valid), Body: body, Now: now}},
		{name: "several v1, the second matches", cfg: cfg, req: req("t=" + ts + ",v1=" + zeros + ",v1=" + sigAt(ts))},
		{name: "several v1, the first matches", cfg: cfg, req: req(valid + ",v1=" + zeros)},
		{name: "undecodable v1 beside a good one", cfg: cfg, req: req("t=" + ts + ",v1=nothex,v1=" + sigAt(ts))},
		{name: "several v1, none matches", cfg: cfg, req: req("t=" + ts + ",v1=" + zeros + ",v1=" + sigAt(stale)), wantErr: mismatchMsg},
		{name: "tampered body", cfg: cfg, req: Request{Headers: headers("Stripe-Signature", valid), Body: []byte(`{"id":"evt_2"}`), Now: now}, wantErr: mismatchMsg},
		{name: "wrong secret", cfg: Config{Scheme: "stripe", Secret: "whsec_other"}, req: req(valid), wantErr: mismatchMsg},
		{name: "timestamp changed after signing", cfg: cfg, req: req("t=" + unix(now.Add(time.Second)) + ",v1=" + sigAt(ts)), wantErr: mismatchMsg},
		{name: "stale timestamp", cfg: cfg, req: req("t=" + stale + ",v1=" + sigAt(stale)), wantErr: "timestamp " + stale + " is 3h12m too old (tolerance 5m0s)"},
		{name: "future timestamp", cfg: cfg, req: req("t=" + future + ",v1=" + sigAt(future)), wantErr: "timestamp " + future + " is 2h in the future (tolerance 5m0s; check the sender's clock)"},
		{name: "missing header", cfg: cfg, req: Request{Body: body, Now: now}, wantErr: "missing header Stripe-Signature"},
		{name: "malformed: not key=value", cfg: cfg, req: req("garbage"), wantErr: "malformed Stripe-Signature header: want t=<timestamp>,v1=<signature>"},
		{name: "malformed: no timestamp", cfg: cfg, req: req("v1=" + sigAt(ts)), wantErr: "malformed Stripe-Signature header: no t= timestamp"},
		{name: "malformed: two timestamps", cfg: cfg, req: req(valid + ",t=" + ts), wantErr: "malformed Stripe-Signature header: more than one t= timestamp"},
		{name: "malformed: timestamp not a number", cfg: cfg, req: req("t=soon,v1=" + sigAt(ts)), wantErr: "malformed Stripe-Signature header: t= is not a Unix time in seconds"},
		{name: "malformed: empty timestamp", cfg: cfg, req: req("t=,v1=" + sigAt("")), wantErr: "malformed Stripe-Signature header: t= is not a Unix time in seconds"},
		{name: "malformed: negative timestamp", cfg: cfg, req: req("t=-1,v1=" + sigAt("-1")), wantErr: "malformed Stripe-Signature header: t= is not a Unix time in seconds"},
		{name: "malformed: only v0", cfg: cfg, req: req("t=" + ts + ",v0=" + sigAt(ts)), wantErr: "malformed Stripe-Signature header: no v1= signature"},
	})
}

func TestVerifySlack(t *testing.T) {
	t.Parallel()
	// Slack's published example, from "Verifying requests from Slack":
	// https://api.slack.com/authentication/verifying-requests-from-slack
	const (
		docSecret = "8f742231b10e8888abcd99yyyzzz85a5"
		docTS     = "1531420618"
		docSig    = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
		docBody   = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
	)
	docCfg := Config{Scheme: "slack", Secret: docSecret}
	docNow := time.Unix(1531420618+3, 0)
	docReq := func(body string, at time.Time) Request {
		return Request{Headers: headers("X-Slack-Request-Timestamp", docTS, "X-Slack-Signature", docSig), Body: []byte(body), Now: at}
	}

	cfg := Config{Scheme: "slack", Secret: "slack-signing-secret"}
	body := []byte(`{"type":"event_callback"}`)
	sigAt := func(ts string) string { return "v0=" + hmacHex("slack-signing-secret", "v0:", ts, ":", string(body)) }
	ts := unix(now)
	req := func(hs ...string) Request { return Request{Headers: headers(hs...), Body: body, Now: now} }
	stale := unix(now.Add(-(5*time.Minute + time.Second)))
	future := unix(now.Add(6 * time.Minute))

	runVerifyCases(t, []verifyCase{
		{name: "published vector", cfg: docCfg, req: docReq(docBody, docNow)},
		{name: "published vector, body changed", cfg: docCfg, req: docReq(docBody+"&x=1", docNow), wantErr: mismatchMsg},
		{name: "valid", cfg: cfg, req: req("X-Slack-Request-Timestamp", ts, "X-Slack-Signature", sigAt(ts))},
		{name: "valid, lower-case names", cfg: cfg, req: req("x-slack-signature", sigAt(ts), "x-slack-request-timestamp", ts)},
		{name: "tampered body", cfg: cfg, req: Request{Headers: headers("X-Slack-Request-Timestamp", ts, "X-Slack-Signature", sigAt(ts)), Body: []byte("{}"), Now: now}, wantErr: mismatchMsg},
		{name: "wrong secret", cfg: Config{Scheme: "slack", Secret: "other"}, req: req("X-Slack-Request-Timestamp", ts, "X-Slack-Signature", sigAt(ts)), wantErr: mismatchMsg},
		{name: "timestamp changed after signing", cfg: cfg, req: req("X-Slack-Request-Timestamp", unix(now.Add(-time.Second)), "X-Slack-Signature", sigAt(ts)), wantErr: mismatchMsg},
		{name: "stale timestamp", cfg: cfg, req: req("X-Slack-Request-Timestamp", stale, "X-Slack-Signature", sigAt(stale)), wantErr: "timestamp " + stale + " is 5m1s too old (tolerance 5m0s)"},
		{name: "future timestamp", cfg: cfg, req: req("X-Slack-Request-Timestamp", future, "X-Slack-Signature", sigAt(future)), wantErr: "timestamp " + future + " is 6m in the future (tolerance 5m0s; check the sender's clock)"},
		{name: "missing timestamp", cfg: cfg, req: req("X-Slack-Signature", sigAt(ts)), wantErr: "missing header X-Slack-Request-Timestamp"},
		{name: "missing signature", cfg: cfg, req: req("X-Slack-Request-Timestamp", ts), wantErr: "missing header X-Slack-Signature"},
		{name: "malformed timestamp", cfg: cfg, req: req("X-Slack-Request-Timestamp", "1.5e9", "X-Slack-Signature", sigAt("1.5e9")), wantErr: "malformed X-Slack-Request-Timestamp header: want a Unix time in seconds"},
		{name: "malformed signature version", cfg: cfg, req: req("X-Slack-Request-Timestamp", ts, "X-Slack-Signature", "v1="+sigAt(ts)[3:]), wantErr: "malformed X-Slack-Signature header: want v0=<hex>"},
		{name: "malformed signature hex", cfg: cfg, req: req("X-Slack-Request-Timestamp", ts, "X-Slack-Signature", "v0=abc"), wantErr: "malformed X-Slack-Signature header: want v0= followed by 64 hex digits"},
	})
}

// The Standard Webhooks reference test vector, as the reference libraries'
// tests have it (libraries/go/webhook_test.go TestWebhookSign,
// libraries/javascript/src/webhook.test.ts "sign function works",
// libraries/php/tests/WebhookTest.php testSignFunctionWorks in
// github.com/standard-webhooks/standard-webhooks).
const (
	stdSecret  = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	stdMsgID   = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	stdTS      = "1614265330"
	stdPayload = `{"test": 2432232314}`
	stdSig     = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
	// stdOtherSig is the reference tests' "invalid signature": well formed,
	// matching nothing.
	stdOtherSig = "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc="
)

func TestVerifyStandardWebhooks(t *testing.T) {
	t.Parallel()
	cfg := Config{Scheme: "standard-webhooks", Secret: stdSecret}
	vectorNow := time.Unix(1614265330, 0)
	vector := func(sig string) Request {
		return Request{
			Headers: headers("webhook-id", stdMsgID, "webhook-timestamp", stdTS, "webhook-signature", sig),
			Body:    []byte(stdPayload),
			Now:     vectorNow,
		}
	}
	// sigAt signs like a sender would, computed here from the spec's words.
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(stdSecret, "whsec_"))
	if err != nil {
		t.Fatal(err)
	}
	sigAt := func(id, ts, body string) string {
		h := hmac.New(sha256.New, key)
		h.Write([]byte(id + "." + ts + "." + body))
		return "v1," + base64.StdEncoding.EncodeToString(h.Sum(nil))
	}
	stale := unix(vectorNow.Add(-(5*time.Minute + time.Second)))
	future := unix(vectorNow.Add(5*time.Minute + time.Second))
	at := func(ts string) Request {
		return Request{
			Headers: headers("webhook-id", stdMsgID, "webhook-timestamp", ts, "webhook-signature", sigAt(stdMsgID, ts, stdPayload)),
			Body:    []byte(stdPayload),
			Now:     vectorNow,
		}
	}
	without := func(name string) Request {
		r := vector(stdSig)
		var kept []Header
		for _, h := range r.Headers {
			if h.Name != name {
				kept = append(kept, h)
			}
		}
		r.Headers = kept
		return r
	}

	runVerifyCases(t, []verifyCase{
		{name: "published vector", cfg: cfg, req: vector(stdSig)},
		{name: "published vector, secret without whsec_", cfg: Config{Scheme: "standard-webhooks", Secret: strings.TrimPrefix(stdSecret, "whsec_")}, req: vector(stdSig)},
		{name: "published vector, svix-* headers", cfg: cfg, req: Request{
			Headers: headers("svix-id", stdMsgID, "svix-timestamp", stdTS, "svix-signature", stdSig),
			Body:    []byte(stdPayload), Now: vectorNow,
		}},
		{name: "published vector, mixed-case names", cfg: cfg, req: Request{
			Headers: headers("Webhook-Id", stdMsgID, "WEBHOOK-TIMESTAMP", stdTS, "Webhook-Signature", stdSig),
			Body:    []byte(stdPayload), Now: vectorNow,
		}},
		// The reference tests' "valid multi sig": other v1 and v2 entries around the good one.
		{name: "several signatures, one matches", cfg: cfg, req: vector(strings.Join([]string{stdOtherSig, "v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=", stdSig, stdOtherSig}, " "))},
		{name: "v1a entry before the good one", cfg: cfg, req: vector("v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZdpXwVLPo3mNl8EM+m7TBAg== " + stdSig)},
		{name: "undecodable v1 beside the good one", cfg: cfg, req: vector("v1,!!! " + stdSig)},
		{name: "computed signature", cfg: cfg, req: at(stdTS)},
		{name: "reference invalid signature", cfg: cfg, req: vector(stdOtherSig), wantErr: mismatchMsg},
		{name: "partial signature", cfg: cfg, req: vector(stdSig[:8]), wantErr: mismatchMsg},
		{name: "empty v1 signature", cfg: cfg, req: vector("v1,"), wantErr: mismatchMsg},
		{name: "not base64", cfg: cfg, req: vector("v1,dawfeoifkpqwoekfpqoekf"), wantErr: mismatchMsg},
		// The spec's example header: its v1 was made with another secret and
		// its v1a is an asymmetric signature, which is skipped.
		{name: "spec example header", cfg: cfg, req: vector("v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4= v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZdpXwVLPo3mNl8EM+m7TBAg=="), wantErr: mismatchMsg},
		{name: "tampered body", cfg: cfg, req: Request{Headers: vector(stdSig).Headers, Body: []byte(`{"test": 2432232315}`), Now: vectorNow}, wantErr: mismatchMsg},
		{name: "wrong secret", cfg: Config{Scheme: "standard-webhooks", Secret: "whsec_" + base64.StdEncoding.EncodeToString([]byte("another 24-byte secret!!"))}, req: vector(stdSig), wantErr: mismatchMsg},
		{name: "message id changed", cfg: cfg, req: Request{
			Headers: headers("webhook-id", "msg_other", "webhook-timestamp", stdTS, "webhook-signature", stdSig),
			Body:    []byte(stdPayload), Now: vectorNow,
		}, wantErr: mismatchMsg},
		{name: "stale timestamp", cfg: cfg, req: at(stale), wantErr: "timestamp " + stale + " is 5m1s too old (tolerance 5m0s)"},
		{name: "future timestamp", cfg: cfg, req: at(future), wantErr: "timestamp " + future + " is 5m1s in the future (tolerance 5m0s; check the sender's clock)"},
		{name: "missing id", cfg: cfg, req: without("webhook-id"), wantErr: "missing header webhook-id"},
		{name: "missing timestamp", cfg: cfg, req: without("webhook-timestamp"), wantErr: "missing header webhook-timestamp"},
		{name: "missing signature", cfg: cfg, req: without("webhook-signature"), wantErr: "missing header webhook-signature"},
		{name: "malformed timestamp", cfg: cfg, req: Request{
			Headers: headers("webhook-id", stdMsgID, "webhook-timestamp", "hello", "webhook-signature", stdSig),
			Body:    []byte(stdPayload), Now: vectorNow,
		}, wantErr: "malformed webhook-timestamp header: want a Unix time in seconds"},
		{name: "malformed svix timestamp", cfg: cfg, req: Request{
			Headers: headers("svix-id", stdMsgID, "svix-timestamp", "1614265330.5", "svix-signature", stdSig),
			Body:    []byte(stdPayload), Now: vectorNow,
		}, wantErr: "malformed svix-timestamp header: want a Unix time in seconds"},
		{name: "malformed: only v1a", cfg: cfg, req: vector("v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZdpXwVLPo3mNl8EM+m7TBAg=="), wantErr: "malformed webhook-signature header: no v1,<base64> signature (only the symmetric v1 scheme is supported)"},
		{name: "malformed: no version", cfg: cfg, req: vector(strings.TrimPrefix(stdSig, "v1,")), wantErr: "malformed webhook-signature header: no v1,<base64> signature (only the symmetric v1 scheme is supported)"},
	})
}

func TestVerifyHMAC(t *testing.T) {
	t.Parallel()
	cfg := Config{Scheme: "hmac", Secret: "generic"}
	custom := Config{Scheme: "hmac", Secret: "generic", Header: "X-Webhook-Signature"}
	body := []byte("ping")
	sum := hmacSum("generic", string(body))
	hexSig := hex.EncodeToString(sum)
	req := func(hs ...string) Request { return Request{Headers: headers(hs...), Body: body, Now: now} }

	runVerifyCases(t, []verifyCase{
		{name: "hex", cfg: cfg, req: req("X-Signature", hexSig)},
		{name: "upper-case hex", cfg: cfg, req: req("X-Signature", strings.ToUpper(hexSig))},
		{name: "sha256= hex", cfg: cfg, req: req("X-Signature", "sha256="+hexSig)},
		{name: "SHA256= hex", cfg: cfg, req: req("X-Signature", "SHA256="+hexSig)},
		{name: "base64", cfg: cfg, req: req("X-Signature", base64.StdEncoding.EncodeToString(sum))},
		{name: "base64 unpadded", cfg: cfg, req: req("X-Signature", base64.RawStdEncoding.EncodeToString(sum))},
		{name: "base64url", cfg: cfg, req: req("X-Signature", base64.URLEncoding.EncodeToString(sum))},
		{name: "sha256= base64", cfg: cfg, req: req("X-Signature", "sha256="+base64.StdEncoding.EncodeToString(sum))},
		{name: "lower-case header name", cfg: cfg, req: req("x-signature", hexSig)},
		{name: "custom header", cfg: custom, req: req("x-webhook-signature", hexSig)},
		{name: "custom header ignores the default one", cfg: custom, req: req("X-Signature", hexSig), wantErr: "missing header X-Webhook-Signature"},
		{name: "tampered body", cfg: cfg, req: Request{Headers: headers("X-Signature", hexSig), Body: []byte("pong")}, wantErr: mismatchMsg},
		{name: "wrong secret", cfg: Config{Scheme: "hmac", Secret: "other"}, req: req("X-Signature", hexSig), wantErr: mismatchMsg},
		{name: "wrong secret, base64", cfg: Config{Scheme: "hmac", Secret: "other"}, req: req("X-Signature", base64.StdEncoding.EncodeToString(sum)), wantErr: mismatchMsg},
		{name: "missing header", cfg: cfg, req: req(), wantErr: "missing header X-Signature"},
		{name: "malformed", cfg: cfg, req: req("X-Signature", "not a signature"), wantErr: "malformed X-Signature header: want the HMAC-SHA256 of the body as hex or base64"},
		{name: "too short", cfg: cfg, req: req("X-Signature", hexSig[:62]), wantErr: "malformed X-Signature header: want the HMAC-SHA256 of the body as hex or base64"},
		{name: "SHA-1 length", cfg: cfg, req: req("X-Signature", "sha1="+strings.Repeat("a", 40)), wantErr: "malformed X-Signature header: want the HMAC-SHA256 of the body as hex or base64"},
	})
}

func TestToleranceBoundaries(t *testing.T) {
	t.Parallel()
	body := []byte("{}")
	slackAt := func(cfg Config, ts time.Time) Request {
		s := unix(ts)
		return Request{
			Headers: headers("X-Slack-Request-Timestamp", s, "X-Slack-Signature", "v0="+hmacHex(cfg.Secret, "v0:", s, ":", string(body))),
			Body:    body,
			Now:     now,
		}
	}
	def := Config{Scheme: "slack", Secret: "k"}
	short := Config{Scheme: "slack", Secret: "k", Tolerance: 30 * time.Second}
	long := Config{Scheme: "slack", Secret: "k", Tolerance: 24 * time.Hour}
	const huge = "9223372036854775807" // math.MaxInt64
	hugeReq := Request{
		Headers: headers("X-Slack-Request-Timestamp", huge, "X-Slack-Signature", "v0="+hmacHex("k", "v0:", huge, ":", string(body))),
		Body:    body, Now: now,
	}
	tooBig := "99999999999999999999" // beyond int64
	tooBigReq := Request{
		Headers: headers("X-Slack-Request-Timestamp", tooBig, "X-Slack-Signature", "v0="+hmacHex("k", "v0:", tooBig, ":", string(body))),
		Body:    body, Now: now,
	}
	zero := slackAt(def, time.Unix(0, 0))

	runVerifyCases(t, []verifyCase{
		{name: "exactly the default tolerance old", cfg: def, req: slackAt(def, now.Add(-5*time.Minute))},
		{name: "exactly the default tolerance ahead", cfg: def, req: slackAt(def, now.Add(5*time.Minute))},
		{name: "one second past the default tolerance", cfg: def, req: slackAt(def, now.Add(-5*time.Minute-time.Second)), wantErr: "timestamp " + unix(now.Add(-5*time.Minute-time.Second)) + " is 5m1s too old (tolerance 5m0s)"},
		{name: "within a short tolerance", cfg: short, req: slackAt(short, now.Add(-30*time.Second))},
		{name: "beyond a short tolerance", cfg: short, req: slackAt(short, now.Add(-31*time.Second)), wantErr: "timestamp " + unix(now.Add(-31*time.Second)) + " is 31s too old (tolerance 30s)"},
		{name: "ahead of a short tolerance", cfg: short, req: slackAt(short, now.Add(time.Minute)), wantErr: "timestamp " + unix(now.Add(time.Minute)) + " is 1m in the future (tolerance 30s; check the sender's clock)"},
		{name: "within a long tolerance", cfg: long, req: slackAt(long, now.Add(-23*time.Hour))},
		{name: "largest timestamp", cfg: def, req: hugeReq, wantErr: "timestamp " + huge + " is 2562047h47m16s in the future (tolerance 5m0s; check the sender's clock)"},
		{name: "timestamp beyond int64", cfg: def, req: tooBigReq, wantErr: "malformed X-Slack-Request-Timestamp header: want a Unix time in seconds"},
		{name: "timestamp zero", cfg: def, req: zero, wantErr: "timestamp 0 is 472222h13m20s too old (tolerance 5m0s)"},
	})
}

// TestZeroNowMeansNow: a Request without Now is judged at time.Now, so the
// published vectors, signed years ago, are rejected as replays.
func TestZeroNowMeansNow(t *testing.T) {
	t.Parallel()
	slack := Config{Scheme: "slack", Secret: "k"}
	slackTS := "1531420618"
	for _, tc := range []struct {
		name string
		cfg  Config
		req  Request
		want string
	}{
		{"slack", slack, Request{Headers: headers(
			"X-Slack-Request-Timestamp", slackTS,
			"X-Slack-Signature", "v0="+hmacHex("k", "v0:", slackTS, ":", "")),
		}, "timestamp 1531420618 is "},
		{"standard-webhooks", Config{Scheme: "standard-webhooks", Secret: stdSecret}, Request{
			Headers: headers("webhook-id", stdMsgID, "webhook-timestamp", stdTS, "webhook-signature", stdSig),
			Body:    []byte(stdPayload),
		}, "timestamp 1614265330 is "},
	} {
		err := tc.cfg.Verify(tc.req)
		if !errors.Is(err, ErrSignature) || !strings.HasPrefix(err.Error(), tc.want) || !strings.HasSuffix(err.Error(), " too old (tolerance 5m0s)") {
			t.Errorf("%s: Verify at the zero Now: %v, want %q... too old", tc.name, err, tc.want)
		}
	}
}

func TestRoughDuration(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{
		0:                                 "0s",
		45 * time.Second:                  "45s",
		5 * time.Minute:                   "5m",
		5*time.Minute + time.Second:       "5m1s",
		3*time.Hour + 12*time.Minute:      "3h12m",
		3 * time.Hour:                     "3h",
		3*time.Hour + 5*time.Second:       "3h0m5s",
		time.Hour + 1500*time.Millisecond: "1h0m2s",
	} {
		if got := roughDuration(d); got != want {
			t.Errorf("roughDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		cfg     Config
		wantErr string // "" means valid; else a part of the message
	}{
		{name: "github", cfg: Config{Scheme: "github", Secret: "s"}},
		{name: "stripe whsec", cfg: Config{Scheme: "stripe", Secret: "whsec_not-base64!"}},
		{name: "slack with tolerance", cfg: Config{Scheme: "slack", Secret: "s", Tolerance: time.Minute}},
		{name: "standard-webhooks", cfg: Config{Scheme: "standard-webhooks", Secret: stdSecret}},
		{name: "standard-webhooks without prefix", cfg: Config{Scheme: "standard-webhooks", Secret: "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}},
		{name: "hmac default header", cfg: Config{Scheme: "hmac", Secret: "s"}},
		{name: "hmac custom header", cfg: Config{Scheme: "hmac", Secret: "s", Header: "X-Webhook-Signature"}},
		{name: "no scheme", cfg: Config{Secret: "s"}, wantErr: "no verification scheme set (want one of github, stripe, slack, standard-webhooks, hmac)"},
		{name: "unknown scheme", cfg: Config{Scheme: "GitHub", Secret: "s"}, wantErr: `unknown verification scheme "GitHub" (want one of github, stripe, slack, standard-webhooks, hmac)`},
		{name: "empty secret", cfg: Config{Scheme: "github"}, wantErr: "github verification needs a secret"},
		{name: "negative tolerance", cfg: Config{Scheme: "stripe", Secret: "s", Tolerance: -time.Second}, wantErr: "timestamp tolerance -1s is negative"},
		{name: "bad whsec_ base64", cfg: Config{Scheme: "standard-webhooks", Secret: "whsec_not base64!"}, wantErr: "standard-webhooks secret must be whsec_ followed by base64"},
		{name: "unpadded whsec_ base64", cfg: Config{Scheme: "standard-webhooks", Secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS"}, wantErr: "standard-webhooks secret must be whsec_ followed by base64"},
		{name: "whsec_ alone", cfg: Config{Scheme: "standard-webhooks", Secret: "whsec_"}, wantErr: "holds no key"},
		{name: "hmac bad header", cfg: Config{Scheme: "hmac", Secret: "s", Header: "X Signature"}, wantErr: `signature header "X Signature" is not a valid HTTP header name`},
		{name: "hmac header not ASCII", cfg: Config{Scheme: "hmac", Secret: "s", Header: "X-Signatür"}, wantErr: "not a valid HTTP header name"},
		{name: "hmac header with colon", cfg: Config{Scheme: "hmac", Secret: "s", Header: "X-Sig:"}, wantErr: "not a valid HTTP header name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.cfg.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Validate: %v, want an error containing %q", err, tc.wantErr)
			}
			if errors.Is(err, ErrSignature) {
				t.Errorf("Validate error %q wraps ErrSignature; it is a configuration error", err)
			}
			// Verify refuses the same configuration, with the same error.
			if verr := tc.cfg.Verify(Request{Now: now}); verr == nil || verr.Error() != err.Error() || errors.Is(verr, ErrSignature) {
				t.Errorf("Verify with an invalid config: %v, want %v", verr, err)
			}
		})
	}
}

func TestSchemes(t *testing.T) {
	t.Parallel()
	got := Schemes()
	want := []string{"github", "stripe", "slack", "standard-webhooks", "hmac"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("Schemes() = %v, want %v", got, want)
	}
	got[0] = "changed"
	if Schemes()[0] != "github" {
		t.Fatal("Schemes returns shared state")
	}
	for _, s := range want {
		if err := (Config{Scheme: s, Secret: stdSecret}).Validate(); err != nil {
			t.Errorf("scheme %s: %v", s, err)
		}
	}
}
