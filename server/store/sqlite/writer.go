package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"time"

	"github.com/hookrelay/hookrelay/server/store"
)

// Group commit.
//
// Every write is a job handed to one writer goroutine over an unbuffered
// channel. The writer takes the first job, then every job whose sender is
// already waiting (up to Options.MaxBatch jobs or maxBatchBytes of payload),
// and runs them all in one BEGIN IMMEDIATE … COMMIT: the batch pays for one
// commit (and one fsync with synchronous=FULL) however many jobs it holds.
// There is no timer: while a batch commits, the next one queues up by itself.
//
// Each job of a batch runs inside its own SAVEPOINT, so a job that fails
// on its own (a duplicate id, a missing channel) is rolled back alone and
// the others still commit. When the transaction as a whole fails (BEGIN,
// COMMIT or a rollback fails, or SQLite rolled it back by itself, as it
// does on SQLITE_FULL), every job of the batch gets the error, and the
// connection is brought back to autocommit mode, or replaced when that
// fails, so the next batch starts clean: a failure never poisons the
// writer, and writes succeed again as soon as the disk does.
//
// Seqs. The writer assigns an event's seq the moment it takes the append's
// job, from a counter of its own (lastSeq), and tells the caller at once
// (job.taken), before the batch commits. Batches commit one after the
// other and a batch is atomic, so events become visible in seq order: a
// reader that sees seq N sees every committed seq below N, and nothing
// below N becomes visible later. A job that fails, or a batch that rolls
// back, leaves a gap: the counter never goes back.
//
// The counter must not go back across a restart either, or a seq handed to
// a caller of a failed append (and perhaps already written into a group's
// done_through) could be given to a new event. So every seq handed out is
// at most seq_reserve.reserve, a row the writer raises (seqReserveAhead at
// a time) in the same transaction as the first batch that goes past it,
// before it settles anyone: a seq above the stored reserve belongs to a
// batch that either commits the higher reserve with it or commits nothing.
// Open starts the counter at the reserve; Close stores the counter as the
// reserve, so a clean restart leaves no gap.

// Durability per batch. With synchronous=FULL every commit fsyncs the WAL,
// and a batch that commits while the previous one's fsync runs waits for
// it. Most of what the writer commits besides appends is a group's
// progress (delivery records and watermarks), which nobody is answered on
// and which, when lost, only means a redelivery that at-least-once allows.
// So a batch of nothing but such jobs (job.lazy) commits with
// synchronous=NORMAL: its WAL frames reach the operating system (a crash
// of the process loses nothing) and the next FULL commit's fsync, which
// covers the whole WAL, makes them durable too; only a power loss before
// then can undo them. Appends, and everything else, still fsync before
// their callers hear of it. At one sender this halves the fsyncs per
// webhook, and an append no longer waits for a progress write's fsync.

// maxBatchBytes bounds the payload (event and response bodies) of one batch.
const maxBatchBytes = 64 << 20

// seqReserveAhead is how far the stored reserve runs ahead of the counter.
const seqReserveAhead = 1024

// job is one write. The writer calls finish exactly once, with the job's
// result, once its batch is committed or failed; finish must not block.
type job struct {
	size   int // payload bytes, for maxBatchBytes
	fn     func(w *writeConn) error
	finish func(error)
	// An append's job: the writer sets seq and closes taken as soon as it
	// takes the job, before the batch runs. nil for other jobs.
	taken chan struct{}
	seq   int64
	// lazy: the job's commit need not be fsynced before finish (see
	// "Durability per batch").
	lazy bool
}

// writeConn is the writer's connection with its prepared statements. Only
// the writer goroutine (or migrate, before it starts) uses it.
type writeConn struct {
	conn  *sql.Conn
	stmts map[string]*sql.Stmt
	sync  string // the connection's synchronous setting
}

// stmt returns the prepared statement for query, preparing it on first use.
func (w *writeConn) stmt(query string) (*sql.Stmt, error) {
	if st, ok := w.stmts[query]; ok {
		return st, nil
	}
	// Statements run under the writer's own context: once a job is taken,
	// it runs to its end whatever its caller does, so a caller's nil error
	// always means committed and any other result means not committed.
	st, err := w.conn.PrepareContext(context.Background(), query)
	if err != nil {
		return nil, err
	}
	w.stmts[query] = st
	return st, nil
}

func (w *writeConn) exec(query string, args ...any) (sql.Result, error) {
	st, err := w.stmt(query)
	if err != nil {
		return nil, err
	}
	return st.Exec(args...)
}

// row runs a query returning at most one row; its Scan fails with
// sql.ErrNoRows when there is none.
func (w *writeConn) row(query string, args ...any) scanner {
	st, err := w.stmt(query)
	if err != nil {
		return errRow{err}
	}
	return st.QueryRow(args...)
}

// errRow is a row whose Scan fails with err.
type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

// write hands fn to the writer and waits for the commit of its batch. fn
// runs inside a transaction and must only set results that the caller
// reads after write returned nil. size is the payload in bytes.
//
// ctx bounds only the wait for the writer to take the job: once taken, the
// job's result is awaited, so nil means committed and an error means not.
func (s *Store) write(ctx context.Context, size int, fn func(w *writeConn) error) error {
	return s.writeJob(ctx, &job{size: size, fn: fn})
}

