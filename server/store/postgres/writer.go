package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/hookrelay/hookrelay/server/store"
)

// Group commit of appends.
//
// AppendEvent hands its event to a writer goroutine (Options.Writers of
// them) over an unbuffered channel. A writer takes the first event, then every
// event whose sender is already waiting (up to Options.MaxBatch events or
// maxBatchBytes of bodies), and sends them all to PostgreSQL in one
// pipeline: the seq lock, one INSERT per event, one Sync. The pipeline runs
// as one implicit transaction, so the batch costs one round trip and one
// commit (one WAL flush) however many events it holds. While a batch
// commits, the next one queues up by itself.
//
// An event that fails on its own (a duplicate id, a missing channel) does
// not abort the batch: the INSERT is written to skip it and report why in
// its result row. Any error of the batch itself (a lost connection, a
// timeout, a failed commit) fails every event of the batch: none of them
// was committed.
//
// Seqs come from the event_seq sequence, taken while the transaction holds
// the seq lock (an advisory lock held until the commit), so seqs become
// visible in the order they were taken: a reader that sees seq N sees
// every seq below N that was committed. The lock is one for the whole
// store, because store.Store promises seqs in commit order across the
// store (MaxSeq); a lock per channel would let channels commit in parallel
// where only the order within a channel is needed.

// maxBatchBytes bounds the bodies of one batch.
const maxBatchBytes = 64 << 20

// appendJob is one event handed to a writer. The writer sets seq and err
// and then closes done.
type appendJob struct {
	e      *store.Event // already defaulted by AppendEvent; read only
	names  []string
	values [][]byte
	body   []byte
	seq    int64
	err    error
	done   chan struct{}
}

// insertEvent inserts one event unless its channel is missing or its id
// is taken, reporting which: (channel found, seq or NULL). FOR KEY SHARE
// makes a channel deleted meanwhile count as missing instead of failing
// the batch on the foreign key.
const insertEvent = `WITH ch AS (SELECT id FROM channels WHERE id = $2 FOR KEY SHARE),
ins AS (
	INSERT INTO events (id, channel_id, method, path, raw_query, remote_addr, received_at,
		state, reject_reason, header_names, header_values, body_size, body)
	SELECT $1, ch.id, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13 FROM ch
	ON CONFLICT (id) DO NOTHING
	RETURNING seq
)
SELECT EXISTS (SELECT 1 FROM ch), (SELECT seq FROM ins)`

// seqLock takes the seq lock: see the comment at the top of this file.
const seqLock = `SELECT pg_advisory_xact_lock($1, 0)`

// runWriter is one writer goroutine, started by Open and ended by Close.
func (s *Store) runWriter() {
	defer s.writers.Done()
	batch := make([]*appendJob, 0, s.opts.MaxBatch)
	for {
		batch = batch[:0]
		select {
		case j := <-s.appends:
			batch = append(batch, j)
		case <-s.quit:
			return
		}
		size := len(batch[0].body)
	fill:
		for len(batch) < s.opts.MaxBatch && size < maxBatchBytes {
			select {
			case j := <-s.appends:
				batch = append(batch, j)
				size += len(j.body)
			default:
				break fill
			}
		}
		s.appendBatch(batch)
		s.batches.Add(1)
		s.batchedJobs.Add(int64(len(batch)))
		for _, j := range batch {
			close(j.done)
		}
	}
}

// appendBatch commits the batch in one pipelined transaction and sets each
// job's seq or error. Once taken, a batch runs to its end whatever its
// callers do (bounded by QueryTimeout), so a caller's nil error always
// means committed and any other result means not committed.
func (s *Store) appendBatch(batch []*appendJob) {
	ctx, cancel := context.WithTimeoutCause(context.Background(), s.opts.QueryTimeout, errQueryTimeout)
	defer cancel()
	b := &pgx.Batch{}
	b.Queue(seqLock, s.lockSpace)
	for _, j := range batch {
		e := j.e
		b.Queue(insertEvent, e.ID, e.ChannelID, e.Method, []byte(e.Path), []byte(e.RawQuery),
			e.RemoteAddr, e.ReceivedAt, string(e.State), e.RejectReason, j.names, j.values,
			len(j.body), j.body)
	}
	br := s.pool.SendBatch(ctx, b)
	_, err := br.Exec()
	for _, j := range batch {
		if err != nil {
			break
		}
		var (
			found bool
			seq   *int64
		)
		err = br.QueryRow().Scan(&found, &seq)
		switch {
		case err != nil:
		case !found:
			j.err = fmt.Errorf("channel %s: %w", j.e.ChannelID, store.ErrNotFound)
		case seq == nil:
			j.err = fmt.Errorf("event id taken: %w", store.ErrConflict)
		default:
			j.seq = *seq
		}
	}
	// Close reads the result of the Sync, that is of the commit.
	if err = errors.Join(err, br.Close()); err != nil {
		err = wrapErr(ctx, "commit", err)
		for _, j := range batch {
			j.seq, j.err = 0, err
		}
	}
}

// AppendEvent commits the event in the next group-commit batch and sets
// e.Seq (and e.ReceivedAt when zero, e.State when empty). It fails with
// store.ErrNotFound for an unknown channel and store.ErrConflict for a
// duplicate id.
//
// ctx bounds only the wait for a writer to take the event: once taken, its
// result is awaited, so nil means committed and an error means not.
func (s *Store) AppendEvent(ctx context.Context, e *store.Event) error {
	op := "append event " + e.ID
	if s.closed.Load() {
		return fmt.Errorf("%s: %w", op, errClosed)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	ev := *e
	ev.ReceivedAt = nowOr(e.ReceivedAt)
	if ev.State == "" {
		ev.State = store.EventAccepted
	}
	j := &appendJob{e: &ev, body: e.Body, done: make(chan struct{})}
	if j.body == nil {
		j.body = []byte{} // NOT NULL; an empty body is an empty bytea
	}
	j.names, j.values = splitHeaders(e.Headers)
	select {
	case s.appends <- j:
	case <-s.quit:
		return fmt.Errorf("%s: %w", op, errClosed)
	case <-ctx.Done():
		return fmt.Errorf("%s: %w", op, ctx.Err())
	}
	<-j.done
	if j.err != nil {
		return fmt.Errorf("%s: %w", op, j.err)
	}
	e.Seq, e.ReceivedAt, e.State, e.Size = j.seq, ev.ReceivedAt, ev.State, len(j.body)
	return nil
}
