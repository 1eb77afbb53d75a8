package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/hookrelay/hookrelay/server/store"
	"github.com/hookrelay/hookrelay/server/store/internal/schema"
	"github.com/hookrelay/hookrelay/server/store/storetest"
)

func TestMain(m *testing.M) {
	if path := os.Getenv(crashHelperEnv); path != "" {
		os.Exit(runCrashHelper(path)) // the child process of TestCrashKeepsAppendedEvents
	}
	goleak.VerifyTestMain(m)
}

// openTest opens a Store on path and closes it when the test ends.
func openTest(t testing.TB, path string, opts Options) *Store {
	t.Helper()
	s, err := Open(path, opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s
}

func TestContract(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, l store.Limits) store.Store {
		return openTest(t, filepath.Join(t.TempDir(), "hookrelay.db"), Options{Limits: l})
	})
}

// TestContractOneTxEach runs the contract without group commit, the path a
// batch of one job takes (no savepoints).
func TestContractOneTxEach(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, l store.Limits) store.Store {
		return openTest(t, filepath.Join(t.TempDir(), "hookrelay.db"), Options{MaxBatch: 1, Synchronous: "NORMAL", Limits: l})
	})
}

func TestOpenRejectsBadOptions(t *testing.T) {
	t.Parallel()
	_, err := Open(filepath.Join(t.TempDir(), "db"), Options{Synchronous: "OFF"})
	if err == nil || !strings.Contains(err.Error(), "synchronous") {
		t.Errorf("Open with synchronous OFF: %v, want an error about it", err)
	}
}

func TestReopenKeepsData(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "hookrelay.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateChannel(ctx, store.Channel{ID: "c"}); err != nil {
		t.Fatal(err)
	}
	var last int64
	for i := range 10 {
		e := &store.Event{ID: fmt.Sprint("e", i), ChannelID: "c", Method: "POST", Path: "/",
			Body: []byte{byte(i), 0, 255}}
		if err := s.AppendEvent(ctx, e); err != nil {
			t.Fatal(err)
		}
		last = e.Seq
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path + "-wal"); !os.IsNotExist(err) {
		t.Errorf("WAL file left after Close (stat: %v): the last connection should checkpoint it", err)
	}

	s = openTest(t, path, Options{})
	e, err := s.GetEvent(ctx, "e9")
	if err != nil {
		t.Fatal(err)
	}
	if e.Seq != last || string(e.Body) != "\x09\x00\xff" {
		t.Errorf("after reopen: seq %d body %q, want %d %q", e.Seq, e.Body, last, "\x09\x00\xff")
	}
	next := &store.Event{ID: "next", ChannelID: "c"}
	if err := s.AppendEvent(ctx, next); err != nil {
		t.Fatal(err)
	}
	if next.Seq <= last {
		t.Errorf("seq after reopen = %d, want > %d", next.Seq, last)
	}
}

// schemaVersions reads schema_migrations.
func schemaVersions(t *testing.T, s *Store) []int {
	t.Helper()
	rows, err := s.rdb.QueryContext(t.Context(), "SELECT version FROM schema_migrations ORDER BY version")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var vs []int
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		vs = append(vs, v)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return vs
}

func TestMigrationsIdempotent(t *testing.T) {
	t.Parallel()
	ms, err := schema.Load(migrationFiles, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "hookrelay.db")
	for range 3 {
		s, err := Open(path, Options{})
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		if vs := schemaVersions(t, s); len(vs) != len(ms) || vs[len(vs)-1] != len(ms) {
			t.Errorf("schema_migrations holds %v, want versions 1..%d once each", vs, len(ms))
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSchemaNewerThanBinary(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "hookrelay.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	err = s.write(t.Context(), 0, func(w *writeConn) error {
		_, err := w.exec("INSERT INTO schema_migrations (version, name, applied_at) VALUES (9999, 'future', 0)")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(path, Options{})
	if err == nil {
		s.Close()
		t.Fatal("Open of a database from a newer hookrelay succeeded")
	}
	if !strings.Contains(err.Error(), "schema version 9999 is newer") {
		t.Errorf("error %q does not say the schema is newer", err)
	}
}

// TestGroupCommitBatches checks that concurrent appends share
// transactions, and that each caller still gets its own result.
func TestGroupCommitBatches(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := openTest(t, filepath.Join(t.TempDir(), "hookrelay.db"), Options{})
	if err := s.CreateChannel(ctx, store.Channel{ID: "c"}); err != nil {
		t.Fatal(err)
	}
	batches0, jobs0 := s.batches.Load(), s.batchedJobs.Load()
	const n = 200
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			id := fmt.Sprint("e", i)
			if i%10 == 0 {
				id = "dup" // ten callers race for one id: one wins, nine get ErrConflict
			}
			errs[i] = s.AppendEvent(ctx, &store.Event{ID: id, ChannelID: "c", Body: make([]byte, 100)})
		})
	}
	wg.Wait()
	conflicts := 0
	for i, err := range errs {
		switch {
		case errors.Is(err, store.ErrConflict) && i%10 == 0:
			conflicts++
		case err != nil:
			t.Errorf("append %d: %v", i, err)
		}
	}
	if conflicts != n/10-1 {
		t.Errorf("%d appends of a duplicate id failed, want %d", conflicts, n/10-1)
	}
	batches, jobs := s.batches.Load()-batches0, s.batchedJobs.Load()-jobs0
	if jobs != n {
		t.Errorf("writer ran %d jobs, want %d", jobs, n)
	}
	if batches >= n {
		t.Errorf("%d concurrent appends took %d transactions: no group commit", n, batches)
	}
	t.Logf("%d appends in %d transactions", jobs, batches)
}