// writeLazy is write for a job whose commit need not be fsynced before it
// returns: a crash of the process loses nothing of it, a power loss may
// (see "Durability per batch").
func (s *Store) writeLazy(ctx context.Context, size int, fn func(w *writeConn) error) error {
	return s.writeJob(ctx, &job{size: size, fn: fn, lazy: true})
}

func (s *Store) writeJob(ctx context.Context, j *job) error {
	done := make(chan error, 1)
	j.finish = func(err error) { done <- err }
	if err := s.submit(ctx, j); err != nil {
		return err
	}
	return <-done
}

// submit hands j to the writer. It fails, and the writer never runs j, only
// when ctx ends or the store closes first.
func (s *Store) submit(ctx context.Context, j *job) error {
	if s.closed.Load() {
		return errClosed
	}
	if err := ctx.Err(); err != nil {
		return err // select below would pick a ready writer at random
	}
	select {
	case s.jobs <- j:
		return nil
	case <-s.quit:
		return errClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// runWriter is the writer goroutine, started by Open and ended by Close.
func (s *Store) runWriter() {
	var wc *writeConn // the current connection; nil after a failure
	defer func() {
		if wc != nil {
			s.storeReserve(wc, s.lastSeq.Load())
			wc.release(false)
		}
		close(s.writerDone)
	}()
	batch := make([]*job, 0, s.opts.MaxBatch)
	results := make([]error, s.opts.MaxBatch)
	for {
		batch = batch[:0]
		select {
		case j := <-s.jobs:
			batch = append(batch, s.take(j))
		case <-s.quit:
			return
		}
		size := batch[0].size
	fill:
		for len(batch) < s.opts.MaxBatch && size < maxBatchBytes {
			select {
			case j := <-s.jobs:
				batch = append(batch, s.take(j))
				size += j.size
			default:
				break fill
			}
		}

		errs := results[:len(batch)]
		clear(errs)
		if wc == nil {
			c, err := s.wdb.Conn(context.Background())
			if err != nil {
				fillErr(errs, fmt.Errorf("connect: %w", err))
			} else {
				wc = &writeConn{conn: c, stmts: make(map[string]*sql.Stmt), sync: s.opts.Synchronous}
			}
		}
		if wc != nil && !wc.setSync(s.batchSync(batch)) {
			fillErr(errs, errors.New("set synchronous for the batch"))
			wc.release(true)
			wc = nil
		}
		if wc != nil {
			// Seqs went past the stored reserve: raise it in this batch.
			reserve, raise := s.reserved, s.lastSeq.Load() > s.reserved
			if raise {
				reserve = s.lastSeq.Load() + seqReserveAhead
			}
			began := time.Now()
			committed, err := runBatch(wc, batch, errs, func(w *writeConn) error {
				if !raise {
					return nil
				}
				_, err := w.exec(`UPDATE seq_reserve SET reserve = ? WHERE id = 1`, reserve)
				return err
			})
			s.observeBatch(batch, errs, committed, err, time.Since(began))
			if err != nil {
				fillErr(errs, err)
				if !wc.reset() {
					wc.release(true)
					wc = nil
				}
			} else if committed {
				s.reserved = reserve
				s.committed(size)
			}
		}
		s.batches.Add(1)
		s.batchedJobs.Add(int64(len(batch)))
		for i, j := range batch {
			j.finish(errs[i])
		}
	}
}

// ObserveCommits sets the function told of every batch that held an
// append (store.CommitObserver).
func (s *Store) ObserveCommits(f func(store.BatchCommit)) {
	if f == nil {
		s.onCommit.Store(nil)
		return
	}
	s.onCommit.Store(&f)
}

// observeBatch tells the ObserveCommits function of a batch that held an
// append: its appends, how long its transaction took, and its failure (the
// transaction's, or when no job committed, the first append's own).
func (s *Store) observeBatch(batch []*job, errs []error, committed bool, err error, took time.Duration) {
	f := s.onCommit.Load()
	if f == nil {
		return
	}
	events := 0
	for i, j := range batch {
		if j.taken == nil {
			continue
		}
		if events++; err == nil && !committed {
			err = errs[i]
		}
	}
	if events > 0 {
		(*f)(store.BatchCommit{Events: events, Duration: took, Err: err})
	}
}

// batchSync is the synchronous setting batch commits with: the store's,
// or NORMAL when every job of the batch is lazy.
func (s *Store) batchSync(batch []*job) string {
	for _, j := range batch {
		if !j.lazy {
			return s.opts.Synchronous
		}
	}
	return "NORMAL"
}

// setSync sets the connection's synchronous setting, outside a
// transaction, and reports whether it is set.
func (w *writeConn) setSync(mode string) bool {
	if w.sync == mode {
		return true
	}
	if _, err := w.exec("PRAGMA synchronous = " + mode); err != nil {
		return false
	}
	w.sync = mode
	return true
}

// take is the writer taking j: an append gets its seq now, and its caller
// learns it at once.
func (s *Store) take(j *job) *job {
	if j.taken != nil {
		j.seq = s.lastSeq.Add(1)
		close(j.taken)
	}
	return j
}

// storeReserve lowers the stored reserve to the counter when the writer
// stops, so that the next Open goes on without a gap. It is best effort:
// when it fails the reserve stays higher, which only leaves a gap.
func (s *Store) storeReserve(w *writeConn, seq int64) {
	if seq >= s.reserved {
		return
	}
	if _, err := w.exec(`UPDATE seq_reserve SET reserve = ? WHERE id = 1`, seq); err == nil {
		s.reserved = seq
	}
}

// fillErr gives err to every job that has no error of its own.
func fillErr(errs []error, err error) {
	for i := range errs {
		if errs[i] == nil {
			errs[i] = err
		}
	}
}

// runBatch runs the jobs in one transaction, after prelude, recording each
// job's own error in errs. It returns an error when the transaction failed
// as a whole: then nothing of the batch is committed. committed says
// whether the transaction was committed (it is not when every job failed).
//
// A batch first runs without savepoints, which saves two statements per
// job; only when a job fails is the batch rolled back and run again with a
// savepoint around each job, so the failing job is undone alone. Jobs only
// set their results when they run, so running one twice is harmless.
func runBatch(w *writeConn, batch []*job, errs []error, prelude func(*writeConn) error) (committed bool, err error) {
	if len(batch) > 1 {
		done, err := runPlain(w, batch, prelude)
		if err != nil || done {
			return done, err
		}
	}
	return runWithSavepoints(w, batch, errs, prelude)
}

// begin starts the batch's transaction and runs prelude in it.
func begin(w *writeConn, prelude func(*writeConn) error) error {
	if _, err := w.exec("BEGIN IMMEDIATE"); err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := prelude(w); err != nil {
		return fmt.Errorf("start batch: %w", err)
	}
	return nil
}

// runPlain runs the batch in one transaction with no savepoints. It
// reports done=false, with the transaction rolled back, when a job failed.
func runPlain(w *writeConn, batch []*job, prelude func(*writeConn) error) (done bool, err error) {
	if err := begin(w, prelude); err != nil {
		return false, err
	}
	for _, j := range batch {
		if err := j.fn(w); err != nil {
			if _, rerr := w.exec("ROLLBACK"); rerr != nil {
				return false, fmt.Errorf("roll back a failed batch (%v): %w", err, rerr)
			}
			return false, nil
		}
	}
	if _, err := w.exec("COMMIT"); err != nil {
		return false, fmt.Errorf("commit: %w", err)
	}
	return true, nil
}

// runWithSavepoints runs the jobs in one transaction, each inside its own
// savepoint when there are several.
func runWithSavepoints(w *writeConn, batch []*job, errs []error, prelude func(*writeConn) error) (committed bool, err error) {
	if err := begin(w, prelude); err != nil {
		return false, err
	}
	savepoints := len(batch) > 1
	succeeded := 0
	for i, j := range batch {
		if savepoints {
			if _, err := w.exec("SAVEPOINT job"); err != nil {
				return false, fmt.Errorf("savepoint: %w", err)
			}
		}
		err := j.fn(w)
		if err == nil {
			succeeded++
		} else {
			errs[i] = err
		}
		if !savepoints {
			break
		}
		if err != nil {
			if _, rerr := w.exec("ROLLBACK TO job"); rerr != nil {
				return false, fmt.Errorf("roll back a failed write (%v): %w", err, rerr)
			}
		}
		if _, err := w.exec("RELEASE job"); err != nil {
			return false, fmt.Errorf("release savepoint: %w", err)
		}
	}
	if succeeded == 0 {
		if _, err := w.exec("ROLLBACK"); err != nil {
			return false, fmt.Errorf("rollback: %w", err)
		}
		return false, nil
	}
	if _, err := w.exec("COMMIT"); err != nil {
		return false, fmt.Errorf("commit: %w", err)
	}
	return true, nil
}

// reset brings the connection back to autocommit mode after a failed
// batch and reports whether it did. On some errors (SQLITE_FULL, IOERR)
// SQLite has already rolled the transaction back, so the ROLLBACK may fail
// with nothing to roll back; whether a transaction is still open is then
// probed with BEGIN, which fails inside one.
func (w *writeConn) reset() bool {
	_, _ = w.exec("ROLLBACK") // its error is moot: the probe below decides
	if _, err := w.exec("BEGIN"); err != nil {
		return false
	}
	_, err := w.exec("ROLLBACK")
	return err == nil
}

// release gives the connection back. With discard, the connection is
// closed instead of being pooled, which also ends any transaction SQLite
// left open after a failure; the next batch opens a fresh connection.
func (w *writeConn) release(discard bool) {
	// Errors closing statements and the connection are not reported: the
	// connection is being thrown away or returned to a pool that Close is
	// about to close, and nothing a caller could do depends on them.
	for _, st := range w.stmts {
		_ = st.Close()
	}
	if discard {
		_ = w.conn.Raw(func(any) error { return driver.ErrBadConn })
	}
	_ = w.conn.Close()
}
