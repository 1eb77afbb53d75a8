package postgres

import (
	"context"
	"errors"
	"fmt"
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
	storetest.Run(t, func(t *testing.T) store.Store {
		return openTest(t, pgtest.Schema(t), Options{})
	})
}

// TestContractOneTxEach runs the contract without group commit: every
// append its own transaction, four of them at once contending for the seq
// lock.
func TestContractOneTxEach(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) store.Store {
		return openTest(t, pgtest.Schema(t), Options{MaxBatch: 1, Writers: 4})
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
// on one database (two relay nodes) while a reader keeps reading the
// channel's seqs: every read must be a prefix of the final list, that is
// a seq never becomes visible after a higher one of the same channel. A
// dispatcher that has read up to seq N relies on this to skip nothing.
func TestSeqsVisibleInOrderAcrossNodes(t *testing.T) {
	t.Parallel()
	url := pgtest.Schema(t)
	nodes := []*Store{openTest(t, url, Options{}), openTest(t, url, Options{MaxBatch: 1})}
	ctx := t.Context()
	if err := nodes[0].CreateChannel(ctx, store.Channel{ID: "c"}); err != nil {
		t.Fatal(err)
	}
	readSeqs := func() []int64 {
		rows, _ := nodes[0].pool.Query(ctx, `SELECT seq FROM events WHERE channel_id = 'c' ORDER BY seq`)
		seqs, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			t.Fatal(err)
		}
		return seqs
	}

	const perWriter = 150
	var wg sync.WaitGroup
	done := make(chan struct{})
	for n, s := range nodes {
		for w := range 4 {
			wg.Go(func() {
				for i := range perWriter {
					e := &store.Event{ID: fmt.Sprintf("n%d-w%d-%d", n, w, i), ChannelID: "c", Method: "POST", Path: "/"}
					if err := s.AppendEvent(ctx, e); err != nil {
						t.Errorf("append %s: %v", e.ID, err)
						return
					}
				}
			})
		}
	}
	go func() { wg.Wait(); close(done) }()
	var reads [][]int64
	for finished := false; !finished; {
		select {
		case <-done:
			finished = true
		default:
		}
		reads = append(reads, readSeqs())
	}
	final := readSeqs()
	if len(final) != len(nodes)*4*perWriter {
		t.Fatalf("%d events stored, want %d", len(final), len(nodes)*4*perWriter)
	}
	for _, r := range reads {
		if len(r) > len(final) || !slices.Equal(r, final[:len(r)]) {
			t.Fatalf("a read saw seqs %v…, not a prefix of the final %v…: a lower seq became visible later",
				r[:min(len(r), 20)], final[:min(len(final), 20)])
		}
	}
	t.Logf("%d reads, all prefixes of the %d final seqs", len(reads), len(final))
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
