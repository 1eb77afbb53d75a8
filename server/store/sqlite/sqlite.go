// Package sqlite implements store.Store on an SQLite file, using the pure-Go
// driver modernc.org/sqlite (no cgo).
//
// The file is in WAL mode. One connection writes, owned by a writer
// goroutine that commits every write queued at that moment in one
// transaction (group commit) and assigns seqs (see writer.go); a pool of
// read-only connections serves reads, which WAL lets run alongside the
// writer. The schema is versioned by the embedded migrations in migrations/
// (see migrate.go). An event's delivery summary lives in event_status,
// apart from the row holding its body, and header lists are kept in the
// binary encoding of store.AppendHeaders, so values that are not UTF-8
// survive.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	sqlitedriver "modernc.org/sqlite" // registers the "sqlite" database/sql driver
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/hookrelay/hookrelay/server/store"
)

// Options tunes a Store. The zero value is ready to use.
type Options struct {
	// Synchronous is SQLite's synchronous setting for the writing
	// connection: "FULL" (the default) or "NORMAL".
	//
	// In WAL mode both keep a committed transaction across a crash of the
	// process (SIGKILL included): the commit has handed the WAL frames to the
	// operating system before AppendEvent returns. FULL also fsyncs the WAL
	// on every commit, so a commit survives a power loss or kernel crash as
	// well; NORMAL may lose the last commits then (never corrupting the
	// file). FULL is the default because the relay tells a sender "accepted"
	// only after the commit, and group commit pays one fsync per batch, not
	// per event. With FULL, a batch of nothing but RecordProgress calls
	// commits as with NORMAL and is fsynced with the next batch (see
	// writer.go): a lost delivery record means a redelivery, which
	// at-least-once allows, never a lost event.
	Synchronous string
	// BusyTimeout is how long a connection waits for a lock held by another
	// process before failing with SQLITE_BUSY. Default 5s.
	BusyTimeout time.Duration
	// ReadConns is the number of read-only connections. Default
	// max(4, GOMAXPROCS).
	ReadConns int
	// MaxBatch is the most writes committed in one transaction. Default 256;
	// 1 commits every write in its own transaction.
	MaxBatch int
	// MaxSize caps the database file in bytes (SQLite's max_page_count,
	// in the file's pages); 0: no cap. A full database fails writes with
	// ErrUnavailable, as a full disk does, and works again once retention
	// or a deletion frees pages.
	MaxSize int64
	// Limits are the caps the store enforces on appends (rejected events
	// per channel); zero fields take store's defaults.
	Limits store.Limits

	// noCheckpointer leaves checkpoints to SQLite's automatic ones inside
	// the writer's commits (see checkpoint.go), for tests that watch the WAL.
	noCheckpointer bool
	// pageSize is the page size of a new database file; 0: defaultPageSize.
	pageSize int
}

// defaultPageSize is the page size of a new database file. SQLite's own
// default, 4 KiB, makes a 1 MiB body 256 WAL frames, each written with two
// system calls and checksummed apart; 16 KiB pages halved the CPU time per
// 1 MiB event and cost 1 KiB events nothing (BenchmarkHotPath). A file
// made with other pages keeps them: page_size takes effect only on a new
// file (or after a VACUUM).
const defaultPageSize = 16 << 10

// Store is a store.Store on an SQLite file. Create it with Open; it is safe
// for concurrent use.
type Store struct {
	path string
	opts Options
	wdb  *sql.DB // one connection, used only by the writer goroutine (and migrations before it starts)
	rdb  *sql.DB // read-only pool
	cdb  *sql.DB // one connection, used only by the checkpoint goroutine; nil with noCheckpointer
	// pageSize is the file's page size.
	pageSize int

	jobs       chan *job     // unbuffered: a job sent is a job the writer owns
	quit       chan struct{} // closed by Close
	writerDone chan struct{} // closed when the writer goroutine returned
	// checkpointWake (buffered, 1) wakes the checkpoint goroutine, which
	// closes checkpointerDone when it returns (see checkpoint.go).
	checkpointWake   chan struct{}
	checkpointerDone chan struct{}
	closed           atomic.Bool
	closeOnce        sync.Once
	closeErr         error

	// lastSeq is the highest seq assigned; the writer raises it (see
	// writer.go), MaxSeq reads it.
	lastSeq atomic.Int64
	// reserved is the stored seq_reserve.reserve: every seq handed out is
	// at most this. Owned by the writer goroutine.
	reserved int64
	// walPages estimates the pages committed to the WAL since the
	// checkpoint goroutine was last woken. Owned by the writer goroutine.
	walPages int

	// Counters for tests and benchmarks: transactions the writer ran and
	// the jobs in them.
	batches, batchedJobs atomic.Int64

	onCommit atomic.Pointer[func(store.BatchCommit)] // ObserveCommits
	// checkpoints counts the checkpoint goroutine's checkpoints.
	checkpoints atomic.Int64
}

var _ store.Store = (*Store)(nil)

// errClosed is returned by every call after Close.
var errClosed = fmt.Errorf("sqlite store is closed: %w", store.ErrUnavailable)

