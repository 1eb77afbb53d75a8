package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/client"
	"github.com/hookrelay/hookrelay/server/store"
	"github.com/hookrelay/hookrelay/server/store/postgres"
	"github.com/hookrelay/hookrelay/server/store/postgres/pgtest"
	"github.com/hookrelay/hookrelay/server/store/sqlite"
)

// startRelayPostgres starts a relay on a PostgreSQL store at url.
func startRelayPostgres(t *testing.T, url string, opts ...relayOption) *relayEnv {
	t.Helper()
	return startRelayOn(t, func() (store.Store, error) {
		return postgres.Open(context.Background(), url, postgres.Options{
			ConnectTimeout: time.Second, QueryTimeout: 2 * time.Second})
	}, opts...)
}

// echoApp is the app behind an agent: it answers 200 with the body it got.
func echoApp(t *testing.T) *httptest.Server {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Write(b)
	}))
	t.Cleanup(app.Close)
	return app
}

// check503 fails unless the answer is the store's 503 with Retry-After.
func check503(t *testing.T, what string, resp *http.Response, body []byte) {
	t.Helper()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" ||
		!strings.Contains(string(body), "store_unavailable") {
		t.Errorf("%s: %d Retry-After %q %s, want 503 store_unavailable with Retry-After",
			what, resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
}

// TestPostgresDownGives503AndRecovers takes the database away behind a
// proxy while an agent is connected: /readyz fails and every webhook gets
// 503 with Retry-After, never 2xx; when the database is back, the same
// relay (no restart) is ready again and the agent gets the next webhook.
func TestPostgresDownGives503AndRecovers(t *testing.T) {
	t.Parallel()
	proxy, dbURL := pgtest.NewProxy(t, pgtest.Schema(t))
	relay := startRelayPostgres(t, dbURL)
	ch := relay.channel(t, client.CreateChannel{})
	relay.startAgent(t, ch, echoApp(t).URL)

	resp, got := post(t, relay.ingress(ch), "text/plain", []byte("before"))
	if resp.StatusCode != http.StatusOK || string(got) != "before" {
		t.Fatalf("webhook before the outage: %d %s", resp.StatusCode, got)
	}

	proxy.Down()
	resp, got = do(t, http.MethodGet, relay.URL+"/readyz", nil, nil)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("readyz while the database is down: %d %s", resp.StatusCode, got)
	}
	for i := range 5 {
		resp, got := post(t, relay.ingress(ch), "text/plain", fmt.Appendf(nil, "during %d", i))
		check503(t, fmt.Sprintf("webhook %d during the outage", i), resp, got)
	}

	proxy.Up()
	waitFor(t, 20*time.Second, "readyz after the database came back", func() bool {
		resp, _ := do(t, http.MethodGet, relay.URL+"/readyz", nil, nil)
		return resp.StatusCode == http.StatusOK
	})
	resp, got = post(t, relay.ingress(ch), "text/plain", []byte("after"))
	if resp.StatusCode != http.StatusOK || string(got) != "after" {
		t.Fatalf("webhook after the outage: %d %s", resp.StatusCode, got)
	}
	page, err := relay.api().ListEvents(t.Context(), ch, url.Values{"limit": {"100"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Events) != 2 {
		t.Errorf("stored %d events, want the 2 answered 200 (none of the refused ones)", len(page.Events))
	}
}

// TestPostgresBackendsKilledUnderLoad kills the relay's database
// connections with pg_terminate_backend while senders post webhooks: every
// webhook gets 202 (and is stored) or 503 with Retry-After, and the relay
// accepts again by itself.
func TestPostgresBackendsKilledUnderLoad(t *testing.T) {
	t.Parallel()
	app := pgtest.AppName()
	relay := startRelayPostgres(t, pgtest.WithParam(t, pgtest.Schema(t), "application_name", app))
	ch := relay.channel(t, client.CreateChannel{Async: true})

	const senders, perSender = 4, 100
	var (
		mu       sync.Mutex
		accepted = map[string]bool{} // event ids answered 202
		refused  int
		wg       sync.WaitGroup
	)
	progress := make(chan struct{}, senders*perSender)
	for w := range senders {
		wg.Go(func() {
			for i := range perSender {
				resp, got := post(t, relay.ingress(ch), "text/plain", fmt.Appendf(nil, "%d-%d", w, i))
				mu.Lock()
				switch resp.StatusCode {
				case http.StatusAccepted:
					accepted[resp.Header.Get("Hookrelay-Event-Id")] = true
				default:
					refused++
					check503(t, "webhook while backends are killed", resp, got)
				}
				mu.Unlock()
				progress <- struct{}{}
			}
		})
	}
	killed := 0
	for range 4 {
		for range 30 { // kill after every 30 answers
			<-progress
		}
		killed += pgtest.Terminate(t, app)
	}
	wg.Wait()
	t.Logf("killed %d backends: %d webhooks accepted, %d refused with 503", killed, len(accepted), refused)
	if killed == 0 {
		t.Fatal("found no connection of the relay to kill")
	}

	waitFor(t, 20*time.Second, "a webhook accepted after the kills", func() bool {
		resp, _ := post(t, relay.ingress(ch), "text/plain", []byte("after"))
		if resp.StatusCode == http.StatusAccepted {
			mu.Lock()
			accepted[resp.Header.Get("Hookrelay-Event-Id")] = true
			mu.Unlock()
		}
		return resp.StatusCode == http.StatusAccepted
	})
	stored := map[string]bool{}
	for q := (url.Values{"limit": {"500"}}); ; {
		page, err := relay.api().ListEvents(t.Context(), ch, q)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range page.Events {
			stored[e.ID] = true
		}
		if page.NextCursor == "" {
			break
		}
		q.Set("before", page.NextCursor)
	}
	for id := range accepted {
		if !stored[id] {
			t.Errorf("webhook %s was answered 202 but is not stored", id)
		}
	}
}

// BenchmarkThroughputPostgresVsSQLite sends the load of
// BenchmarkThroughput32Senders1KiB through two relays in one run, one on
// PostgreSQL (HOOKRELAY_TEST_POSTGRES) and one on SQLite, alternating, and
// reports both rates and their ratio (postgres ÷ sqlite).
//
//	HOOKRELAY_TEST_POSTGRES=postgres://... go test ./e2e -run '^$' -bench PostgresVsSQLite -benchtime 5x
func BenchmarkThroughputPostgresVsSQLite(b *testing.B) {
	pg, err := postgres.Open(b.Context(), pgtest.Schema(b), postgres.Options{})
	if err != nil {
		b.Fatalf("open store: %v", err)
	}
	onPostgres := startRelayOnStore(b, pg) // closes pg at cleanup
	lite, err := sqlite.Open(filepath.Join(b.TempDir(), "hookrelay.db"), sqlite.Options{})
	if err != nil {
		b.Fatalf("open store: %v", err)
	}
	alternate(b, &relayRun{name: "postgres", url: onPostgres},
		&relayRun{name: "sqlite", url: startRelayOnStore(b, lite)})
}
