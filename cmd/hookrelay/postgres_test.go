package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/server/store/postgres/pgtest"
)

// TestServersShareAPostgresDatabase starts two relays on one PostgreSQL
// schema, configured through the environment as in docs/deploy.md: a
// channel created on one is served by the other, and a webhook posted to
// the second is listed by the first.
func TestServersShareAPostgresDatabase(t *testing.T) {
	t.Parallel()
	db := pgtest.Schema(t)
	const token = "hr_postgres_cli_test_admin_token"
	env := []string{"HOOKRELAY_DATABASE=" + db, "HOOKRELAY_ADMIN_TOKEN=" + token}
	node1 := start(t, env, "server", "--listen", "127.0.0.1:0", "--data-dir", t.TempDir())
	node2 := start(t, env, "server", "--listen", "127.0.0.1:0", "--data-dir", t.TempDir())
	addr1, line := node1.waitAddr(t, 30*time.Second)
	if strings.Contains(line, "hr_") || !strings.Contains(line, "postgres://") {
		t.Errorf("listening line should name the database and no token: %q", line)
	}
	addr2, _ := node2.waitAddr(t, 30*time.Second)

	out, code := run(t, []string{"HOOKRELAY_SERVER=http://" + addr1, "HOOKRELAY_TOKEN=" + token},
		"channel", "create", "--json")
	if code != 0 {
		t.Fatalf("channel create on node 1: exit %d: %s", code, out)
	}
	var ch struct{ ID string }
	if err := json.Unmarshal([]byte(out), &ch); err != nil || ch.ID == "" {
		t.Fatalf("channel create --json printed %q (%v)", out, err)
	}
	resp, err := http.Post("http://"+addr2+"/h/"+ch.ID+"/hook", "application/json", strings.NewReader(`{"n":1}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("webhook to node 2: %d, want 202 (queued, no agent)", resp.StatusCode)
	}
	out, code = run(t, []string{"HOOKRELAY_SERVER=http://" + addr1, "HOOKRELAY_TOKEN=" + token},
		"events", "list", ch.ID, "--json")
	if code != 0 || !strings.Contains(out, `"/hook"`) {
		t.Fatalf("events on node 1: exit %d: %s", code, out)
	}

	// A cursor from one node pages on the other: the nodes share the
	// relay's secret through the database.
	resp, err = http.Post("http://"+addr1+"/h/"+ch.ID+"/second", "application/json", strings.NewReader(`{"n":2}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	type page struct {
		Events     []struct{ Path string }
		NextCursor string `json:"next_cursor"`
	}
	list := func(addr, query string) page {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/api/v1/channels/"+ch.ID+"/events?"+query, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var p page
		if err := json.NewDecoder(resp.Body).Decode(&p); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("list events on %s?%s: %d, %v", addr, query, resp.StatusCode, err)
		}
		return p
	}
	first := list(addr1, "limit=1")
	if len(first.Events) != 1 || first.Events[0].Path != "/second" || first.NextCursor == "" {
		t.Fatalf("first page on node 1: %+v, want /second and a next cursor", first)
	}
	if next := list(addr2, "limit=1&before="+first.NextCursor); len(next.Events) != 1 || next.Events[0].Path != "/hook" {
		t.Errorf("next page on node 2 with node 1's cursor: %+v, want /hook", next)
	}
}

func TestServerDatabaseErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"not postgres", []string{"--database", "mysql://localhost/x"}, "want a postgres:// URL"},
		{"no admin token", []string{"--database", "postgres://postgres@127.0.0.1:1/x"}, "admin_token is required"},
		{"max_db_size", []string{"--database", "postgres://postgres@127.0.0.1:1/x", "--admin-token", "x",
			"--max-db-size", "1GiB"}, "SQLite store only"},
		{"unreachable", []string{"--database", "postgres://postgres:secret@127.0.0.1:1/x?connect_timeout=2",
			"--admin-token", "x"}, "127.0.0.1:1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			args := append([]string{"server", "--listen", "127.0.0.1:0", "--data-dir", t.TempDir()}, tc.args...)
			out, code := run(t, []string{"HOOKRELAY_ADMIN_TOKEN=", "HOOKRELAY_DATABASE="}, args...)
			if code == 0 || !strings.Contains(out, tc.want) {
				t.Errorf("server %v: exit %d, want an error with %q:\n%s", tc.args, code, tc.want, out)
			}
			if strings.Contains(out, "secret") {
				t.Errorf("the error shows the database password:\n%s", out)
			}
		})
	}
}