// Open opens (creating if needed) the SQLite database at path, applies the
// embedded migrations and starts the writer goroutine. Close the Store to
// stop it.
func Open(path string, opts Options) (*Store, error) {
	if err := opts.fill(); err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	s := &Store{
		path:             abs,
		opts:             opts,
		jobs:             make(chan *job),
		quit:             make(chan struct{}),
		writerDone:       make(chan struct{}),
		checkpointWake:   make(chan struct{}, 1),
		checkpointerDone: make(chan struct{}),
	}
	if err := s.openDBs(); err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	if err := s.loadSeq(); err != nil {
		return nil, errors.Join(fmt.Errorf("open store %s: %w", path, err), s.closeDBs())
	}
	if s.cdb != nil {
		go s.runCheckpointer(s.cdb)
	} else {
		close(s.checkpointerDone)
	}
	go s.runWriter()
	return s, nil
}

func (o *Options) fill() error {
	switch strings.ToUpper(o.Synchronous) {
	case "":
		o.Synchronous = "FULL"
	case "FULL", "NORMAL":
		o.Synchronous = strings.ToUpper(o.Synchronous)
	default:
		return fmt.Errorf("synchronous %q: want FULL or NORMAL", o.Synchronous)
	}
	if o.BusyTimeout <= 0 {
		o.BusyTimeout = 5 * time.Second
	}
	if o.ReadConns <= 0 {
		o.ReadConns = max(4, runtime.GOMAXPROCS(0))
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 256
	}
	if o.pageSize <= 0 {
		o.pageSize = defaultPageSize
	}
	o.Limits = o.Limits.WithDefaults()
	return nil
}

// loadSeq starts the seq counter at the stored reserve (see writer.go).
func (s *Store) loadSeq() error {
	var reserve, maxSeq int64
	err := s.wdb.QueryRow(`SELECT reserve, (SELECT coalesce(max(seq), 0) FROM events)
		FROM seq_reserve WHERE id = 1`).Scan(&reserve, &maxSeq)
	if err != nil {
		return fmt.Errorf("read the seq reserve: %w", err)
	}
	// max(seq) can only exceed the reserve if the row was edited by hand.
	s.reserved = max(reserve, maxSeq)
	s.lastSeq.Store(s.reserved)
	return nil
}

// dsn builds a modernc.org/sqlite data source name for the file with the
// given connection parameters.
func (s *Store) dsn(params url.Values) string {
	params.Set("_busy_timeout", strconv.FormatInt(s.opts.BusyTimeout.Milliseconds(), 10))
	u := url.URL{Scheme: "file", OmitHost: true, Path: s.path, RawQuery: params.Encode()}
	return u.String()
}

func (s *Store) openDBs() error {
	drv := newDriver()
	wdb, err := s.openWriterDB(drv, s.opts.pageSize)
	if err != nil {
		return err
	}
	// page_size only shapes a new file: an older one keeps its pages, and
	// max_page_count, counted in pages, must be counted in those.
	var pageSize int
	if err := wdb.QueryRow(`PRAGMA page_size`).Scan(&pageSize); err != nil {
		return errors.Join(fmt.Errorf("read the page size: %w", err), wdb.Close())
	}
	if pageSize != s.opts.pageSize && s.opts.MaxSize > 0 {
		if err := wdb.Close(); err != nil {
			return err
		}
		if wdb, err = s.openWriterDB(drv, pageSize); err != nil {
			return err
		}
	}

	r := url.Values{}
	r.Set("_query_only", "1")
	rdb := sql.OpenDB(connector{drv: drv, dsn: s.dsn(r)})
	rdb.SetMaxOpenConns(s.opts.ReadConns)
	rdb.SetMaxIdleConns(s.opts.ReadConns)
	rdb.SetConnMaxIdleTime(0)
	if err := rdb.Ping(); err != nil {
		return errors.Join(err, rdb.Close(), wdb.Close())
	}
	s.wdb, s.rdb, s.pageSize = wdb, rdb, pageSize
	if !s.opts.noCheckpointer {
		// The writer's connection but for the automatic checkpoint, which
		// only the writer runs (see checkpoint.go).
		cdb := sql.OpenDB(connector{drv: drv, dsn: s.dsn(s.writerParams(pageSize, false))})
		cdb.SetMaxOpenConns(1)
		cdb.SetMaxIdleConns(1)
		cdb.SetConnMaxIdleTime(0)
		if err := cdb.Ping(); err != nil {
			return errors.Join(err, cdb.Close(), rdb.Close(), wdb.Close())
		}
		s.cdb = cdb
	}
	return nil
}

// openWriterDB opens the writer's database (one connection) and applies
// the migrations; pageSize is the file's, or the one a new file gets.
func (s *Store) openWriterDB(drv *sqlitedriver.Driver, pageSize int) (*sql.DB, error) {
	wdb := sql.OpenDB(connector{drv: drv, dsn: s.dsn(s.writerParams(pageSize, !s.opts.noCheckpointer))})
	wdb.SetMaxOpenConns(1)
	wdb.SetMaxIdleConns(1)
	wdb.SetConnMaxLifetime(0)
	wdb.SetConnMaxIdleTime(0)
	if err := migrate(context.Background(), wdb); err != nil {
		return nil, errors.Join(err, wdb.Close())
	}
	return wdb, nil
}

