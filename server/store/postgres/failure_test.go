package postgres

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/server/store"
	"github.com/hookrelay/hookrelay/server/store/postgres/pgtest"
)

// waitFor polls cond every few milliseconds until it holds, failing the
// test after d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// checkUnavailable fails unless err wraps store.ErrUnavailable.
func checkUnavailable(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("%s: error %v, want one wrapping store.ErrUnavailable", what, err)
	}
}

// TestTerminatedBackendsRecover kills every connection of the store with
// pg_terminate_backend, several times, while appends run: each append
// either commits (and is then found) or fails with store.ErrUnavailable,
// and the store works again by itself afterwards.
func TestTerminatedBackendsRecover(t *testing.T) {
	t.Parallel()
	app := pgtest.AppName()
	s := openTest(t, pgtest.WithParam(t, pgtest.Schema(t), "application_name", app), Options{})
	ctx := t.Context()
	if err := s.CreateChannel(ctx, store.Channel{ID: "c"}); err != nil {
		t.Fatal(err)
	}

	const senders, perSender = 4, 250
	var (
		acked    sync.Map // event id -> seq of every append that returned nil
		ackedN   atomic.Int64
		failures atomic.Int64
		wg       sync.WaitGroup
	)
	for w := range senders {
		wg.Go(func() {
			for i := range perSender {
				e := &store.Event{ID: fmt.Sprintf("e%d-%d", w, i), ChannelID: "c", Method: "POST",
					Path: "/", Body: []byte("payload")}
				err := s.AppendEvent(ctx, e)
				switch {
				case err == nil:
					acked.Store(e.ID, e.Seq)
					ackedN.Add(1)
				case errors.Is(err, store.ErrUnavailable):
					failures.Add(1)
				default:
					t.Errorf("append %s: %v, want nil or store.ErrUnavailable", e.ID, err)
				}
			}
		})
	}
	killed := 0
	for range 5 {
		// Kill once the load has made some progress since the last kill.
		from := ackedN.Load()
		waitFor(t, 30*time.Second, "appends after a kill", func() bool {
			return ackedN.Load() >= from+20 || ackedN.Load()+failures.Load() >= senders*perSender
		})
		killed += pgtest.Terminate(t, app)
	}
	wg.Wait()
	if killed == 0 {
		t.Fatal("pg_terminate_backend found no connection of the store to kill")
	}
	t.Logf("killed %d backends; %d appends committed, %d failed with ErrUnavailable",
		killed, ackedN.Load(), failures.Load())

	// Recovery: the pool replaces the dead connections by itself.
	pgtest.Terminate(t, app)
	waitFor(t, 15*time.Second, "Ping after the kills", func() bool { return s.Ping(ctx) == nil })
	e := &store.Event{ID: "after", ChannelID: "c", Method: "POST", Path: "/"}
	if err := s.AppendEvent(ctx, e); err != nil {
		t.Fatalf("append after recovery: %v", err)
	}
	// Nothing acknowledged was lost.
	acked.Range(func(id, seq any) bool {
		got, err := s.GetEvent(ctx, id.(string))
		if err != nil || got.Seq != seq.(int64) {
			t.Errorf("acknowledged event %s (seq %d): got seq %d, err %v", id, seq, got.Seq, err)
		}
		return true
	})
}

// TestDatabaseDownAndBack takes the database away behind a proxy: every
// call fails with store.ErrUnavailable while it is gone (connection
// refused), and the same Store works again once it is back.
func TestDatabaseDownAndBack(t *testing.T) {
	t.Parallel()
	proxy, url := pgtest.NewProxy(t, pgtest.Schema(t))
	s := openTest(t, url, Options{ConnectTimeout: 2 * time.Second})
	ctx := t.Context()
	if err := s.CreateChannel(ctx, store.Channel{ID: "c"}); err != nil {
		t.Fatal(err)
	}
	before := &store.Event{ID: "before", ChannelID: "c", Method: "POST", Path: "/"}
	if err := s.AppendEvent(ctx, before); err != nil {
		t.Fatal(err)
	}

	proxy.Down()
	checkUnavailable(t, "Ping while down", s.Ping(ctx))
	checkUnavailable(t, "AppendEvent while down",
		s.AppendEvent(ctx, &store.Event{ID: "down", ChannelID: "c", Method: "POST", Path: "/"}))
	_, err := s.GetChannel(ctx, "c")
	checkUnavailable(t, "GetChannel while down", err)
	_, err = s.ListEvents(ctx, store.EventQuery{ChannelID: "c"})
	checkUnavailable(t, "ListEvents while down", err)

	proxy.Up()
	waitFor(t, 15*time.Second, "Ping after the database came back", func() bool { return s.Ping(ctx) == nil })
	after := &store.Event{ID: "after", ChannelID: "c", Method: "POST", Path: "/"}
	if err := s.AppendEvent(ctx, after); err != nil {
		t.Fatalf("append after the database came back: %v", err)
	}
	es, err := s.ListEvents(ctx, store.EventQuery{ChannelID: "c"})
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 2 || es[0].ID != "after" || es[1].ID != "before" {
		t.Errorf("events after recovery: %v, want after and before", ids(es))
	}
}

// TestStalledDatabaseTimesOut stops every byte between the store and the
// database: calls fail with store.ErrUnavailable after QueryTimeout
// instead of hanging, and work again once traffic flows.
func TestStalledDatabaseTimesOut(t *testing.T) {
	t.Parallel()
	proxy, url := pgtest.NewProxy(t, pgtest.Schema(t))
	const timeout = 500 * time.Millisecond
	s := openTest(t, url, Options{QueryTimeout: timeout, ConnectTimeout: timeout})
	ctx := t.Context()
	if err := s.CreateChannel(ctx, store.Channel{ID: "c"}); err != nil {
		t.Fatal(err)
	}

	proxy.Stall()
	start := time.Now()
	err := s.Ping(ctx)
	checkUnavailable(t, "Ping while stalled", err)
	if !errors.Is(err, errQueryTimeout) {
		t.Errorf("Ping while stalled: %v, want the query timeout named", err)
	}
	checkUnavailable(t, "AppendEvent while stalled",
		s.AppendEvent(ctx, &store.Event{ID: "stalled", ChannelID: "c", Method: "POST", Path: "/"}))
	if d := time.Since(start); d > 20*timeout {
		t.Errorf("two calls on a stalled database took %s, want about 2×%s", d, timeout)
	}

	proxy.Resume()
	waitFor(t, 15*time.Second, "Ping after traffic resumed", func() bool { return s.Ping(ctx) == nil })
	if err := s.AppendEvent(ctx, &store.Event{ID: "after", ChannelID: "c", Method: "POST", Path: "/"}); err != nil {
		t.Fatalf("append after traffic resumed: %v", err)
	}
}

func ids(es []store.Event) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.ID
	}
	return out
}
