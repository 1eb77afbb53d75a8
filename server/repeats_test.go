package server

import (
	"fmt"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/server/store"
)

// TestFailedWebhooks: a repeat is found once, by channel, request, body and
// provider delivery id (not by a changed signature), until its TTL, and the
// memory keeps at most maxFailedWebhooks entries.
func TestFailedWebhooks(t *testing.T) {
	t.Parallel()
	now := time.Unix(1700000000, 0)
	f := newFailedWebhooks()
	f.now = func() time.Time { return now }
	webhook := func(id, delivery, signature, body string) *store.Event {
		return &store.Event{ID: id, ChannelID: "ch", Method: "POST", Path: "/gh", RawQuery: "a=1",
			Headers: []store.Header{{Name: "X-GitHub-Delivery", Value: delivery}, {Name: "X-Hub-Signature-256", Value: signature}},
			Body:    []byte(body)}
	}
	f.remember(webhook("evt_failed", "d1", "sig1", `{"a":1}`))
	for _, tt := range []struct {
		name string
		ev   *store.Event
	}{
		{"another body", webhook("evt_2", "d1", "sig1", `{"a":2}`)},
		{"another provider delivery id", webhook("evt_3", "d2", "sig1", `{"a":1}`)},
		{"another channel", func() *store.Event { e := webhook("evt_4", "d1", "sig1", `{"a":1}`); e.ChannelID = "other"; return e }()},
		{"another query", func() *store.Event { e := webhook("evt_5", "d1", "sig1", `{"a":1}`); e.RawQuery = "a=2"; return e }()},
	} {
		if got := f.repeatOf(tt.ev); got != "" {
			t.Errorf("%s: marked as a repeat of %q", tt.name, got)
		}
	}
	if got := f.repeatOf(webhook("evt_6", "d1", "sig-of-the-retry", `{"a":1}`)); got != "evt_failed" {
		t.Errorf("the retry (new signature): repeat of %q, want evt_failed", got)
	}
	if got := f.repeatOf(webhook("evt_7", "d1", "sig1", `{"a":1}`)); got != "" {
		t.Errorf("a second retry: repeat of %q, want none (marked once)", got)
	}

	f.remember(webhook("evt_old", "d9", "s", "x"))
	now = now.Add(failedWebhookTTL)
	if got := f.repeatOf(webhook("evt_8", "d9", "s", "x")); got != "" || len(f.entries) != 0 {
		t.Errorf("after the TTL: repeat of %q, %d entries kept", got, len(f.entries))
	}

	for i := range maxFailedWebhooks + 5 {
		f.remember(webhook(fmt.Sprintf("evt_%d", i), "d", "s", fmt.Sprint(i)))
	}
	if n := f.order.Len(); n != maxFailedWebhooks || len(f.entries) != n {
		t.Errorf("%d entries (%d in the map), want at most %d", n, len(f.entries), maxFailedWebhooks)
	}
	if got := f.repeatOf(webhook("evt_x", "d", "s", "0")); got != "" {
		t.Errorf("the oldest entry past the bound is still found: %q", got)
	}
	if got := f.repeatOf(webhook("evt_y", "d", "s", fmt.Sprint(maxFailedWebhooks+4))); got != fmt.Sprintf("evt_%d", maxFailedWebhooks+4) {
		t.Errorf("the newest entry: %q", got)
	}
}
