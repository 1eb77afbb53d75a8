package verify

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/webhook"
)

// parseHeaderBlob turns "Name: value" lines into headers; lines without a
// colon are dropped. The fuzzer mutates this text rather than a structure so
// that names, values and repeats all vary.
func parseHeaderBlob(blob string) []Header {
	var hs []Header
	for line := range strings.SplitSeq(blob, "\n") {
		if name, value, ok := strings.Cut(line, ":"); ok {
			hs = append(hs, Header{name, value})
		}
	}
	return hs
}

// unsigned is hs without any signature header of any scheme, with values
// trimmed of blanks as HTTP delivers them: what a provider's signer starts
// from.
func unsigned(hs []Header, hmacHeader string) []Header {
	names := []string{hmacHeader, webhook.HeaderGitHub, webhook.HeaderGitHubSHA1, webhook.HeaderStripe,
		webhook.HeaderSlackTimestamp, webhook.HeaderSlackSignature,
		webhook.HeaderWebhookID, webhook.HeaderWebhookTimestamp, webhook.HeaderWebhookSignature,
		webhook.HeaderSvixID, webhook.HeaderSvixTimestamp, webhook.HeaderSvixSignature}
	var out []Header
	for _, h := range hs {
		if !slices.ContainsFunc(names, func(n string) bool { return strings.EqualFold(n, h.Name) }) {
			out = append(out, Header{h.Name, strings.Trim(h.Value, " \t")})
		}
	}
	return out
}

// FuzzVerify feeds arbitrary headers, bodies and clocks to every scheme.
// Verify must not panic and must fail only with ErrSignature (the configs
// are valid); what the webhook package's signer makes of the same request
// (its other headers, body and time) must verify. The seeds
// are in testdata/fuzz/FuzzVerify: signed requests of each scheme (including
// the published vectors), malformed headers and extreme timestamps.
func FuzzVerify(f *testing.F) {
	configs := signConfigs()
	f.Fuzz(func(t *testing.T, headerBlob string, body []byte, nowUnix int64) {
		hs := parseHeaderBlob(headerBlob)
		r := Request{Method: "POST", Path: "/h/fuzz", Headers: hs, Body: body, Now: time.Unix(nowUnix, 0)}
		for _, cfg := range configs {
			if err := cfg.Verify(r); err != nil && (!errors.Is(err, ErrSignature) || err.Error() == "") {
				t.Fatalf("%s: Verify error %q is not a described ErrSignature", cfg.Scheme, err)
			}

			toSign := r
			toSign.Headers = unsigned(hs, cfg.hmacHeader())
			signed, err := Sign(cfg, toSign)
			timestamped := cfg.Scheme != "github" && cfg.Scheme != "hmac"
			if !r.Now.IsZero() && r.Now.Unix() < 0 && timestamped {
				if err == nil {
					t.Fatalf("%s: Sign at %d succeeded, want an error", cfg.Scheme, nowUnix)
				}
				continue
			}
			if err != nil {
				t.Fatalf("%s: Sign: %v", cfg.Scheme, err)
			}
			r2 := r
			r2.Headers = signed
			if err := cfg.Verify(r2); err != nil {
				t.Fatalf("%s: Verify after Sign: %v (signed %q)", cfg.Scheme, err, signed)
			}
		}
	})
}
