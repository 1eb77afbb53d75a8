package verify

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"time"

	"github.com/hookrelay/hookrelay/webhook"
)

// The header names, and what each scheme's HMAC covers (webhook.Digest),
// are the webhook package's, which signs what these functions check: one
// recipe for each provider's scheme.

// verifyGitHub checks X-Hub-Signature-256: "sha256=" + hex(HMAC-SHA256(secret, body)).
// https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries
func verifyGitHub(key []byte, r Request) error {
	v, ok := r.header(webhook.HeaderGitHub)
	if !ok {
		return missing(webhook.HeaderGitHub)
	}
	encoded, ok := strings.CutPrefix(v, "sha256=")
	if !ok {
		return malformed(webhook.HeaderGitHub, "want sha256=<hex>")
	}
	got, ok := decodeHexMAC(encoded)
	if !ok {
		return malformed(webhook.HeaderGitHub, "want sha256= followed by 64 hex digits")
	}
	if !hmac.Equal(got, webhook.Digest(webhook.GitHub, key, "", "", r.Body)) {
		return mismatch()
	}
	return nil
}

// verifyStripe checks Stripe-Signature: "t=TIMESTAMP,v1=HEX[,v1=HEX...][,v0=...]"
// where each v1 is hex(HMAC-SHA256(secret, TIMESTAMP + "." + body)). Any v1
// may match (Stripe sends several while a secret is being rolled); other
// schemes are ignored, as Stripe's libraries do.
// https://docs.stripe.com/webhooks#verify-manually
func verifyStripe(key []byte, r Request, now time.Time, tolerance time.Duration) error {
	v, ok := r.header(webhook.HeaderStripe)
	if !ok {
		return missing(webhook.HeaderStripe)
	}
	var (
		rawTS  string
		sawTS  bool
		sigs   [][]byte
		sawSig bool
	)
	for item := range strings.SplitSeq(v, ",") {
		k, val, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok {
			return malformed(webhook.HeaderStripe, "want t=<timestamp>,v1=<signature>")
		}
		switch k {
		case "t":
			if sawTS {
				return malformed(webhook.HeaderStripe, "more than one t= timestamp")
			}
			rawTS, sawTS = val, true
		case "v1":
			sawSig = true
			if sig, ok := decodeHexMAC(val); ok {
				sigs = append(sigs, sig)
			}
		}
	}
	if !sawTS {
		return malformed(webhook.HeaderStripe, "no t= timestamp")
	}
	ts, ok := parseTimestamp(rawTS)
	if !ok {
		return malformed(webhook.HeaderStripe, "t= is not a Unix time in seconds")
	}
	if !sawSig {
		return malformed(webhook.HeaderStripe, "no v1= signature")
	}
	want := webhook.Digest(webhook.Stripe, key, "", rawTS, r.Body)
	if !anyEqual(sigs, want) {
		return mismatch()
	}
	return checkTimestamp(rawTS, ts, now, tolerance)
}

// verifySlack checks X-Slack-Signature: "v0=" + hex(HMAC-SHA256(secret,
// "v0:" + X-Slack-Request-Timestamp + ":" + body)).
// https://api.slack.com/authentication/verifying-requests-from-slack
func verifySlack(key []byte, r Request, now time.Time, tolerance time.Duration) error {
	rawTS, ok := r.header(webhook.HeaderSlackTimestamp)
	if !ok {
		return missing(webhook.HeaderSlackTimestamp)
	}
	v, ok := r.header(webhook.HeaderSlackSignature)
	if !ok {
		return missing(webhook.HeaderSlackSignature)
	}
	ts, ok := parseTimestamp(rawTS)
	if !ok {
		return malformed(webhook.HeaderSlackTimestamp, "want a Unix time in seconds")
	}
	encoded, ok := strings.CutPrefix(v, "v0=")
	if !ok {
		return malformed(webhook.HeaderSlackSignature, "want v0=<hex>")
	}
	got, ok := decodeHexMAC(encoded)
	if !ok {
		return malformed(webhook.HeaderSlackSignature, "want v0= followed by 64 hex digits")
	}
	want := webhook.Digest(webhook.Slack, key, "", rawTS, r.Body)
	if !hmac.Equal(got, want) {
		return mismatch()
	}
	return checkTimestamp(rawTS, ts, now, tolerance)
}