// setMaxPageCount sets PRAGMA max_page_count on the writer's connection and
// returns the database's page count. SQLite refuses to grow the file past
// max_page_count with SQLITE_FULL, exactly as when the disk is full. With
// limit 0 the file is full at once: the pages on the free list (the
// migrations leave some) are used up first.
func setMaxPageCount(t *testing.T, s *Store, limit int64) (pages int64) {
	t.Helper()
	err := s.write(t.Context(), 0, func(w *writeConn) error {
		for id := 100; limit <= 0; id++ {
			var free int64
			if err := w.row("PRAGMA freelist_count").Scan(&free); err != nil {
				return err
			}
			if free == 0 {
				break
			}
			if _, err := w.exec("INSERT INTO probe (id, pad) VALUES (?, zeroblob(3000))", id); err != nil {
				return err
			}
		}
		if err := w.row("PRAGMA page_count").Scan(&pages); err != nil {
			return err
		}
		if limit <= 0 {
			limit = pages
		}
		var got int64
		if err := w.row(fmt.Sprintf("PRAGMA max_page_count = %d", limit)).Scan(&got); err != nil {
			return err
		}
		if got != limit {
			return fmt.Errorf("max_page_count is %d, want %d", got, limit)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("set max_page_count: %v", err)
	}
	return pages
}

// TestDiskFullFailsAndRecovers fills the database (SQLITE_FULL, as on a
// full disk; chmod would not stop root), checks that writes fail with
// store.ErrUnavailable while reads go on, then makes room and checks that
// the same Store writes again without being reopened.
func TestDiskFullFailsAndRecovers(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := openTest(t, filepath.Join(t.TempDir(), "hookrelay.db"), Options{})
	if err := s.CreateChannel(ctx, store.Channel{ID: "c"}); err != nil {
		t.Fatal(err)
	}
	before := &store.Event{ID: "before", ChannelID: "c", Body: []byte("fits")}
	if err := s.AppendEvent(ctx, before); err != nil {
		t.Fatal(err)
	}
	setMaxPageCount(t, s, 0) // no room for one more page
	big := make([]byte, 64<<10)

	err := s.AppendEvent(ctx, &store.Event{ID: "full-1", ChannelID: "c", Body: big})
	if !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "full") {
		t.Fatalf("append to a full database: %v, want ErrUnavailable saying it is full", err)
	}
	if err := s.Ping(ctx); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Ping of a full database: %v, want ErrUnavailable", err)
	}
	// Concurrent appends share batches, each failing on its own savepoint.
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			err := s.AppendEvent(ctx, &store.Event{ID: fmt.Sprint("full-batch-", i), ChannelID: "c", Body: big})
			if !errors.Is(err, store.ErrUnavailable) {
				t.Errorf("concurrent append %d to a full database: %v, want ErrUnavailable", i, err)
			}
		})
	}
	wg.Wait()
	if err := s.RecordProgress(ctx, store.Progress{Deliveries: []store.Delivery{{ID: "d", EventID: "before", ResponseBody: big}}}); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("record delivery in a full database: %v, want ErrUnavailable", err)
	}
	if _, err := s.GetEvent(ctx, "before"); err != nil {
		t.Errorf("read from a full database: %v", err)
	}

	setMaxPageCount(t, s, 1<<30) // room again
	if err := s.Ping(ctx); err != nil {
		t.Errorf("Ping after making room: %v", err)
	}
	after := &store.Event{ID: "after", ChannelID: "c", Body: big}
	if err := s.AppendEvent(ctx, after); err != nil {
		t.Fatalf("append after making room: %v", err)
	}
	if after.Seq <= before.Seq {
		t.Errorf("seq after recovery %d, want > %d", after.Seq, before.Seq)
	}
	for _, id := range []string{"full-1", "full-batch-0"} {
		if _, err := s.GetEvent(ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("event whose append failed: %v, want ErrNotFound", err)
		}
	}
}

