// Package postgres implements store.Store on PostgreSQL, for several relay
// nodes sharing one database. It uses github.com/jackc/pgx/v5 with a
// connection pool (pgxpool).
//
// The schema is versioned by the embedded migrations in migrations/,
// applied at Open under an advisory lock so nodes starting together apply
// them once (see migrate.go). The tables live in the connection's current
// schema, so several stores can share one database by giving each its own
// search_path in the URL.
//
// Every failure of the database (connection refused or lost, a backend
// terminated, a timeout, a closed store) is wrapped with
// store.ErrUnavailable, so the relay answers 503 and tries again; the pool
// replaces broken connections by itself, so the store recovers when
// PostgreSQL comes back without being reopened.
//
// Connections come from the pool, except where one must stay the same for
// a long time (LISTEN, for signals between nodes): DedicatedConn opens such
// a connection apart from the pool, with the pool's settings, so it never
// holds a pool slot.
package postgres

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hookrelay/hookrelay/server/store"
)

// Options tunes a Store. The zero value is ready to use; settings in the
// URL (pool_max_conns, connect_timeout, ...) are kept unless an option
// here overrides them.
type Options struct {
	// MaxConns is the size of the connection pool. Default: the URL's
	// pool_max_conns, else max(8, 4×GOMAXPROCS).
	MaxConns int
	// ConnectTimeout bounds one connection attempt. Default: the URL's
	// connect_timeout, else 5s, so a relay whose database is gone answers
	// 503 quickly instead of holding senders.
	ConnectTimeout time.Duration
	// QueryTimeout bounds each call of the Store (its queries and the wait
	// for a connection), whatever the caller's context allows. Default 10s;
	// a call cut off by it fails with store.ErrUnavailable.
	QueryTimeout time.Duration
	// MaxBatch is the most appends committed in one transaction (group
	// commit, see writer.go). Default 256; 1 commits every append in its
	// own transaction.
	MaxBatch int
	// Writers is the number of append writers, each committing one batch
	// at a time on a connection of its own; a channel's appends always go
	// to the same writer, so batches of channels on different writers
	// commit in parallel. Default 1: with PostgreSQL on the relay's
	// machine (2 cores), more writers made smaller batches and fewer
	// events per second (BenchmarkAppendEvent, docs/deploy.md). More may
	// pay where the database is far and a batch's round trip, not CPU,
	// bounds the rate.
	Writers int
	// Limits are the caps the store enforces on appends (rejected events
	// per channel); zero fields take store's defaults.
	Limits store.Limits
}

// defaultWriters is Options.Writers when not set.
const defaultWriters = 1

func (o *Options) fill() {
	if o.QueryTimeout <= 0 {
		o.QueryTimeout = 10 * time.Second
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 256
	}
	if o.Writers <= 0 {
		o.Writers = defaultWriters
	}
	o.Limits = o.Limits.WithDefaults()
}

// Store is a store.Store on PostgreSQL. Create it with Open; it is safe for
// concurrent use by many goroutines and by several relay nodes at once.
type Store struct {
	pool *pgxpool.Pool
	opts Options
	// lockSpace is the first half of every seq lock's advisory lock key
	// (see writer.go): a hash of the database and schema, so stores in
	// different schemas of one database do not wait on each other.
	lockSpace int32
	// maxRejected and maxRejectedBytes are opts.Limits for SQL, where no
	// cap is the largest value.
	maxRejected, maxRejectedBytes int64

	writersByKey []*writer      // a channel's appends go to writersByKey[key % len]
	quit         chan struct{}  // closed by Close
	writers      sync.WaitGroup // the writer goroutines

	closed    atomic.Bool
	closeOnce sync.Once

	// Counters for tests and benchmarks: append transactions and the
	// events in them.
	batches, batchedJobs atomic.Int64

	onCommit atomic.Pointer[func(store.BatchCommit)] // ObserveCommits
	// appending holds the Commit of each append of this Store taken and
	// not yet settled, by event id: RecordProgress waits for it (see
	// there). sync.Map: written once and deleted once per event, by
	// different goroutines.
	appending sync.Map
}

var (
	_ store.Store          = (*Store)(nil)
	_ store.CommitObserver = (*Store)(nil)
)

// errClosed is returned by every call after Close.
var errClosed = fmt.Errorf("postgres store is closed: %w", store.ErrUnavailable)

