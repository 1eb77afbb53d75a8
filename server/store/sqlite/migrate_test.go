package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/server/store"
	"github.com/hookrelay/hookrelay/server/store/internal/schema"
)

// createV1 writes a database of schema version 1 (migration 0001 only) at
// path, with rows in every table, as a relay of that version left it.
func createV1(t *testing.T, path string) {
	t.Helper()
	ctx := t.Context()
	ms, err := schema.Load(migrationFiles, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(connector{drv: newDriver(), dsn: "file:" + path + "?_pragma=foreign_keys(1)&_pragma=journal_mode(WAL)"})
	defer db.Close()
	exec := func(query string, args ...any) {
		t.Helper()
		if _, err := db.ExecContext(ctx, query, args...); err != nil {
			t.Fatalf("%s: %v", query, err)
		}
	}
	exec(`CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,
		applied_at INTEGER NOT NULL) STRICT`)
	exec(ms[0].SQL)
	exec(`INSERT INTO schema_migrations VALUES (1, ?, 0)`, ms[0].Name)

	at := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC).UnixMicro()
	exec(`INSERT INTO channels (id, team_id, async, expires_at, created_at, read_key_hash, verify_scheme,
		verify_secret, verify_header, allowed_cidrs, rate_limit)
		VALUES ('c1', 'tm1', 1, NULL, ?, 'hash', 'github', 's3cret', '', '["192.0.2.0/24"]', 5)`, at)
	exec(`INSERT INTO channels (id, created_at) VALUES ('c2', ?)`, at)
	events := []struct {
		id, channel, state, query, headers string
		body                               []byte
		attempts, lastStatus               int
		delivered                          bool
	}{
		{"e1", "c1", "accepted", "a=1&b=%20", `[{"name":"Content-Type","value":"application/json"},{"name":"x-repeat","value":"1"},{"name":"X-Repeat","value":"<&> \"q\" café"}]`,
			[]byte(`{"n":1}`), 2, 200, true},
		{"e2", "c1", "rejected", "", `[{"name":"X-Hub-Signature-256","value":"sha256=bad"}]`, []byte{0, 0xff, 1}, 0, 0, false},
		{"e3", "c1", "accepted", "", `[]`, []byte{}, 1, 0, false},
		{"e4", "c2", "accepted", "q", `[{"name":"A","value":""}]`, bytes.Repeat([]byte("x"), 10000), 0, 0, false},
		{"e5", "c1", "accepted", "", `[]`, []byte("gone"), 0, 0, false},
	}
	for i, e := range events {
		exec(`INSERT INTO events (id, channel_id, method, path, raw_query, remote_addr, received_at, state,
			reject_reason, last_status, attempts, delivered_any, headers, body)
			VALUES (?, ?, 'POST', '/p/'||?, ?, '192.0.2.1:1', ?, ?, CASE WHEN ? = 'rejected' THEN 'bad signature' ELSE '' END,
			?, ?, ?, ?, ?)`,
			e.id, e.channel, e.id, e.query, at+int64(i), e.state, e.state, e.lastStatus, e.attempts, e.delivered, e.headers, e.body)
	}
	// The newest event was deleted: its seq (5) must never come back.
	exec(`DELETE FROM events WHERE id = 'e5'`)
	exec(`INSERT INTO delivery_groups (channel_id, name, done_through, created_at, last_seen_at)
		VALUES ('c1', 'laptop', 1, ?, ?)`, at, at+1)
	exec(`INSERT INTO done_marks (group_id, event_seq) VALUES (1, 3)`)
	exec(`INSERT INTO deliveries (id, event_seq, event_id, channel_id, group_id, group_name, agent_id, attempt,
		started_at, duration_ns, status, error, done, response_headers, response_body)
		VALUES ('d1', 1, 'e1', 'c1', 1, 'laptop', 'ag1', 1, ?, 1500, 0, 'connection refused', 0, '[]', X''),
		       ('d2', 1, 'e1', 'c1', 1, 'laptop', 'ag1', 2, ?, 2500, 200, '', 1,
		        '[{"name":"X-B","value":"1"},{"name":"x-a","value":"2"}]', X'6f6bff'),
		       ('d3', 3, 'e3', 'c1', 1, 'laptop', 'ag2', 1, ?, 10, 0, 'timeout', 1, '[]', X'')`,
		at+10, at+20, at+30)
	exec(`INSERT INTO teams (id, name, created_at) VALUES ('tm1', 'payments', ?)`, at)
	exec(`INSERT INTO tokens (id, team_id, role, name, hash, created_at) VALUES ('tok1', 'tm1', 'member', 'ci', 'h1', ?)`, at)
}