// verifyStandard checks a Standard Webhooks signature: webhook-signature holds
// space-separated "v1,BASE64" entries, each base64(HMAC-SHA256(key,
// webhook-id + "." + webhook-timestamp + "." + body)); any v1 may match and
// other versions (v1a, the asymmetric one) are skipped. Svix's svix-*
// headers are accepted where the webhook-* ones are absent.
// https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md
func verifyStandard(key []byte, r Request, now time.Time, tolerance time.Duration) error {
	id, _, err := standardHeader(r, webhook.HeaderWebhookID, webhook.HeaderSvixID)
	if err != nil {
		return err
	}
	rawTS, tsName, err := standardHeader(r, webhook.HeaderWebhookTimestamp, webhook.HeaderSvixTimestamp)
	if err != nil {
		return err
	}
	v, sigName, err := standardHeader(r, webhook.HeaderWebhookSignature, webhook.HeaderSvixSignature)
	if err != nil {
		return err
	}
	ts, ok := parseTimestamp(rawTS)
	if !ok {
		return malformed(tsName, "want a Unix time in seconds")
	}
	var (
		sigs   [][]byte
		sawSig bool
	)
	for _, entry := range strings.Fields(v) {
		version, encoded, ok := strings.Cut(entry, ",")
		if !ok || version != "v1" {
			continue
		}
		sawSig = true
		if sig, err := base64.StdEncoding.DecodeString(encoded); err == nil {
			sigs = append(sigs, sig)
		}
	}
	if !sawSig {
		return malformed(sigName, "no v1,<base64> signature (only the symmetric v1 scheme is supported)")
	}
	want := webhook.Digest(webhook.StandardWebhooks, key, id, rawTS, r.Body)
	if !anyEqual(sigs, want) {
		return mismatch()
	}
	return checkTimestamp(rawTS, ts, now, tolerance)
}

// standardHeader returns the webhook-* header name, or its svix-* alias when
// the webhook-* one is absent, with the name it was found under.
func standardHeader(r Request, name, alias string) (value, foundAs string, err error) {
	if v, ok := r.header(name); ok {
		return v, name, nil
	}
	if v, ok := r.header(alias); ok {
		return v, alias, nil
	}
	return "", "", missing(name)
}

// verifyHMAC checks a generic header holding HMAC-SHA256(secret, body) as hex
// or base64 (standard or URL alphabet, padded or not), optionally after
// "sha256=".
func verifyHMAC(key []byte, name string, r Request) error {
	v, ok := r.header(name)
	if !ok {
		return missing(name)
	}
	if len(v) >= len("sha256=") && strings.EqualFold(v[:len("sha256=")], "sha256=") {
		v = v[len("sha256="):]
	}
	var candidates [][]byte
	if sig, ok := decodeHexMAC(v); ok {
		candidates = append(candidates, sig)
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if sig, err := enc.DecodeString(v); err == nil && len(sig) == sha256.Size {
			candidates = append(candidates, sig)
		}
	}
	if len(candidates) == 0 {
		return malformed(name, "want the HMAC-SHA256 of the body as hex or base64")
	}
	if !anyEqual(candidates, webhook.Digest(webhook.HMAC, key, "", "", r.Body)) {
		return mismatch()
	}
	return nil
}

// decodeHexMAC decodes a hex HMAC-SHA256 (either case).
func decodeHexMAC(s string) ([]byte, bool) {
	if len(s) != hex.EncodedLen(sha256.Size) {
		return nil, false
	}
	b, err := hex.DecodeString(s)
	return b, err == nil
}

// anyEqual reports whether any of sigs equals want, comparing each in
// constant time.
func anyEqual(sigs [][]byte, want []byte) bool {
	match := false
	for _, sig := range sigs {
		if hmac.Equal(sig, want) {
			match = true
		}
	}
	return match
}