// Open connects to the PostgreSQL database at url (postgres://… or a
// key=value connection string), applies the embedded migrations and
// returns the Store. Close it to release its connections. Open fails when
// the database cannot be reached.
func Open(ctx context.Context, url string, opts Options) (*Store, error) {
	cfg, err := poolConfig(url, opts)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	opts.fill()
	where := fmt.Sprintf("%s:%d/%s", cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", where, err)
	}
	s := &Store{pool: pool, opts: opts, quit: make(chan struct{}),
		maxRejected: capOrMax(int64(opts.Limits.RejectedEvents)), maxRejectedBytes: capOrMax(opts.Limits.RejectedBytes)}
	if err := s.init(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open store %s: %w", where, err)
	}
	s.writersByKey = make([]*writer, opts.Writers)
	s.writers.Add(opts.Writers)
	for i := range s.writersByKey {
		w := &writer{jobs: make(chan *appendJob), batch: make([]*appendJob, 0, opts.MaxBatch)}
		s.writersByKey[i] = w
		go s.runWriter(w)
	}
	return s, nil
}

// poolConfig parses url and applies opts.
func poolConfig(url string, opts Options) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgx's message may quote the URL with its password; name the
		// problem without it.
		var pe *pgconn.ParseConfigError
		if errors.As(err, &pe) {
			return nil, errors.New("the database URL is not valid: want postgres://user:password@host:port/database?sslmode=...")
		}
		return nil, err
	}
	switch {
	case opts.MaxConns > 0:
		cfg.MaxConns = int32(opts.MaxConns)
	case !hasParam(url, "pool_max_conns"):
		cfg.MaxConns = int32(max(8, 4*runtime.GOMAXPROCS(0)))
	}
	switch {
	case opts.ConnectTimeout > 0:
		cfg.ConnConfig.ConnectTimeout = opts.ConnectTimeout
	case cfg.ConnConfig.ConnectTimeout == 0:
		cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	}
	// Dead idle connections (a restarted server, pg_terminate_backend) are
	// found by the health check and by the ping pgxpool sends before
	// handing out a connection idle for more than a second.
	cfg.HealthCheckPeriod = 15 * time.Second
	if cfg.ConnConfig.RuntimeParams == nil {
		cfg.ConnConfig.RuntimeParams = map[string]string{}
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = "hookrelay"
	}
	return cfg, nil
}

// hasParam reports whether the connection string sets the named parameter.
func hasParam(url, name string) bool {
	cfg, err := pgconn.ParseConfig(url)
	if err != nil {
		return false
	}
	_, ok := cfg.RuntimeParams[name]
	return ok
}

// init applies the migrations and reads what the store needs to know about
// its database.
func (s *Store) init(ctx context.Context) error {
	if err := migrate(ctx, s.pool); err != nil {
		return err
	}
	var db, schema string
	if err := s.pool.QueryRow(ctx, `SELECT current_database(), current_schema()`).Scan(&db, &schema); err != nil {
		return fmt.Errorf("read schema: %w", err)
	}
	h := fnv.New32a()
	h.Write([]byte("hookrelay\x00" + db + "\x00" + schema))
	s.lockSpace = int32(h.Sum32())
	return nil
}

// DedicatedConn opens a connection to the store's database apart from the
// pool, with the pool's settings (the URL's search_path and
// application_name included), for work that keeps one connection for a
// long time, such as LISTEN. The caller closes it; closing the Store does
// not. It fails with store.ErrUnavailable when the database cannot be
// reached.
func (s *Store) DedicatedConn(ctx context.Context) (*pgx.Conn, error) {
	if s.closed.Load() {
		return nil, fmt.Errorf("open a dedicated connection: %w", errClosed)
	}
	conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
	if err != nil {
		return nil, fmt.Errorf("open a dedicated connection: %w: %v", store.ErrUnavailable, err)
	}
	return conn, nil
}

// secretSize is the length of a secret Secret makes.
const secretSize = 32

// Secret returns the relay's secret kept in the database (it keys the
// relay's opaque cursors, which every node must read alike), making
// secretSize random bytes on first use. Nodes asking at once get the same
// secret: the first insert wins, the others read it.
func (s *Store) Secret(ctx context.Context) ([]byte, error) {
	made := make([]byte, secretSize)
	_, _ = rand.Read(made) // never fails (crypto/rand)
	var secret []byte
	err := s.call(ctx, "read the relay's secret", func(ctx context.Context) error {
		if _, err := s.pool.Exec(ctx, `INSERT INTO relay_secret (id, secret) VALUES (1, $1)
			ON CONFLICT (id) DO NOTHING`, made); err != nil {
			return err
		}
		// A statement of its own: its snapshot sees a row another node
		// committed while the insert waited for it.
		return s.pool.QueryRow(ctx, `SELECT secret FROM relay_secret WHERE id = 1`).Scan(&secret)
	})
	return secret, err
}

// Close stops the writers, waiting for the batches they are committing,
// and closes every connection of the pool, waiting for those in use to be
// released. Calls after Close fail with an error wrapping
// store.ErrUnavailable; calling Close again is harmless.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		close(s.quit)
		s.writers.Wait()
		s.pool.Close()
	})
	return nil
}

