package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/client"
	"github.com/hookrelay/hookrelay/server/store"
	"github.com/hookrelay/hookrelay/server/store/postgres"
	"github.com/hookrelay/hookrelay/server/store/postgres/pgtest"
	"github.com/hookrelay/hookrelay/server/store/sqlite"
)

// Markers in a webhook's body that heldCommits acts on.
const (
	holdCommitMarker = "hold-this-commit" // its commit is held until the app has it
	failCommitMarker = "fail-this-commit" // the same, then the commit fails
)

// heldCommits is a real store whose appends of a marked webhook are taken
// by the store's writer (the event gets its seq) but whose Commit is
// settled only once the app has received the webhook, or after holdCommit:
// a relay that forwards while the commit is in flight has delivered it by
// then; one that delivers only committed events never does, and sees the
// commit after holdCommit. A webhook marked to fail is appended to a
// channel that does not exist, so the writer really fails it (its seq
// becomes a gap), and its Commit then reports ErrUnavailable, as a full
// disk would; only the first is failed, so that the sender's retry of it
// commits.
type heldCommits struct {
	store.Store
	arrived <-chan struct{} // closed when the app has a marked webhook
	wg      sync.WaitGroup
	failed  atomic.Bool // a webhook marked to fail was failed
	// heldUntilArrival counts held commits settled because the app had
	// the webhook; timedOut those settled after holdCommit.
	heldUntilArrival, timedOut atomic.Int32
}

// holdCommit bounds how long a held commit waits for the delivery.
const holdCommit = 5 * time.Second

func (s *heldCommits) StartAppend(ctx context.Context, e *store.Event) (*store.Commit, error) {
	fail := bytes.Contains(e.Body, []byte(failCommitMarker)) && s.failed.CompareAndSwap(false, true)
	if !fail && !bytes.Contains(e.Body, []byte(holdCommitMarker)) {
		return s.Store.StartAppend(ctx, e)
	}
	target := e
	if fail {
		shadow := *e
		shadow.ChannelID = "missing-" + e.ChannelID
		target = &shadow
	}
	taken, err := s.Store.StartAppend(ctx, target)
	if err != nil {
		return nil, err
	}
	if fail {
		e.Seq, e.ReceivedAt, e.State, e.Size = target.Seq, target.ReceivedAt, target.State, target.Size
	}
	commit, settle := store.NewCommit()
	s.wg.Go(func() {
		<-taken.Done()
		err := taken.Err()
		timer := time.NewTimer(holdCommit)
		defer timer.Stop()
		select {
		case <-s.arrived:
			s.heldUntilArrival.Add(1)
		case <-timer.C:
			s.timedOut.Add(1)
		}
		if fail {
			err = fmt.Errorf("%w: the test's disk is full (%v)", store.ErrUnavailable, err)
		}
		settle(err)
	})
	return commit, nil
}

func (s *heldCommits) AppendEvent(ctx context.Context, e *store.Event) error {
	return store.AppendAndWait(ctx, e, s.StartAppend)
}

func (s *heldCommits) Close() error {
	s.wg.Wait()
	return s.Store.Close()
}

// commitStore names a store and opens a new one for a test.
type commitStore struct {
	name string
	open func(t *testing.T) func() (store.Store, error)
}

// commitStores are the stores the tests below run on: SQLite, and
// PostgreSQL when HOOKRELAY_TEST_POSTGRES is set.
var commitStores = []commitStore{
	{"sqlite", func(t *testing.T) func() (store.Store, error) {
		path := t.TempDir() + "/hookrelay.db"
		return func() (store.Store, error) { return sqlite.Open(path, sqlite.Options{}) }
	}},
	{"postgres", func(t *testing.T) func() (store.Store, error) {
		url := pgtest.Schema(t)
		return func() (store.Store, error) { return postgres.Open(context.Background(), url, postgres.Options{}) }
	}},
}

