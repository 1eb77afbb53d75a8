package postgres

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/hookrelay/hookrelay/server/store"
)

// Appends: group commit, seqs, and the order of visibility.
//
// StartAppend hands its event to one of Options.Writers writer goroutines,
// the one its channel hashes to, over an unbuffered channel. A writer takes
// the first event, then every event whose sender is already waiting (up to
// Options.MaxBatch events or maxBatchBytes of bodies), and sends them to
// PostgreSQL in one pipeline on one connection: the channels' seq locks,
// one INSERT per event, a Flush, a Sync. The statements before the Sync
// run as one implicit transaction, committed at the Sync, so a batch costs
// one round trip and one commit (one WAL flush) however many events it
// holds. While a batch commits, the next one queues up by itself.
//
// Seqs come from the event_seq sequence, taken by each INSERT after the
// transaction took the advisory lock of every channel in the batch (a
// transaction-scoped lock, keyed by the store's schema and a hash of the
// channel id, taken in key order so two batches never wait on each other in
// a cycle). The lock is held until the commit, so per channel, across every
// relay node on the database, seqs are taken and committed in one order: an
// append of channel C takes its seq only after every earlier append of C
// committed or rolled back, and PostgreSQL releases a transaction's locks
// only after its commit is visible. A reader that sees seq N of C therefore
// sees every lower seq of C that was committed, and none appears later: the
// visibility rule of store.Store. Channels that hash to different locks
// commit in parallel, on different nodes, and on one node when they go to
// different writers.
//
// The Flush before the Sync makes PostgreSQL send each INSERT's result (its
// seq) as soon as it ran, before the commit's WAL flush: the writer hands
// every caller its seq then (StartAppend returns), and settles their
// Commits when the Sync's result (the commit's) arrives.
//
// An event that fails on its own (a missing channel, a taken id) does not
// abort the batch: the INSERT is written to skip it and say why in its
// result row, after taking its seq. Any error of the batch itself (a lost
// connection, a timeout, a failed commit) fails every event of the batch:
// none of them was committed. An event whose seq was not taken yet when the
// batch failed makes StartAppend fail, with store.ErrUnavailable. (One case
// no client of a database server can settle: when the connection is lost
// while the commit itself runs, PostgreSQL may have committed. The events
// then fail with store.ErrUnavailable though they are stored; the relay
// answers 503, the sender retries, and at-least-once delivery makes it a
// duplicate, never a loss.)

// maxBatchBytes bounds the bodies of one batch.
const maxBatchBytes = 64 << 20

// appendJob is one event handed to a writer. The writer sets seq (or
// leaves it 0 when the batch failed before taking it), closes taken, and
// later calls settle with the commit's outcome for this event.
type appendJob struct {
	ev            store.Event // the caller's event with its defaults set; read only
	names, values [][]byte
	body          []byte
	lockKey       int32 // the channel's key in the store's seq lock space
	rejected      bool

	seq      int64
	taken    chan struct{}
	isTaken  bool  // taken is closed; owned by the writer
	err      error // the event's own failure (not found, conflict)
	settle   func(error)
	finished bool // settle was called; owned by the writer
}

// take records the job's seq and tells its caller.
func (j *appendJob) take(seq int64) {
	if !j.isTaken {
		j.seq, j.isTaken = seq, true
		close(j.taken)
	}
}

// finish settles the job's Commit with err (its own error first) and
// releases a caller still waiting for its seq.
func (j *appendJob) finish(batchErr error) {
	if j.finished {
		return
	}
	j.finished = true
	err := j.err
	if batchErr != nil {
		err = batchErr
	}
	j.settle(err)
	j.take(0) // after settle: StartAppend reads the outcome when seq is 0
}

// channelKey is the second half of a channel's seq lock key (the first is
// Store.lockSpace); it also picks the channel's writer.
func channelKey(channelID string) int32 {
	h := fnv.New32a()
	h.Write([]byte(channelID))
	return int32(h.Sum32())
}

// The statements of an append batch, prepared once per connection.
const (
	stmtSeqLock = "hookrelay_seq_lock"
	stmtInsert  = "hookrelay_insert_event"
	stmtTrim    = "hookrelay_trim_rejected"
)

// seqLock takes a channel's seq lock until the transaction ends.
const seqLock = `SELECT pg_advisory_xact_lock($1::int4, $2::int4)`

// insertEvent takes a seq and inserts one event unless its channel is
// missing or its id is taken, reporting (seq, channel found, inserted).
// FOR KEY SHARE makes a channel deleted meanwhile count as missing instead
// of failing the batch on the foreign key, and keeps it until the commit.
const insertEvent = `WITH seq AS (SELECT nextval('event_seq') AS seq),
ch AS (SELECT id FROM channels WHERE id = $2 FOR KEY SHARE),
ins AS (
	INSERT INTO events (seq, id, channel_id, method, path, raw_query, remote_addr, received_at,
		state, reject_reason, header_names, header_values, body_size, body)
	SELECT seq.seq, $1, ch.id, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13 FROM seq, ch
	ON CONFLICT (id) DO NOTHING
	RETURNING 1
)
SELECT seq, EXISTS (SELECT FROM ch), EXISTS (SELECT FROM ins) FROM seq`

