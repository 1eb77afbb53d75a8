package server

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/server/store"
)

// from makes a request come from addr, through the trusted proxy on
// 127.0.0.1.
func from(addr string) reqOpt {
	return func(req *http.Request) { req.Header.Set("X-Forwarded-For", addr) }
}

// newAnonymous creates a channel with GET /new and returns its id and
// the answer's expires_at.
func (e *uiEnv) newAnonymous(opts ...reqOpt) (string, time.Time) {
	e.t.Helper()
	resp, body := e.do("GET", "/new", "", opts...)
	if resp.StatusCode != http.StatusTemporaryRedirect {
		e.t.Fatalf("GET /new: %d %s", resp.StatusCode, body)
	}
	var out struct {
		Channel   string    `json:"channel"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	if err := json.Unmarshal(body, &out); err != nil || out.Channel == "" {
		e.t.Fatalf("GET /new body %s: %v", body, err)
	}
	return out.Channel, out.ExpiresAt
}

// TestAnonymousChannelsExpire: a channel from /new, or from the API with
// no token, lives the relay's anonymous TTL at most, and retention deletes
// it once that has passed.
func TestAnonymousChannelsExpire(t *testing.T) {
	t.Parallel()
	const ttl = time.Hour
	e := startUI(t, func(c *Config) { c.AllowAnonymous, c.AnonymousChannelTTL = true, ttl })
	before := time.Now()
	id, expires := e.newAnonymous()
	ch, err := e.store.GetChannel(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	// The store keeps times to the microsecond.
	if !ch.ExpiresAt.Equal(ch.CreatedAt.Add(ttl)) || expires.Sub(ch.ExpiresAt).Abs() >= time.Microsecond {
		t.Fatalf("channel from /new: created %v, expires %v (answer said %v); want the TTL %v after creation",
			ch.CreatedAt, ch.ExpiresAt, expires, ttl)
	}

	// The API without a token: no ttl, a longer one and a shorter one.
	for _, tc := range []struct{ ask, want time.Duration }{{0, ttl}, {1000 * time.Hour, ttl}, {time.Minute, time.Minute}} {
		body := "{}"
		if tc.ask > 0 {
			body = `{"ttl":"` + tc.ask.String() + `"}`
		}
		resp, out := e.do("POST", "/api/v1/channels", body)
		var v struct{ ID string }
		if resp.StatusCode != http.StatusCreated || json.Unmarshal(out, &v) != nil {
			t.Fatalf("anonymous POST /api/v1/channels %s: %d %s", body, resp.StatusCode, out)
		}
		got, err := e.store.GetChannel(t.Context(), v.ID)
		if err != nil {
			t.Fatal(err)
		}
		if d := got.ExpiresAt.Sub(got.CreatedAt); d != tc.want {
			t.Errorf("anonymous channel asking ttl %v lives %v, want %v", tc.ask, d, tc.want)
		}
	}
	// A token's channel keeps living.
	resp, out := e.do("POST", "/api/v1/channels", "{}", withBearer(uiAdminToken))
	var owned struct{ ID string }
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(out, &owned) != nil {
		t.Fatalf("POST /api/v1/channels with a token: %d %s", resp.StatusCode, out)
	}

	early, err := e.relay.prune(t.Context(), before.Add(ttl/2))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.GetChannel(t.Context(), id); err != nil {
		t.Fatalf("retention deleted the channel before its TTL passed: %v", err)
	}
	res, err := e.relay.prune(t.Context(), before.Add(ttl+time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.GetChannel(t.Context(), id); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the anonymous channel after its TTL: %v, want deleted", err)
	}
	if early.Channels != 1 || res.Channels != 3 {
		t.Errorf("retention deleted %d channels after half the TTL and %d after it, want the one of a minute, then the other 3",
			early.Channels, res.Channels)
	}
	if _, err := e.store.GetChannel(t.Context(), owned.ID); err != nil {
		t.Errorf("retention deleted a token's channel: %v", err)
	}
}

// TestAnonymousChannelCreationIsRateLimited: one source address may create
// only so many channels without a token; the next gets 429 with
// Retry-After and the reason, while other addresses go on. IPv6 addresses
// count by their /64.
func TestAnonymousChannelCreationIsRateLimited(t *testing.T) {
	t.Parallel()
	e := startUI(t, func(c *Config) {
		c.AllowAnonymous = true
		c.AnonymousChannelsPerMinute = 2 // two at once, then one every 30 s
		c.TrustedProxies = []string{"127.0.0.1"}
	})
	refused := func(resp *http.Response, body []byte) bool {
		t.Helper()
		if resp.StatusCode != http.StatusTooManyRequests {
			return false
		}
		wait, err := strconv.Atoi(resp.Header.Get("Retry-After"))
		if err != nil || wait < 1 || wait > 60 {
			t.Errorf("Retry-After %q", resp.Header.Get("Retry-After"))
		}
		if resp.Request.Method == http.MethodHead {
			return true // no body
		}
		var msg struct{ Error, Code string }
		if json.Unmarshal(body, &msg) != nil || msg.Code != "rate_limited" || !strings.Contains(msg.Error, "anonymous channels") {
			t.Errorf("429 body %s", body)
		}
		return true
	}
	e.newAnonymous(from("203.0.113.7"))
	e.newAnonymous(from("203.0.113.7"))
	for _, method := range []string{"GET", "HEAD"} {
		if resp, body := e.do(method, "/new", "", from("203.0.113.7")); !refused(resp, body) {
			t.Errorf("%s /new beyond the address's share: %d %s, want 429", method, resp.StatusCode, body)
		}
	}
	if resp, body := e.do("POST", "/api/v1/channels", "{}", from("203.0.113.7")); !refused(resp, body) {
		t.Errorf("anonymous POST /api/v1/channels beyond the address's share: %d %s, want 429", resp.StatusCode, body)
	}
	// Nothing was created for the refused requests.
	if chans, err := e.store.ListChannels(t.Context(), ""); err != nil || len(chans) != 2 {
		t.Errorf("%d channels (%v), want the 2 allowed", len(chans), err)
	}
	// Another address has its own share; a token is not limited.
	e.newAnonymous(from("198.51.100.1"))
	for range 3 {
		if resp, body := e.do("POST", "/api/v1/channels", "{}", from("203.0.113.7"), withBearer(uiAdminToken)); resp.StatusCode != http.StatusCreated {
			t.Fatalf("POST /api/v1/channels with a token: %d %s", resp.StatusCode, body)
		}
	}
	// Two addresses of one IPv6 /64 share a bucket; another /64 does not.
	e.newAnonymous(from("2001:db8:1:2::1"))
	e.newAnonymous(from("2001:db8:1:2::ffff"))
	if resp, body := e.do("GET", "/new", "", from("2001:db8:1:2:abcd::9")); !refused(resp, body) {
		t.Errorf("a third channel from one /64: %d %s, want 429", resp.StatusCode, body)
	}
	e.newAnonymous(from("2001:db8:1:3::1"))
}

func TestSourceKey(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"203.0.113.7":        "203.0.113.7",
		"::ffff:203.0.113.7": "203.0.113.7",
		"2001:db8:1:2::1":    "2001:db8:1:2::/64",
		"not an address":     "not an address",
	} {
		if got := sourceKey(in); got != want {
			t.Errorf("sourceKey(%q) = %q, want %q", in, got, want)
		}
	}
}
