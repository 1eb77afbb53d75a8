package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"github.com/hookrelay/hookrelay/server/store"
	"github.com/hookrelay/hookrelay/server/store/internal/schema"
	"github.com/hookrelay/hookrelay/server/store/postgres/pgtest"
	"github.com/hookrelay/hookrelay/server/store/storetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// openTest opens a Store on url and closes it when the test ends.
func openTest(t testing.TB, url string, opts Options) *Store {
	t.Helper()
	s, err := Open(t.Context(), url, opts)
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
		return openTest(t, pgtest.Schema(t), Options{Limits: l})
	})
}

// TestContractOneTxEach runs the contract without group commit: every
// append its own transaction, on one writer.
func TestContractOneTxEach(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, l store.Limits) store.Store {
		return openTest(t, pgtest.Schema(t), Options{MaxBatch: 1, Writers: 1, Limits: l})
	})
}

// schemaVersions reads schema_migrations.
func schemaVersions(t *testing.T, s *Store) []int {
	t.Helper()
	rows, _ := s.pool.Query(t.Context(), "SELECT version FROM schema_migrations ORDER BY version")
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
	url := pgtest.Schema(t)
	for range 3 {
		s, err := Open(t.Context(), url, Options{})
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

// TestConcurrentOpenMigratesOnce opens several stores at once on one fresh
// database, as relay nodes starting together do: without the migration
// lock they would race to create the same tables and most would fail.
func TestConcurrentOpenMigratesOnce(t *testing.T) {
	t.Parallel()
	url := pgtest.Database(t)
	const nodes = 8
	stores := make([]*Store, nodes)
	errs := make([]error, nodes)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range nodes {
		wg.Go(func() {
			<-start
			stores[i], errs[i] = Open(t.Context(), url, Options{})
		})
	}
	close(start)
	wg.Wait()
	for i, s := range stores {
		if errs[i] != nil {
			t.Errorf("node %d: open: %v", i, errs[i])
			continue
		}
		t.Cleanup(func() { s.Close() })
	}
	if t.Failed() {
		t.FailNow()
	}
	ms, err := schema.Load(migrationFiles, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	if vs := schemaVersions(t, stores[0]); len(vs) != len(ms) {
		t.Errorf("schema_migrations holds %v, want versions 1..%d once each", vs, len(ms))
	}
	// Every node works on the shared schema.
	ctx := t.Context()
	if err := stores[0].CreateChannel(ctx, store.Channel{ID: "c"}); err != nil {
		t.Fatal(err)
	}
	for i, s := range stores {
		e := &store.Event{ID: fmt.Sprint("e", i), ChannelID: "c", Method: "POST", Path: "/"}
		if err := s.AppendEvent(ctx, e); err != nil {
			t.Errorf("node %d: append: %v", i, err)
		}
	}
}

func TestSchemaNewerThanBinary(t *testing.T) {
	t.Parallel()
	url := pgtest.Schema(t)
	s := openTest(t, url, Options{})
	if _, err := s.pool.Exec(t.Context(),
		"INSERT INTO schema_migrations (version, name) VALUES (9999, 'future')"); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(t.Context(), url, Options{})
	if err == nil {
		s2.Close()
		t.Fatal("Open of a database from a newer hookrelay succeeded")
	}
	if !strings.Contains(err.Error(), "schema version 9999 is newer") {
		t.Errorf("error %q does not say the schema is newer", err)
	}
}

func TestOpenErrors(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct{ url, want string }{
		"bad url":      {"postgres://%zz", "not valid"},
		"refused":      {"postgres://postgres@127.0.0.1:1/test?sslmode=disable&connect_timeout=2", "127.0.0.1:1"},
		"no such role": {"", "hookrelay_no_such_role"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			url := tc.url
			if url == "" {
				url = pgtest.WithParam(t, pgtest.ServerURL(t), "user", "hookrelay_no_such_role")
			}
			s, err := Open(t.Context(), url, Options{})
			if err == nil {
				s.Close()
				t.Fatalf("Open(%q) succeeded", url)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Open(%q) = %q, want it to mention %q", url, err, tc.want)
			}
		})
	}
}

// TestWrapErr checks the mapping of failures to the store's errors.
func TestWrapErr(t *testing.T) {
	t.Parallel()
	caller, cancelCaller := context.WithCancel(context.Background())
	cancelCaller()
	timedOut, cancel := context.WithTimeoutCause(context.Background(), 0, errQueryTimeout)
	defer cancel()
	other := errors.New("connection reset by peer")
	for _, tc := range []struct {
		name string
		ctx  context.Context
		err  error
		want error
	}{
		{"not found", context.Background(), fmt.Errorf("x: %w", store.ErrNotFound), store.ErrNotFound},
		{"conflict", context.Background(), fmt.Errorf("x: %w", store.ErrConflict), store.ErrConflict},
		{"any other", context.Background(), other, store.ErrUnavailable},
		{"caller canceled", caller, other, context.Canceled},
		{"query timeout", timedOut, other, store.ErrUnavailable},
	} {
		if got := wrapErr(tc.ctx, "op", tc.err); !errors.Is(got, tc.want) {
			t.Errorf("%s: wrapErr = %v, want it to wrap %v", tc.name, got, tc.want)
		}
	}
}

// TestSeqsVisibleInOrderAcrossNodes appends to one channel from two stores
// on one database (two relay nodes, one batching, one not) while a group's
// backlog is read after each commit: every read must be a prefix of the
// final list, that is a seq never becomes visible after a higher one of the
// same channel, and the page's Horizon is the highest seq read. A worker
// that has read up to the horizon relies on this to skip nothing. Without
// the channel's seq lock it fails within a few hundred appends.
func TestSeqsVisibleInOrderAcrossNodes(t *testing.T) {
	t.Parallel()
	url := pgtest.Schema(t)
	nodes := []*Store{openTest(t, url, Options{}), openTest(t, url, Options{MaxBatch: 1})}
	ctx := t.Context()
	if err := nodes[0].CreateChannel(ctx, store.Channel{ID: "c"}); err != nil {
		t.Fatal(err)
	}
	g, err := nodes[1].EnsureGroup(ctx, "c", "g", store.FromResume)
	if err != nil {
		t.Fatal(err)
	}
	const writers, perWriter = 4, 150
	total := len(nodes) * writers * perWriter
	readSeqs := func() []int64 {
		page, err := nodes[1].Pending(ctx, store.PendingQuery{GroupID: g.ID, Limit: total})
		if err != nil {
			t.Fatal(err)
		}
		seqs := make([]int64, len(page.Events))
		for i, e := range page.Events {
			seqs[i] = e.Seq
		}
		if top := slices.Max(append(seqs, 0)); page.Horizon != top {
			t.Fatalf("Horizon %d, want the highest seq read, %d", page.Horizon, top)
		}
		return seqs
	}

	var wg sync.WaitGroup
	appended := make(chan struct{}, 1) // an append committed since the last read
	for n, s := range nodes {
		for w := range writers {
			wg.Go(func() {
				for i := range perWriter {
					e := &store.Event{ID: fmt.Sprintf("n%d-w%d-%d", n, w, i), ChannelID: "c", Method: "POST", Path: "/"}
					if err := s.AppendEvent(ctx, e); err != nil {
						t.Errorf("append %s: %v", e.ID, err)
						return
					}
					select {
					case appended <- struct{}{}:
					default:
					}
				}
			})
		}
	}
	writing := make(chan struct{})
	go func() { wg.Wait(); close(writing) }()
	var reads [][]int64
	for running := true; running; {
		select {
		case <-writing:
			running = false
		case <-appended:
			reads = append(reads, readSeqs())
		}
	}
	final := readSeqs()
	if len(final) != total {
		t.Fatalf("%d events stored, want %d", len(final), total)
	}
	for _, r := range reads {
		if i := mismatch(r, final); i >= 0 {
			t.Fatalf("a read of %d seqs is not a prefix of the final %d: seq %d where the final list has %d: "+
				"a lower seq became visible later", len(r), len(final), r[i], final[min(i, len(final)-1)])
		}
	}
	t.Logf("%d reads, all prefixes of the %d final seqs", len(reads), len(final))
}

// TestBatchesOfManyChannelsAcrossNodes appends to eight channels in random
// order from two stores on one database: batches of both nodes hold the
// seq locks of several channels at once, and since each takes them in key
// order none waits on another in a cycle. Every append must succeed (a
// deadlock would fail a batch with store.ErrUnavailable).
func TestBatchesOfManyChannelsAcrossNodes(t *testing.T) {
	t.Parallel()
	url := pgtest.Schema(t)
	nodes := []*Store{openTest(t, url, Options{}), openTest(t, url, Options{})}
	ctx := t.Context()
	const channels, senders, each = 8, 8, 60
	for c := range channels {
		if err := nodes[0].CreateChannel(ctx, store.Channel{ID: fmt.Sprint("c", c)}); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for n, s := range nodes {
		for w := range senders {
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(n), uint64(w)))
				for i := range each {
					e := &store.Event{ID: fmt.Sprintf("n%d-w%d-%d", n, w, i),
						ChannelID: fmt.Sprint("c", rng.IntN(channels)), Method: "POST", Path: "/"}
					if err := s.AppendEvent(ctx, e); err != nil {
						t.Errorf("append %s: %v", e.ID, err)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	var batches, events int64
	for _, s := range nodes {
		batches, events = batches+s.batches.Load(), events+s.batchedJobs.Load()
	}
	t.Logf("%d events in %d batches", events, batches)
}

// mismatch returns the first index where prefix differs from list, or -1
// when it is a prefix of list.
func mismatch(prefix, list []int64) int {
	for i, v := range prefix {
		if i >= len(list) || list[i] != v {
			return i
		}
	}
	return -1
}

// TestSeqBeforeCommit holds back every commit that inserted an event (a
// deferred constraint trigger waits at commit for an advisory lock the test
// holds) and checks that StartAppend still returns with the event's seq,
// that the event stays invisible meanwhile, and that the Commit settles
// once the lock is let go: the seq comes before the commit's WAL flush, so
// a relay can start delivering while the commit is in flight.
// holdCommits makes every commit that inserts an event wait until release
// is called (a deferred trigger takes a lock a connection of the test
// holds); the INSERT itself, and so the seq, goes through.
func holdCommits(t *testing.T, s *Store, url string) (release func()) {
	t.Helper()
	ctx := t.Context()
	key := rand.Int64()
	if _, err := s.pool.Exec(ctx, fmt.Sprintf(`CREATE FUNCTION hold_commit() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN PERFORM pg_advisory_xact_lock_shared(%d); RETURN NULL; END $$;
		CREATE CONSTRAINT TRIGGER hold_commit AFTER INSERT ON events
		DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION hold_commit()`, key)); err != nil {
		t.Fatal(err)
	}
	holder, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { holder.Close(context.Background()) })
	if _, err := holder.Exec(ctx, `SELECT pg_advisory_lock($1)`, key); err != nil {
		t.Fatal(err)
	}
	release = sync.OnceFunc(func() {
		if _, err := holder.Exec(context.Background(), `SELECT pg_advisory_unlock($1)`, key); err != nil {
			t.Error(err)
		}
	})
	t.Cleanup(release)
	return release
}

func TestSeqBeforeCommit(t *testing.T) {
	t.Parallel()
	url := pgtest.Schema(t)
	s := openTest(t, url, Options{})
	ctx := t.Context()
	if err := s.CreateChannel(ctx, store.Channel{ID: "c"}); err != nil {
		t.Fatal(err)
	}
	release := holdCommits(t, s, url)

	e := &store.Event{ID: "e", ChannelID: "c", Method: "POST", Path: "/", Body: []byte("held")}
	started := make(chan *store.Commit, 1)
	go func() {
		c, err := s.StartAppend(ctx, e)
		if err != nil {
			t.Errorf("StartAppend: %v", err)
		}
		started <- c
	}()
	var commit *store.Commit
	select {
	case commit = <-started:
	case <-time.After(10 * time.Second):
		release()
		t.Fatal("StartAppend did not return while the commit was held: it waited for the commit")
	}
	if commit == nil {
		t.FailNow()
	}
	if e.Seq <= 0 {
		t.Errorf("StartAppend returned Seq %d, want a seq", e.Seq)
	}
	select {
	case <-commit.Done():
		t.Fatalf("the commit settled (%v) while held", commit.Err())
	default:
	}
	if _, err := s.GetEvent(ctx, "e"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetEvent before the commit: %v, want not found", err)
	}
	release()
	if err := commit.Wait(ctx); err != nil {
		t.Fatalf("commit after the lock was let go: %v", err)
	}
	if got, err := s.GetEvent(ctx, "e"); err != nil || got.Seq != e.Seq {
		t.Errorf("GetEvent after the commit: seq %d, %v; want %d", got.Seq, err, e.Seq)
	}
}

// TestRecordProgressWaitsForCommit: a delivery reported while its event's
// commit is in flight (the relay forwards before the commit is done) is
// written after that commit, not skipped as the record of an event that
// does not exist: RecordProgress waits for it, up to its ctx.
func TestRecordProgressWaitsForCommit(t *testing.T) {
	t.Parallel()
	url := pgtest.Schema(t)
	s := openTest(t, url, Options{})
	ctx := t.Context()
	if err := s.CreateChannel(ctx, store.Channel{ID: "c"}); err != nil {
		t.Fatal(err)
	}
	g, err := s.EnsureGroup(ctx, "c", "g", store.FromResume)
	if err != nil {
		t.Fatal(err)
	}
	release := holdCommits(t, s, url)
	e := &store.Event{ID: "e", ChannelID: "c", Method: "POST", Path: "/", Body: []byte("held")}
	commit, err := s.StartAppend(ctx, e)
	if err != nil {
		t.Fatalf("StartAppend: %v", err)
	}
	p := store.Progress{GroupID: g.ID, Deliveries: []store.Delivery{{
		ID: "d", EventID: "e", EventSeq: e.Seq, ChannelID: "c", GroupID: g.ID, GroupName: "g",
		Attempt: 1, StartedAt: time.Now(), Status: 200, Done: true,
	}}}
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if err := s.RecordProgress(short, p); err == nil {
		t.Fatal("RecordProgress returned nil while its event's commit was held: it did not wait for it")
	}
	release()
	if err := s.RecordProgress(ctx, p); err != nil {
		t.Fatalf("RecordProgress after the commit: %v", err)
	}
	if err := commit.Err(); err != nil {
		t.Fatalf("commit: %v", err)
	}
	if ds, err := s.Deliveries(ctx, "e"); err != nil || len(ds) != 1 || ds[0].ID != "d" {
		t.Errorf("deliveries of the event: %v, %v; want the one reported", ds, err)
	}
}

// TestDedicatedConn listens on a connection apart from the pool and gets a
// notification sent through the pool; the connection is in the store's
// schema.
func TestDedicatedConn(t *testing.T) {
	t.Parallel()
	s := openTest(t, pgtest.Schema(t), Options{})
	ctx := t.Context()
	conn, err := s.DedicatedConn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var schema, poolSchema string
	if err := conn.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		t.Fatal(err)
	}
	if err := s.pool.QueryRow(ctx, `SELECT current_schema()`).Scan(&poolSchema); err != nil {
		t.Fatal(err)
	}
	if schema != poolSchema {
		t.Errorf("dedicated connection in schema %q, the pool in %q", schema, poolSchema)
	}
	channel := "hookrelay_test_" + strings.ReplaceAll(poolSchema, "hookrelay_test_", "")
	if _, err := conn.Exec(ctx, `LISTEN `+channel); err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, `SELECT pg_notify($1, 'e1')`, channel); err != nil {
		t.Fatal(err)
	}
	waitCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	n, err := conn.WaitForNotification(waitCtx)
	if err != nil || n.Payload != "e1" {
		t.Fatalf("notification %+v, %v; want payload e1", n, err)
	}
	s.Close()
	if _, err := s.DedicatedConn(ctx); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("DedicatedConn after Close: %v, want store.ErrUnavailable", err)
	}
}

// TestPoolConfig checks how the URL and Options combine.
func TestPoolConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		url             string
		opts            Options
		maxConns        int32
		connectTimeout  time.Duration
		applicationName string
	}{
		{"postgres://u@h/db", Options{}, int32(max(8, 4*runtime.GOMAXPROCS(0))), 5 * time.Second, "hookrelay"},
		{"postgres://u@h/db?pool_max_conns=3&connect_timeout=7&application_name=mine", Options{}, 3, 7 * time.Second, "mine"},
		{"postgres://u@h/db?pool_max_conns=3&connect_timeout=7", Options{MaxConns: 5, ConnectTimeout: time.Second}, 5, time.Second, "hookrelay"},
	} {
		cfg, err := poolConfig(tc.url, tc.opts)
		if err != nil {
			t.Errorf("%s: %v", tc.url, err)
			continue
		}
		if cfg.MaxConns != tc.maxConns || cfg.ConnConfig.ConnectTimeout != tc.connectTimeout ||
			cfg.ConnConfig.RuntimeParams["application_name"] != tc.applicationName {
			t.Errorf("%s %+v: MaxConns %d, ConnectTimeout %s, application_name %q; want %d, %s, %q", tc.url, tc.opts,
				cfg.MaxConns, cfg.ConnConfig.ConnectTimeout, cfg.ConnConfig.RuntimeParams["application_name"],
				tc.maxConns, tc.connectTimeout, tc.applicationName)
		}
	}
	if _, err := poolConfig("postgres://u:hunter2@h:notaport/db", Options{}); err == nil ||
		strings.Contains(err.Error(), "hunter2") {
		t.Errorf("a bad URL gave %v, want an error that does not show the password", err)
	}
}