// writerParams are the connection parameters of a connection that writes.
// backstop raises the automatic checkpoint's threshold, for the writer
// when the checkpoint goroutine runs.
func (s *Store) writerParams(pageSize int, backstop bool) url.Values {
	w := url.Values{}
	w.Set("_journal_mode", "WAL")
	w.Set("_synchronous", s.opts.Synchronous)
	w.Set("_foreign_keys", "1")
	// Keep the WAL file from staying huge after a burst.
	w.Add("_pragma", "journal_size_limit(67108864)")
	w.Add("_pragma", fmt.Sprintf("page_size(%d)", s.opts.pageSize)) // a new file's
	if s.opts.MaxSize > 0 {
		w.Add("_pragma", fmt.Sprintf("max_page_count(%d)", max(1, s.opts.MaxSize/int64(pageSize))))
	}
	if backstop {
		w.Add("_pragma", fmt.Sprintf("wal_autocheckpoint(%d)", walBackstopPages))
	}
	return w
}

// closeDBs closes the store's databases.
func (s *Store) closeDBs() error {
	err := errors.Join(s.rdb.Close(), s.wdb.Close())
	if s.cdb != nil {
		err = errors.Join(err, s.cdb.Close())
	}
	return err
}

// Close stops the writer goroutine, waiting for the batch it is committing,
// and closes the database. Calls after Close fail with an error wrapping
// store.ErrUnavailable; Close itself may be called again and returns the
// first call's result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		close(s.quit)
		<-s.writerDone
		<-s.checkpointerDone
		s.closeErr = s.closeDBs()
		if s.closeErr != nil {
			s.closeErr = fmt.Errorf("close store %s: %w", s.path, s.closeErr)
		}
	})
	return s.closeErr
}

// Ping checks that the store can be written now: in one write transaction
// it inserts a page-sized row and rolls it back (failing when the database
// cannot grow, SQLITE_FULL) and commits a one-row update (failing when the
// file or its WAL cannot be written).
func (s *Store) Ping(ctx context.Context) error {
	err := s.write(ctx, 0, func(w *writeConn) error {
		if _, err := w.exec("SAVEPOINT probe"); err != nil {
			return err
		}
		_, err := w.exec("INSERT INTO probe(id, pad) VALUES (2, zeroblob((SELECT page_size FROM pragma_page_size())))")
		_, rerr := w.exec("ROLLBACK TO probe")
		if rerr == nil {
			_, rerr = w.exec("RELEASE probe")
		}
		if err != nil || rerr != nil {
			return errors.Join(err, rerr)
		}
		_, err = w.exec("INSERT INTO probe(id, pad) VALUES (1, ?) ON CONFLICT(id) DO UPDATE SET pad = excluded.pad",
			strconv.AppendInt(nil, time.Now().UnixMicro(), 10))
		return err
	})
	return wrapErr("ping store", err)
}

// readable fails once the store is closed; every read checks it first.
func (s *Store) readable() error {
	if s.closed.Load() {
		return errClosed
	}
	return nil
}

// wrapErr adds op to err. Errors callers branch on (not found, conflict,
// unavailable, the caller's own context) keep their identity; every other
// failure of the database is wrapped with store.ErrUnavailable.
func wrapErr(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrConflict),
		errors.Is(err, store.ErrUnavailable),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s: %w", op, err)
	default:
		return fmt.Errorf("%s: %w: %v", op, store.ErrUnavailable, err)
	}
}

// sqliteCode is the extended result code of an SQLite error, or 0.
func sqliteCode(err error) int {
	var se *sqlitedriver.Error
	if errors.As(err, &se) {
		return se.Code()
	}
	return 0
}

// constraintErr maps a failed insert or update to store.ErrConflict (unique
// or primary key) or store.ErrNotFound (the referenced row is missing),
// naming what; other errors are returned as they are.
func constraintErr(err error, conflict, missing string) error {
	switch sqliteCode(err) {
	case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
		return fmt.Errorf("%s: %w", conflict, store.ErrConflict)
	case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
		return fmt.Errorf("%s: %w", missing, store.ErrNotFound)
	}
	return err
}

// notFound maps sql.ErrNoRows to store.ErrNotFound naming what.
func notFound(err error, what string) error {
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%s: %w", what, store.ErrNotFound)
	}
	return err
}

// Times are stored as Unix microseconds (the precision PostgreSQL keeps
// too); NULL or 0 stands for the zero time where a column may be unset.

func micros(t time.Time) int64 { return t.UnixMicro() }

func nullMicros(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMicro()
}

func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

func fromNullMicros(us sql.NullInt64) time.Time {
	if !us.Valid {
		return time.Time{}
	}
	return fromMicros(us.Int64)
}

// nowOr returns t, or the current time when t is zero.
func nowOr(t time.Time) time.Time {
	if t.IsZero() {
		return time.Now()
	}
	return t
}