// startHeldRelay starts a relay on the store sc opens, wrapped in
// heldCommits, with an agent of a new channel forwarding to a markedApp.
func startHeldRelay(t *testing.T, sc commitStore) (*relayEnv, *markedApp, *heldCommits, string) {
	t.Helper()
	open := sc.open(t)
	app := newMarkedApp(t)
	var held *heldCommits
	relay := startRelayOn(t, func() (store.Store, error) {
		st, err := open()
		if err != nil {
			return nil, err
		}
		held = &heldCommits{Store: st, arrived: app.arrived}
		return held, nil
	})
	ch := relay.channel(t, client.CreateChannel{})
	relay.startAgent(t, ch, app.URL)
	return relay, app, held, ch
}

// markedApp is an app that answers 200 "the app took it", closes arrived
// when a marked webhook reaches it, and keeps the event ids it was given.
type markedApp struct {
	*httptest.Server
	arrived chan struct{}
	mu      sync.Mutex
	ids     []string
	repeats []string // Hookrelay-Repeat-Of of each webhook, "" when absent
}

func newMarkedApp(t *testing.T) *markedApp {
	a := &markedApp{arrived: make(chan struct{})}
	var once sync.Once
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		a.mu.Lock()
		a.ids = append(a.ids, r.Header.Get("Hookrelay-Event-Id"))
		a.repeats = append(a.repeats, r.Header.Get("Hookrelay-Repeat-Of"))
		a.mu.Unlock()
		if bytes.Contains(body, []byte(holdCommitMarker)) || bytes.Contains(body, []byte(failCommitMarker)) {
			once.Do(func() { close(a.arrived) })
		}
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, "the app took it")
	}))
	t.Cleanup(a.Close)
	return a
}

func (a *markedApp) repeatOf() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.repeats...)
}

func (a *markedApp) eventIDs() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.ids...)
}