// TestBatchFailureDoesNotPoisonWriter breaks a whole transaction (the
// commit fails on a deferred constraint, so nothing of the batch is
// committed and the connection is replaced) and checks that the next
// write works.
func TestBatchFailureDoesNotPoisonWriter(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := openTest(t, filepath.Join(t.TempDir(), "hookrelay.db"), Options{})
	if err := s.CreateChannel(ctx, store.Channel{ID: "c"}); err != nil {
		t.Fatal(err)
	}
	err := s.write(ctx, 0, func(w *writeConn) error {
		// Deferred foreign keys fail at COMMIT, after every job succeeded.
		if _, err := w.exec("PRAGMA defer_foreign_keys = ON"); err != nil {
			return err
		}
		_, err := w.exec("INSERT INTO done_marks (group_id, event_seq) VALUES (12345, 67890)")
		return err
	})
	if !errors.Is(wrapErr("commit", err), store.ErrUnavailable) || sqliteCode(err) != sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY {
		t.Fatalf("commit with a broken foreign key: %v (code %d), want SQLITE_CONSTRAINT_FOREIGNKEY",
			err, sqliteCode(err))
	}
	e := &store.Event{ID: "after", ChannelID: "c"}
	if err := s.AppendEvent(ctx, e); err != nil {
		t.Fatalf("append after a failed commit: %v", err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Errorf("ping after a failed commit: %v", err)
	}
}

func TestCanceledContextBeforeHandOff(t *testing.T) {
	t.Parallel()
	s := openTest(t, filepath.Join(t.TempDir(), "hookrelay.db"), Options{})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := s.CreateChannel(ctx, store.Channel{ID: "c"})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("write with a canceled context: %v, want context.Canceled", err)
	}
	if _, err := s.GetChannel(t.Context(), "c"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("channel written although its write returned an error: %v", err)
	}
}

// TestBatchRollsBackOnlyTheFailedJob runs one batch by hand: a job that
// wrote and then failed must leave nothing behind, while the jobs around it
// commit.
func TestBatchRollsBackOnlyTheFailedJob(t *testing.T) {
	t.Parallel()
	db := sql.OpenDB(connector{drv: newDriver(), dsn: "file:" + filepath.Join(t.TempDir(), "hookrelay.db")})
	defer db.Close()
	if err := migrate(t.Context(), db); err != nil {
		t.Fatal(err)
	}
	conn, err := db.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	w := &writeConn{conn: conn, stmts: make(map[string]*sql.Stmt)}
	defer w.release(false)

	insert := func(id string, fail error) *job {
		return &job{fn: func(w *writeConn) error {
			if _, err := w.exec("INSERT INTO channels (id, created_at) VALUES (?, 0)", id); err != nil {
				return err
			}
			return fail
		}}
	}
	errLogical := errors.New("second thoughts")
	batch := []*job{insert("a", nil), insert("b", errLogical), insert("c", nil), insert("a", nil)}
	errs := make([]error, len(batch))
	if _, err := runBatch(w, batch, errs, func(*writeConn) error { return nil }); err != nil {
		t.Fatalf("runBatch: %v", err)
	}
	if errs[0] != nil || errs[2] != nil {
		t.Errorf("jobs that succeeded got errors %v, %v", errs[0], errs[2])
	}
	if !errors.Is(errs[1], errLogical) {
		t.Errorf("failed job got %v, want its own error", errs[1])
	}
	if sqliteCode(errs[3]) != sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY {
		t.Errorf("duplicate insert got %v, want a primary key violation", errs[3])
	}
	var got []string
	rows, err := db.QueryContext(t.Context(), "SELECT id FROM channels ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		got = append(got, id)
	}
	if strings.Join(got, ",") != "a,c" {
		t.Errorf("committed channels %q, want a and c", got)
	}
}

// TestCloseDuringAppends closes the store under load: every append returns
// either nil, and is then in the file, or ErrUnavailable; none hangs.
func TestCloseDuringAppends(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "hookrelay.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateChannel(ctx, store.Channel{ID: "c"}); err != nil {
		t.Fatal(err)
	}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		stored  []string
		started = make(chan struct{}, 16)
	)
	for g := range 16 {
		wg.Go(func() {
			for i := 0; ; i++ {
				id := fmt.Sprintf("g%d-%d", g, i)
				err := s.AppendEvent(ctx, &store.Event{ID: id, ChannelID: "c"})
				if errors.Is(err, store.ErrUnavailable) {
					return
				}
				if err != nil {
					t.Errorf("append %s: %v", id, err)
					return
				}
				mu.Lock()
				stored = append(stored, id)
				mu.Unlock()
				if i == 0 {
					started <- struct{}{}
				}
			}
		})
	}
	for range 16 {
		<-started // every goroutine has appended once, and keeps going
	}
	if err := s.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	wg.Wait()

	s = openTest(t, path, Options{})
	for _, id := range stored {
		if _, err := s.GetEvent(ctx, id); err != nil {
			t.Errorf("event %s acknowledged before Close is missing: %v", id, err)
		}
	}
}