// Ping checks that the store can be written now: it commits an update of
// one row, which fails on a server that cannot write (a read-only standby,
// a full disk) as well as on one that cannot be reached.
func (s *Store) Ping(ctx context.Context) error {
	return s.call(ctx, "ping store", func(ctx context.Context) error {
		_, err := s.pool.Exec(ctx, `UPDATE probe SET at = now() WHERE id = 1`)
		return err
	})
}

// call runs fn as one call of the store: it fails once the store is
// closed, bounds fn by QueryTimeout, and wraps fn's error (wrapErr).
func (s *Store) call(ctx context.Context, op string, fn func(ctx context.Context) error) error {
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	defer cancel()
	return wrapErr(ctx, op, fn(ctx))
}

// queryRows runs a query as one call and scans every row with scan.
func queryRows[T any](ctx context.Context, s *Store, op string, scan pgx.RowToFunc[T], query string, args ...any) ([]T, error) {
	var out []T
	err := s.call(ctx, op, func(ctx context.Context) error {
		rows, _ := s.pool.Query(ctx, query, args...) // an error comes back from CollectRows
		var err error
		out, err = pgx.CollectRows(rows, scan)
		return err
	})
	return out, err
}

// queryRow runs a query returning one row as one call; no row is
// store.ErrNotFound naming what.
func queryRow[T any](ctx context.Context, s *Store, op, what string, scan pgx.RowToFunc[T], query string, args ...any) (T, error) {
	var out T
	err := s.call(ctx, op, func(ctx context.Context) error {
		rows, _ := s.pool.Query(ctx, query, args...)
		var err error
		out, err = pgx.CollectExactlyOneRow(rows, scan)
		return notFound(err, what)
	})
	return out, err
}

// begin starts a call: it fails once the store is closed and bounds the
// call by QueryTimeout.
func (s *Store) begin(ctx context.Context) (context.Context, context.CancelFunc, error) {
	if s.closed.Load() {
		return nil, nil, errClosed
	}
	ctx, cancel := context.WithTimeoutCause(ctx, s.opts.QueryTimeout, errQueryTimeout)
	return ctx, cancel, nil
}

// errQueryTimeout is the cause of a call's context when QueryTimeout ends it.
var errQueryTimeout = errors.New("the database did not answer within the query timeout")

// PostgreSQL error codes the store branches on.
const (
	codeUniqueViolation     = "23505"
	codeForeignKeyViolation = "23503"
)

// pgCode is the SQLSTATE of a PostgreSQL error, or "".
func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// constraintErr maps a failed insert or update to store.ErrConflict (a
// unique key) or store.ErrNotFound (a referenced row is missing), naming
// what; other errors are returned as they are.
func constraintErr(err error, conflict, missing string) error {
	switch pgCode(err) {
	case codeUniqueViolation:
		return fmt.Errorf("%s: %w", conflict, store.ErrConflict)
	case codeForeignKeyViolation:
		return fmt.Errorf("%s: %w", missing, store.ErrNotFound)
	}
	return err
}

// notFound maps pgx.ErrNoRows to store.ErrNotFound naming what.
func notFound(err error, what string) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%s: %w", what, store.ErrNotFound)
	}
	return err
}

// wrapErr adds op to err. Errors callers branch on (not found, conflict,
// unavailable) keep their identity, and so does the end of the caller's own
// context (ctx is the call's context from begin, derived from the
// caller's); every other failure — refused or broken connections,
// terminated backends, QueryTimeout, any error of the server — is wrapped
// with store.ErrUnavailable.
func wrapErr(ctx context.Context, op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrConflict),
		errors.Is(err, store.ErrUnavailable):
		return fmt.Errorf("%s: %w", op, err)
	case ctx.Err() != nil && !errors.Is(context.Cause(ctx), errQueryTimeout):
		return fmt.Errorf("%s: %w", op, ctx.Err())
	case ctx.Err() != nil:
		return fmt.Errorf("%s: %w: %w", op, store.ErrUnavailable, errQueryTimeout)
	default:
		return fmt.Errorf("%s: %w: %v", op, store.ErrUnavailable, err)
	}
}

// capOrMax is a cap for SQL: a negative one (no cap) is the largest value.
func capOrMax(n int64) int64 {
	if n < 0 {
		return math.MaxInt64
	}
	return n
}

// nullTime is nil for the zero time (a NULL column), else t.
func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

// fromNullTime is the zero time for NULL, else t in UTC.
func fromNullTime(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}

// nowOr returns t, or the current time when t is zero; either way truncated
// to the microsecond, the precision PostgreSQL keeps.
func nowOr(t time.Time) time.Time {
	if t.IsZero() {
		t = time.Now()
	}
	return t.Truncate(time.Microsecond)
}