// TestFailedCommitIsNever2xx: a webhook whose commit fails after the app
// has received it and answered 200 gets 503, never the app's 2xx (issue 9:
// the relay forwards while the commit is in flight and answers the sender
// only when both are in). The failed event leaves nothing behind (no
// event, no delivery record), and the group goes on: the next webhook is
// answered by the app and nothing stays pending. The sender's retry of the
// failed webhook reaches the app marked Hookrelay-Repeat-Of the failed
// event; a different webhook is not marked.
func TestFailedCommitIsNever2xx(t *testing.T) {
	t.Parallel()
	for _, sc := range commitStores {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			relay, app, held, ch := startHeldRelay(t, sc)

			resp, body := post(t, relay.ingress(ch), "application/json", []byte(`{"ok":true}`))
			if resp.StatusCode != http.StatusOK || string(body) != "the app took it" {
				t.Fatalf("a webhook that commits: %d %q, want the app's 200", resp.StatusCode, body)
			}

			failing := []byte(`{"` + failCommitMarker + `":true}`)
			resp, body = post(t, relay.ingress(ch), "application/json", failing)
			var answer struct{ Code, Error string }
			_ = json.Unmarshal(body, &answer)
			if resp.StatusCode != http.StatusServiceUnavailable || answer.Code != "store_unavailable" || resp.Header.Get("Retry-After") == "" {
				t.Fatalf("a webhook whose commit failed: %d %s (Retry-After %q), want 503 store_unavailable, never a 2xx",
					resp.StatusCode, body, resp.Header.Get("Retry-After"))
			}
			if strings.Contains(string(body), "the app took it") {
				t.Errorf("the app's answer reached the sender of an uncommitted webhook: %s", body)
			}
			if held.heldUntilArrival.Load() != 1 || held.timedOut.Load() != 0 {
				t.Errorf("the commit failed before the app had the webhook (%d after it, %d before): the relay did not forward while the commit was in flight",
					held.heldUntilArrival.Load(), held.timedOut.Load())
			}
			ids := app.eventIDs()
			if len(ids) != 2 {
				t.Fatalf("the app got %d webhooks, want 2: %v", len(ids), ids)
			}
			failedID := ids[1]

			// The sender retries: the app has it again, marked as a repeat
			// of the failed event, under a new id; its first attempt.
			resp, body = post(t, relay.ingress(ch), "application/json", failing)
			if resp.StatusCode != http.StatusOK || string(body) != "the app took it" {
				t.Fatalf("the retry of the webhook whose commit failed: %d %q, want the app's 200", resp.StatusCode, body)
			}
			ids, repeats := app.eventIDs(), app.repeatOf()
			if len(ids) != 3 || ids[2] == failedID || repeats[2] != failedID {
				t.Fatalf("the app got %v with Hookrelay-Repeat-Of %q; want a third webhook, a new event marked as a repeat of %s",
					ids, repeats, failedID)
			}
			if repeats[0] != "" || repeats[1] != "" {
				t.Errorf("first deliveries marked as repeats: %q", repeats)
			}

			// The group goes on past the gap the failed seq left, and a
			// different webhook is not marked.
			resp, body = post(t, relay.ingress(ch), "application/json", []byte(`{"after":true}`))
			if resp.StatusCode != http.StatusOK || string(body) != "the app took it" {
				t.Fatalf("the webhook after a failed commit: %d %q, want the app's 200", resp.StatusCode, body)
			}
			if repeats := app.repeatOf(); len(repeats) != 4 || repeats[3] != "" {
				t.Errorf("Hookrelay-Repeat-Of of the webhooks the app got: %q; want the fourth unmarked", repeats)
			}
			ctx := context.Background()
			if _, err := relay.store.GetEvent(ctx, failedID); err == nil {
				t.Errorf("the event whose commit failed is stored")
			}
			groups, err := relay.store.ListGroups(ctx, ch)
			if err != nil || len(groups) != 1 {
				t.Fatalf("groups: %v, %v", groups, err)
			}
			waitFor(t, 10*time.Second, "no delivery pending and each delivered webhook recorded", func() bool {
				page, err := relay.store.Pending(ctx, store.PendingQuery{GroupID: groups[0].ID, Limit: 10})
				if err != nil || len(page.Events) > 0 {
					return false
				}
				for _, id := range []string{ids[0], ids[2], app.eventIDs()[3]} {
					if ds, err := relay.store.Deliveries(ctx, id); err != nil || len(ds) != 1 {
						return false
					}
				}
				return true
			})
			if ds, err := relay.store.Deliveries(ctx, failedID); err != nil || len(ds) != 0 {
				t.Errorf("delivery records of the event whose commit failed: %v, %v; want none", ds, err)
			}
			if n := len(app.eventIDs()); n != 4 {
				t.Errorf("the app got %d webhooks, want 4 (the failed one, then its retry)", n)
			}
		})
	}
}

// TestDeliveryStartsBeforeCommit: the app receives a webhook while its
// commit is still held, and the sender gets the app's answer once the
// commit is in.
func TestDeliveryStartsBeforeCommit(t *testing.T) {
	t.Parallel()
	for _, sc := range commitStores {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			relay, _, held, ch := startHeldRelay(t, sc)

			resp, body := post(t, relay.ingress(ch), "application/json", []byte(`{"`+holdCommitMarker+`":true}`))
			if resp.StatusCode != http.StatusOK || string(body) != "the app took it" {
				t.Fatalf("a held webhook: %d %q, want the app's 200", resp.StatusCode, body)
			}
			if held.heldUntilArrival.Load() != 1 || held.timedOut.Load() != 0 {
				t.Fatalf("the app got the webhook only after its commit (%d held until it arrived, %d timed out)",
					held.heldUntilArrival.Load(), held.timedOut.Load())
			}
			id := resp.Header.Get("Hookrelay-Event-Id")
			waitFor(t, 10*time.Second, "the delivery recorded", func() bool {
				ds, err := relay.store.Deliveries(context.Background(), id)
				return err == nil && len(ds) == 1 && ds[0].Status == http.StatusOK
			})
		})
	}
}