// TestMigrateFromV1 opens a version 1 database with data in it and checks
// that every channel, event, header, delivery, group and token survived.
func TestMigrateFromV1(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "hookrelay.db")
	createV1(t, path)
	s := openTest(t, path, Options{})

	if vs := schemaVersions(t, s); !slices.Equal(vs, []int{1, 2, 3}) {
		t.Errorf("schema versions %v, want [1 2 3]", vs)
	}
	c, err := s.GetChannel(ctx, "c1")
	if err != nil || c.TeamID != "tm1" || !c.Async || c.VerifyScheme != "github" || c.VerifySecret != "s3cret" ||
		!slices.Equal(c.AllowedCIDRs, []string{"192.0.2.0/24"}) || c.RateLimit != 5 {
		t.Errorf("channel c1 = %+v, %v", c, err)
	}

	e1, err := s.GetEvent(ctx, "e1")
	if err != nil {
		t.Fatal(err)
	}
	wantHeaders := []store.Header{{Name: "Content-Type", Value: "application/json"},
		{Name: "x-repeat", Value: "1"}, {Name: "X-Repeat", Value: `<&> "q" café`}}
	if e1.Seq != 1 || e1.ChannelID != "c1" || e1.Path != "/p/e1" || e1.RawQuery != "a=1&b=%20" ||
		!slices.Equal(e1.Headers, wantHeaders) || string(e1.Body) != `{"n":1}` || e1.Size != 7 ||
		e1.Attempts != 2 || e1.LastStatus != 200 || !e1.DeliveredAny || e1.State != store.EventAccepted ||
		e1.RemoteAddr != "192.0.2.1:1" || e1.ReceivedAt.UnixMicro() != time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC).UnixMicro() {
		t.Errorf("event e1 after migration = %+v", e1)
	}
	e2, err := s.GetEvent(ctx, "e2")
	if err != nil || e2.State != store.EventRejected || e2.RejectReason != "bad signature" ||
		!bytes.Equal(e2.Body, []byte{0, 0xff, 1}) || len(e2.Headers) != 1 || e2.Attempts != 0 {
		t.Errorf("event e2 after migration = %+v, %v", e2, err)
	}
	e3, err := s.GetEvent(ctx, "e3")
	if err != nil || e3.Body == nil || len(e3.Body) != 0 || e3.Headers != nil || e3.Attempts != 1 || e3.DeliveredAny {
		t.Errorf("event e3 after migration = %+v, %v", e3, err)
	}
	e4, err := s.GetEvent(ctx, "e4")
	if err != nil || e4.ChannelID != "c2" || len(e4.Body) != 10000 || e4.Size != 10000 || e4.RawQuery != "q" ||
		!slices.Equal(e4.Headers, []store.Header{{Name: "A", Value: ""}}) {
		t.Errorf("event e4 after migration = %+v, %v", e4, err)
	}
	if _, err := s.GetEvent(ctx, "e5"); err == nil {
		t.Error("event e5, deleted before the migration, is back")
	}
	es, err := s.ListEvents(ctx, store.EventQuery{Limit: 10})
	if err != nil || len(es) != 4 {
		t.Errorf("ListEvents after migration: %d events, %v; want 4", len(es), err)
	}
	if es, err := s.ListEvents(ctx, store.EventQuery{Status: 200}); err != nil || len(es) != 1 || es[0].ID != "e1" {
		t.Errorf("ListEvents by status after migration = %+v, %v", es, err)
	}
	if es, err := s.ListEvents(ctx, store.EventQuery{Text: "CAFÉ"}); err != nil || len(es) != 0 {
		t.Errorf("search folds ASCII only, so CAFÉ finds nothing: %+v, %v", es, err)
	}
	if es, err := s.ListEvents(ctx, store.EventQuery{Text: "x-REPEAT"}); err != nil || len(es) != 1 || es[0].ID != "e1" {
		t.Errorf("search in migrated headers = %+v, %v", es, err)
	}

	ds, err := s.Deliveries(ctx, "e1")
	if err != nil || len(ds) != 2 {
		t.Fatalf("deliveries of e1 after migration = %+v, %v", ds, err)
	}
	if d := ds[1]; d.ID != "d2" || d.Status != 200 || !d.Done || d.Duration != 2500 || d.AgentID != "ag1" ||
		!slices.Equal(d.ResponseHeaders, []store.Header{{Name: "X-B", Value: "1"}, {Name: "x-a", Value: "2"}}) ||
		!bytes.Equal(d.ResponseBody, []byte("ok\xff")) || d.GroupName != "laptop" || d.EventSeq != 1 {
		t.Errorf("delivery d2 after migration = %+v", d)
	}
	if d := ds[0]; d.ID != "d1" || d.Error != "connection refused" || d.ResponseHeaders != nil || len(d.ResponseBody) != 0 {
		t.Errorf("delivery d1 after migration = %+v", d)
	}

	gs, err := s.ListGroups(ctx, "c1")
	if err != nil || len(gs) != 1 || gs[0].Name != "laptop" || gs[0].DoneThrough != 1 {
		t.Fatalf("groups after migration = %+v, %v", gs, err)
	}
	// e3 is marked done above done_through; e2 is rejected: nothing pending.
	page, err := s.Pending(ctx, store.PendingQuery{GroupID: gs[0].ID})
	if err != nil || len(page.Events) != 0 || page.Horizon != 3 {
		t.Errorf("pending after migration = %+v, %v; want none, horizon 3", page, err)
	}
	if tm, err := s.TeamByName(ctx, "payments"); err != nil || tm.ID != "tm1" {
		t.Errorf("team after migration = %+v, %v", tm, err)
	}
	if tok, err := s.TokenByHash(ctx, "h1"); err != nil || tok.ID != "tok1" || tok.Role != store.RoleMember {
		t.Errorf("token after migration = %+v, %v", tok, err)
	}

	// Seqs go on above the highest ever assigned, the deleted e5's too.
	if m, err := s.MaxSeq(ctx); err != nil || m < 5 {
		t.Errorf("MaxSeq after migration = %d, %v; want at least 5", m, err)
	}
	next := &store.Event{ID: "next", ChannelID: "c1"}
	if err := s.AppendEvent(ctx, next); err != nil || next.Seq <= 5 {
		t.Errorf("append after migration: seq %d, %v; want above 5", next.Seq, err)
	}
	// Deleting a migrated event takes its status row and deliveries along.
	if err := s.DeleteChannel(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	var left int
	if err := s.rdb.QueryRowContext(context.Background(),
		`SELECT (SELECT count(*) FROM event_status) + (SELECT count(*) FROM deliveries)`).Scan(&left); err != nil || left != 0 {
		t.Errorf("status rows and deliveries left after deleting their channel: %d, %v", left, err)
	}
}