// trimRejected drops the oldest rejected events of channel $1 until at most
// $2 are left with at most $3 body bytes in all, keeping the event just
// inserted (this session's last seq) whatever its size. It runs under the
// channel's seq lock, so appends of the channel trim one after the other.
const trimRejected = `DELETE FROM events WHERE seq IN (
	SELECT seq FROM (
		SELECT seq, row_number() OVER newest AS n, sum(body_size) OVER newest AS bytes
		FROM events WHERE channel_id = $1 AND state = 'rejected'
		WINDOW newest AS (ORDER BY seq DESC)
	) AS r WHERE seq <> currval('event_seq') AND (n > $2 OR bytes > $3))`

// writer is one writer goroutine's state.
type writer struct {
	jobs  chan *appendJob // unbuffered: a job sent is a job the writer owns
	batch []*appendJob
	keys  []int32
	eqb   pgx.ExtendedQueryBuilder
}

// runWriter is one writer goroutine, started by Open and ended by Close.
func (s *Store) runWriter(w *writer) {
	defer s.writers.Done()
	for {
		w.batch = w.batch[:0]
		select {
		case j := <-w.jobs:
			w.batch = append(w.batch, j)
		case <-s.quit:
			return
		}
		size := len(w.batch[0].body)
	fill:
		for len(w.batch) < s.opts.MaxBatch && size < maxBatchBytes {
			select {
			case j := <-w.jobs:
				w.batch = append(w.batch, j)
				size += len(j.body)
			default:
				break fill
			}
		}
		err := s.appendBatch(w)
		s.batches.Add(1)
		s.batchedJobs.Add(int64(len(w.batch)))
		for i, j := range w.batch {
			j.finish(err)
			w.batch[i] = nil
		}
	}
}

// appendBatch commits w.batch in one pipelined transaction, taking each
// job's seq as its result arrives. Once taken, a batch runs to its end
// whatever its callers do (bounded by QueryTimeout), so a nil outcome
// always means committed and any other means not committed.
func (s *Store) appendBatch(w *writer) (err error) {
	ctx, cancel := context.WithTimeoutCause(context.Background(), s.opts.QueryTimeout, errQueryTimeout)
	defer cancel()
	defer func() { err = wrapErr(ctx, "commit", err) }()
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	// Release destroys the connection if the pipeline left it busy, broken
	// or inside a transaction.
	defer conn.Release()
	c := conn.Conn()
	var sd [3]*pgconn.StatementDescription
	for i, q := range [...][2]string{{stmtSeqLock, seqLock}, {stmtInsert, insertEvent}, {stmtTrim, trimRejected}} {
		if sd[i], err = c.Prepare(ctx, q[0], q[1]); err != nil {
			return fmt.Errorf("prepare %s: %w", q[0], err)
		}
	}
	lockSD, insertSD, trimSD := sd[0], sd[1], sd[2]

	w.keys = w.keys[:0]
	for _, j := range w.batch {
		w.keys = append(w.keys, j.lockKey)
	}
	slices.Sort(w.keys)
	w.keys = slices.Compact(w.keys)

	p := c.PgConn().StartPipeline(ctx)
	send := func(sd *pgconn.StatementDescription, args ...any) error {
		if err := w.eqb.Build(c.TypeMap(), sd, args); err != nil {
			return err
		}
		p.SendQueryStatement(sd, w.eqb.ParamValues, w.eqb.ParamFormats, w.eqb.ResultFormats)
		return nil
	}
	err = func() error {
		for _, k := range w.keys {
			if err := send(lockSD, s.lockSpace, k); err != nil {
				return err
			}
		}
		for _, j := range w.batch {
			e := &j.ev
			if err := send(insertSD, e.ID, e.ChannelID, e.Method, []byte(e.Path), []byte(e.RawQuery),
				e.RemoteAddr, e.ReceivedAt, string(e.State), e.RejectReason, j.names, j.values,
				len(j.body), j.body); err != nil {
				return err
			}
			if j.rejected {
				if err := send(trimSD, e.ChannelID, s.maxRejected, s.maxRejectedBytes); err != nil {
					return err
				}
			}
		}
		return nil
	}()
	if err != nil {
		// Nothing was sent yet: the queued messages go with the pipeline.
		return errors.Join(fmt.Errorf("encode the batch: %w", err), p.Close())
	}
	p.SendFlushRequest() // the INSERTs' results (the seqs) come before the commit
	p.SendPipelineSync()
	if err := p.Flush(); err != nil {
		return err
	}
	if err := s.readBatch(p, c, len(w.keys), w.batch); err != nil {
		return errors.Join(err, p.Close())
	}
	return p.Close()
}