// TestSecret opens several stores on one fresh schema at once, as nodes
// starting together do: they all get the same secret, of secretSize bytes,
// and so does a store opened later.
func TestSecret(t *testing.T) {
	t.Parallel()
	url := pgtest.Schema(t)
	const nodes = 4
	stores := make([]*Store, nodes)
	for i := range stores {
		stores[i] = openTest(t, url, Options{})
	}
	secrets := make([][]byte, nodes)
	errs := make([]error, nodes)
	var wg sync.WaitGroup
	for i, s := range stores {
		wg.Go(func() { secrets[i], errs[i] = s.Secret(t.Context()) })
	}
	wg.Wait()
	for i := range stores {
		if errs[i] != nil {
			t.Fatalf("node %d: %v", i, errs[i])
		}
		if len(secrets[i]) != secretSize || !bytes.Equal(secrets[i], secrets[0]) {
			t.Errorf("node %d: secret %x, node 0: %x; want the same %d bytes", i, secrets[i], secrets[0], secretSize)
		}
	}
	later, err := openTest(t, url, Options{}).Secret(t.Context())
	if err != nil || !bytes.Equal(later, secrets[0]) {
		t.Errorf("a store opened later: secret %x, %v; want %x", later, err, secrets[0])
	}
	other, err := openTest(t, pgtest.Schema(t), Options{}).Secret(t.Context())
	if err != nil || bytes.Equal(other, secrets[0]) {
		t.Errorf("another database's secret %x, %v: want one of its own", other, err)
	}
}
