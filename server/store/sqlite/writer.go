package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
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
// Seqs are assigned by INTEGER PRIMARY KEY AUTOINCREMENT inside the single
// writer's transactions, so they grow in commit order: a reader that sees
// seq N sees every seq below N.

// maxBatchBytes bounds the payload (event and response bodies) of one batch.
const maxBatchBytes = 64 << 20

// job is one write. The writer sends exactly one result on done (buffered,
// so the writer never waits for the caller).
type job struct {
	size int // payload bytes, for maxBatchBytes
	fn   func(w *writeConn) error
	done chan error
}

// writeConn is the writer's connection with its prepared statements. Only
// the writer goroutine (or migrate, before it starts) uses it.
type writeConn struct {
	conn  *sql.Conn
	stmts map[string]*sql.Stmt
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
	if s.closed.Load() {
		return errClosed
	}
	if err := ctx.Err(); err != nil {
		return err // select below would pick a ready writer at random
	}
	j := &job{size: size, fn: fn, done: make(chan error, 1)}
	select {
	case s.jobs <- j:
	case <-s.quit:
		return errClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	return <-j.done
}

// runWriter is the writer goroutine, started by Open and ended by Close.
func (s *Store) runWriter() {
	var wc *writeConn // the current connection; nil after a failure
	defer func() {
		if wc != nil {
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
			batch = append(batch, j)
		case <-s.quit:
			return
		}
		size := batch[0].size
	fill:
		for len(batch) < s.opts.MaxBatch && size < maxBatchBytes {
			select {
			case j := <-s.jobs:
				batch = append(batch, j)
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
				wc = &writeConn{conn: c, stmts: make(map[string]*sql.Stmt)}
			}
		}
		if wc != nil {
			if err := runBatch(wc, batch, errs); err != nil {
				fillErr(errs, err)
				if !wc.reset() {
					wc.release(true)
					wc = nil
				}
			}
		}
		s.batches.Add(1)
		s.batchedJobs.Add(int64(len(batch)))
		for i, j := range batch {
			j.done <- errs[i]
		}
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

// runBatch runs the jobs in one transaction, recording each job's own
// error in errs. It returns an error when the transaction failed as a
// whole: then nothing of the batch is committed.
//
// A batch first runs without savepoints, which saves two statements per
// job; only when a job fails is the batch rolled back and run again with a
// savepoint around each job, so the failing job is undone alone. Jobs only
// set their results when they run, so running one twice is harmless.
func runBatch(w *writeConn, batch []*job, errs []error) error {
	if len(batch) > 1 {
		done, err := runPlain(w, batch)
		if err != nil || done {
			return err
		}
	}
	return runWithSavepoints(w, batch, errs)
}

// runPlain runs the batch in one transaction with no savepoints. It
// reports done=false, with the transaction rolled back, when a job failed.
func runPlain(w *writeConn, batch []*job) (done bool, err error) {
	if _, err := w.exec("BEGIN IMMEDIATE"); err != nil {
		return false, fmt.Errorf("begin: %w", err)
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
func runWithSavepoints(w *writeConn, batch []*job, errs []error) error {
	if _, err := w.exec("BEGIN IMMEDIATE"); err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	savepoints := len(batch) > 1
	succeeded := 0
	for i, j := range batch {
		if savepoints {
			if _, err := w.exec("SAVEPOINT job"); err != nil {
				return fmt.Errorf("savepoint: %w", err)
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
				return fmt.Errorf("roll back a failed write (%v): %w", err, rerr)
			}
		}
		if _, err := w.exec("RELEASE job"); err != nil {
			return fmt.Errorf("release savepoint: %w", err)
		}
	}
	if succeeded == 0 {
		if _, err := w.exec("ROLLBACK"); err != nil {
			return fmt.Errorf("rollback: %w", err)
		}
		return nil
	}
	if _, err := w.exec("COMMIT"); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
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
