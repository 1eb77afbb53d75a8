package memstore_test

import (
	"context"
	"errors"
	"testing"

	"go.uber.org/goleak"

	"github.com/hookrelay/hookrelay/server/store"
	"github.com/hookrelay/hookrelay/server/store/memstore"
	"github.com/hookrelay/hookrelay/server/store/storetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestContract(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, l store.Limits) store.Store {
		s := memstore.New(l)
		t.Cleanup(func() {
			if err := s.Close(); err != nil {
				t.Errorf("close: %v", err)
			}
		})
		return s
	})
}

// TestNoAliasing checks that slices passed in or handed out are copies:
// changing them changes nothing stored.
func TestNoAliasing(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := memstore.New(store.Limits{})
	t.Cleanup(func() { s.Close() })

	cidrs := []string{"192.0.2.0/24"}
	must(t, s.CreateChannel(ctx, store.Channel{ID: "c", AllowedCIDRs: cidrs}))
	cidrs[0] = "changed"
	c, err := s.GetChannel(ctx, "c")
	must(t, err)
	c.AllowedCIDRs[0] = "changed too"
	if c, err := s.GetChannel(ctx, "c"); err != nil || c.AllowedCIDRs[0] != "192.0.2.0/24" {
		t.Errorf("channel CIDRs = %q, %v; want them as created", c.AllowedCIDRs, err)
	}

	e := &store.Event{ID: "e", ChannelID: "c", Method: "POST", Path: "/",
		Headers: []store.Header{{Name: "X-A", Value: "1"}}, Body: []byte("body")}
	must(t, s.AppendEvent(ctx, e))
	e.Headers[0].Value, e.Body[0] = "changed", 'X'
	got, err := s.GetEvent(ctx, "e")
	must(t, err)
	got.Headers[0].Value, got.Body[0] = "changed too", 'Y'
	g, err := s.EnsureGroup(ctx, "c", "g", store.FromResume)
	must(t, err)
	page, err := s.Pending(ctx, store.PendingQuery{GroupID: g.ID})
	must(t, err)
	page.Events[0].Body[1] = 'Z'
	listed, err := s.ListEvents(ctx, store.EventQuery{ChannelID: "c", WithBody: true})
	must(t, err)
	listed[0].Headers[0].Name = "X-Changed"
	if got, err := s.GetEvent(ctx, "e"); err != nil || string(got.Body) != "body" ||
		got.Headers[0] != (store.Header{Name: "X-A", Value: "1"}) {
		t.Errorf("event = %q %v, %v; want it as appended", got.Body, got.Headers, err)
	}

	d := store.Delivery{ID: "d", EventID: "e", GroupID: g.ID, Status: 200,
		ResponseHeaders: []store.Header{{Name: "X-R", Value: "1"}}, ResponseBody: []byte("ok")}
	must(t, s.RecordProgress(ctx, store.Progress{GroupID: g.ID, Deliveries: []store.Delivery{d}}))
	d.ResponseHeaders[0].Value, d.ResponseBody[0] = "changed", 'X'
	ds, err := s.Deliveries(ctx, "e")
	must(t, err)
	ds[0].ResponseHeaders[0].Value, ds[0].ResponseBody[1] = "changed too", 'Y'
	if ds, err := s.Deliveries(ctx, "e"); err != nil || len(ds) != 1 || string(ds[0].ResponseBody) != "ok" ||
		ds[0].ResponseHeaders[0].Value != "1" {
		t.Errorf("deliveries = %+v, %v; want the one recorded", ds, err)
	}
}

// TestCanceledContext checks that a call with a done context fails with
// the context's error and changes nothing, as with a database store.
func TestCanceledContext(t *testing.T) {
	t.Parallel()
	s := memstore.New(store.Limits{})
	t.Cleanup(func() { s.Close() })
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.CreateChannel(ctx, store.Channel{ID: "c"}); !errors.Is(err, context.Canceled) {
		t.Errorf("CreateChannel with a canceled context: %v, want context.Canceled", err)
	}
	if _, err := s.GetChannel(t.Context(), "c"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetChannel after a canceled create: %v, want ErrNotFound", err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
