package verify

import (
	"errors"
	"strings"
	"testing"
	"time"
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

// FuzzVerify feeds arbitrary headers, bodies and clocks to every scheme.
// Verify must not panic and must fail only with ErrSignature (the configs
// are valid); what Sign produces for the same request must verify. The seeds
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

			signed, err := Sign(cfg, r)
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
			// The signed headers go first: the first of repeated headers counts.
			r2 := r
			r2.Headers = append(signed, hs...)
			if err := cfg.Verify(r2); err != nil {
				t.Fatalf("%s: Verify after Sign: %v (signed %q)", cfg.Scheme, err, signed)
			}
		}
	})
}
