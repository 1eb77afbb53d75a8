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
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/client"
	"github.com/hookrelay/hookrelay/server/store"
	"github.com/hookrelay/hookrelay/server/store/sqlite"
)

// failCommitMarker in a webhook's body makes failingCommits fail its commit.
const failCommitMarker = "fail-this-commit"

// failingCommits is a real SQLite store whose appends of a webhook with
// failCommitMarker in its body are taken (the event gets its seq, as a
// store that forwards while the commit is in flight hands out) but whose
// commit then fails with ErrUnavailable, as a full disk would make it.
// The failure is reported once the app has received the webhook, so a
// relay that forwards before the commit is done has already delivered it;
// a relay that delivers only committed events never does, and sees the
// failure after holdFailure.
type failingCommits struct {
	store.Store
	arrived <-chan struct{} // closed when the app has the webhook
	wg      sync.WaitGroup
}

// holdFailure bounds how long a failing commit waits for the delivery.
const holdFailure = 2 * time.Second

func (s *failingCommits) StartAppend(ctx context.Context, e *store.Event) (*store.Commit, error) {
	if !bytes.Contains(e.Body, []byte(failCommitMarker)) {
		return s.Store.StartAppend(ctx, e)
	}
	taken, err := s.Store.StartAppend(ctx, e)
	if err != nil {
		return nil, err
	}
	commit, settle := store.NewCommit()
	s.wg.Go(func() {
		<-taken.Done()
		timer := time.NewTimer(holdFailure)
		defer timer.Stop()
		select {
		case <-s.arrived:
		case <-timer.C:
		}
		settle(fmt.Errorf("%w: the test's disk is full", store.ErrUnavailable))
	})
	return commit, nil
}

func (s *failingCommits) AppendEvent(ctx context.Context, e *store.Event) error {
	return store.AppendAndWait(ctx, e, s.StartAppend)
}

func (s *failingCommits) Close() error {
	s.wg.Wait()
	return s.Store.Close()
}

// TestFailedCommitIsNever2xx: a webhook whose commit fails gets 503, never
// the app's 2xx, even when the app has already received it and answered
// 200 (issue 9: the relay may forward while the commit is in flight, and
// answers the sender only when both are in). A webhook whose commit
// succeeds still gets the app's answer.
func TestFailedCommitIsNever2xx(t *testing.T) {
	t.Parallel()
	arrived := make(chan struct{})
	var once sync.Once
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if bytes.Contains(body, []byte(failCommitMarker)) {
			once.Do(func() { close(arrived) })
		}
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, "the app took it")
	}))
	t.Cleanup(app.Close)
	path := t.TempDir() + "/hookrelay.db"
	relay := startRelayOn(t, func() (store.Store, error) {
		st, err := sqlite.Open(path, sqlite.Options{})
		if err != nil {
			return nil, err
		}
		return &failingCommits{Store: st, arrived: arrived}, nil
	})
	ch := relay.channel(t, client.CreateChannel{})
	relay.startAgent(t, ch, app.URL)

	resp, body := post(t, relay.ingress(ch), "application/json", []byte(`{"ok":true}`))
	if resp.StatusCode != http.StatusOK || string(body) != "the app took it" {
		t.Fatalf("a webhook that commits: %d %q, want the app's 200", resp.StatusCode, body)
	}

	resp, body = post(t, relay.ingress(ch), "application/json", []byte(`{"`+failCommitMarker+`":true}`))
	var answer struct{ Code, Error string }
	_ = json.Unmarshal(body, &answer)
	if resp.StatusCode != http.StatusServiceUnavailable || answer.Code != "store_unavailable" || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("a webhook whose commit failed: %d %s (Retry-After %q), want 503 store_unavailable, never a 2xx",
			resp.StatusCode, body, resp.Header.Get("Retry-After"))
	}
	if strings.Contains(string(body), "the app took it") {
		t.Errorf("the app's answer reached the sender of an uncommitted webhook: %s", body)
	}
}