// readBatch reads the results of the pipeline appendBatch sent: the locks,
// each event's INSERT (taking its seq at once) and trim, and the Sync,
// whose arrival means the transaction committed.
func (s *Store) readBatch(p *pgconn.Pipeline, c *pgx.Conn, locks int, batch []*appendJob) error {
	for range locks {
		if err := discardResult(p); err != nil {
			return fmt.Errorf("take the seq lock: %w", err)
		}
	}
	for _, j := range batch {
		var (
			seq             int64
			found, inserted bool
		)
		if err := scanResult(p, c, &seq, &found, &inserted); err != nil {
			return err
		}
		switch {
		case !found:
			j.err = fmt.Errorf("channel %s: %w", j.ev.ChannelID, store.ErrNotFound)
		case !inserted:
			j.err = fmt.Errorf("event id taken: %w", store.ErrConflict)
		}
		j.take(seq)
		if j.rejected {
			if err := discardResult(p); err != nil {
				return fmt.Errorf("trim rejected events: %w", err)
			}
		}
	}
	res, err := p.GetResults()
	if err != nil {
		return err
	}
	if _, ok := res.(*pgconn.PipelineSync); !ok {
		return fmt.Errorf("commit: got %T, want the end of the pipeline", res)
	}
	return nil
}

// discardResult reads the next result of p and drops its rows.
func discardResult(p *pgconn.Pipeline) error {
	res, err := p.GetResults()
	if err != nil {
		return err
	}
	rr, ok := res.(*pgconn.ResultReader)
	if !ok {
		return fmt.Errorf("got %T, want a statement's result", res)
	}
	_, err = rr.Close()
	return err
}

// scanResult reads the next result of p, which must be one row, into dest.
func scanResult(p *pgconn.Pipeline, c *pgx.Conn, dest ...any) error {
	res, err := p.GetResults()
	if err != nil {
		return err
	}
	rr, ok := res.(*pgconn.ResultReader)
	if !ok {
		return fmt.Errorf("got %T, want a statement's result", res)
	}
	if !rr.NextRow() {
		_, err := rr.Close()
		return errors.Join(errors.New("a statement returned no row"), err)
	}
	fields, values := rr.FieldDescriptions(), rr.Values()
	if len(fields) != len(dest) {
		_, err := rr.Close()
		return errors.Join(fmt.Errorf("a statement returned %d columns, want %d", len(fields), len(dest)), err)
	}
	for i := range dest {
		if err := c.TypeMap().Scan(fields[i].DataTypeOID, fields[i].Format, values[i], dest[i]); err != nil {
			_, cerr := rr.Close()
			return errors.Join(fmt.Errorf("column %s: %w", fields[i].Name, err), cerr)
		}
	}
	_, err = rr.Close()
	return err
}

// StartAppend hands the event to its channel's writer and returns once the
// writer has taken its seq from the database, as store.Store documents.
// Besides a closed store and ctx, it fails (store.ErrUnavailable) when the
// batch failed before the event's seq was taken: the database could not be
// reached or did not answer.
func (s *Store) StartAppend(ctx context.Context, e *store.Event) (*store.Commit, error) {
	op := "append event " + e.ID
	if s.closed.Load() {
		return nil, fmt.Errorf("%s: %w", op, errClosed)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	j := &appendJob{ev: *e, body: e.Body, taken: make(chan struct{})}
	j.ev.ReceivedAt = nowOr(e.ReceivedAt)
	if j.ev.State == "" {
		j.ev.State = store.EventAccepted
	}
	j.rejected = j.ev.State == store.EventRejected
	if j.body == nil {
		j.body = []byte{} // NOT NULL; an empty body is an empty bytea
	}
	j.names, j.values = splitHeaders(e.Headers)
	j.lockKey = channelKey(e.ChannelID)
	commit, settle := store.NewCommit()
	j.settle = func(err error) {
		if err != nil {
			err = fmt.Errorf("%s: %w", op, err)
		}
		settle(err)
	}
	w := s.writersByKey[uint32(j.lockKey)%uint32(len(s.writersByKey))]
	select {
	case w.jobs <- j:
	case <-s.quit:
		return nil, fmt.Errorf("%s: %w", op, errClosed)
	case <-ctx.Done():
		return nil, fmt.Errorf("%s: %w", op, ctx.Err())
	}
	<-j.taken
	if j.seq == 0 {
		return nil, commit.Err() // settled before taken was closed
	}
	e.Seq, e.ReceivedAt, e.State, e.Size = j.seq, j.ev.ReceivedAt, j.ev.State, len(j.body)
	return commit, nil
}

// AppendEvent appends the event and waits for its commit.
func (s *Store) AppendEvent(ctx context.Context, e *store.Event) error {
	before := *e
	commit, err := s.StartAppend(ctx, e)
	if err == nil {
		<-commit.Done() // taken: it runs to its end whatever ctx does
		err = commit.Err()
	}
	if err != nil {
		*e = before
	}
	return err
}
