package postgres

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"time"

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
// one INSERT of every event (their fields as arrays), the trims of
// rejected events, a Flush, a Sync. The statements before the Sync run as
// one implicit transaction, committed at the Sync, so a batch costs one
// round trip and one commit (one WAL flush) however many events it holds,
// and one statement to plan and run: on a small machine PostgreSQL spends
// about half the CPU per event that a statement per event costs. While a
// batch commits, the next one queues up by itself.
//
// Seqs come from the event_seq sequence, taken by the INSERT (one per event,
// in the order the writer took them) after the transaction took the seq
// lock of every channel in the batch: a transaction-scoped advisory lock,
// keyed by the store's schema and a hash of the channel id, taken in one
// statement in key order, so two batches never wait on each other in a
// cycle. The lock is held until the commit, so per channel, across every
// relay node on the database, seqs are taken and committed in one order: an
// append of channel C takes its seq only after every earlier append of C
// committed or rolled back, and PostgreSQL releases a transaction's locks
// only after its commit is visible. A reader that sees seq N of C therefore
// sees every lower seq of C that was committed, and none appears later: the
// visibility rule of store.Store. Batches of channels with different locks
// commit in parallel: on different nodes, and on one node when their
// channels go to different writers.
//
// The Flush before the Sync makes PostgreSQL send the INSERT's result (the
// seqs) as soon as it ran, before the commit's WAL flush: the writer hands
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
	ev       store.Event // the caller's event with its defaults set; read only
	body     []byte
	lockKey  int32 // the channel's key in the store's seq lock space
	rejected bool

	seq     int64
	taken   chan struct{}
	isTaken bool  // taken is closed; owned by the writer
	err     error // the event's own failure (not found, conflict)
	settle  func(error)
}

// take records the job's seq and tells its caller.
func (j *appendJob) take(seq int64) {
	if !j.isTaken {
		j.seq, j.isTaken = seq, true
		close(j.taken)
	}
}

// finish settles the job's Commit, with batchErr when the batch failed,
// else with the job's own outcome, and releases a caller still waiting for
// its seq. The writer calls it once per job.
func (j *appendJob) finish(batchErr error) {
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
	stmtSeqLocks = "hookrelay_seq_locks"
	stmtInsert   = "hookrelay_insert_events"
	stmtTrim     = "hookrelay_trim_rejected"
)

// seqLocks takes the seq locks of channel keys $2 (sorted) in the store's
// lock space $1, in the array's order, until the transaction ends.
const seqLocks = `SELECT count(pg_advisory_xact_lock($1::int4, k)) FROM unnest($2::int4[]) AS k`

// insertEvents takes a seq for each event of a batch, in order, and inserts
// those whose channel exists and whose id is free, reporting for each
// (seq, channel found, inserted) in order. The events come as one array a
// field; header names and values of all events as two flat arrays, event
// i's being elements header_start+1 to header_end. FOR KEY SHARE makes a
// channel deleted meanwhile count as missing instead of failing the batch
// on the foreign key, and keeps it until the commit. Of two events of the
// batch with one id, the first is inserted.
const insertEvents = `WITH b AS (
	SELECT b.*, nextval('event_seq') AS seq
	FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::bytea[], $6::text[],
		$7::timestamptz[], $8::text[], $9::text[], $10::int4[], $11::int4[], $12::int4[], $13::bytea[],
		$16::text[])
		WITH ORDINALITY AS b (id, channel_id, method, path, raw_query, remote_addr, received_at,
			state, reject_reason, header_start, header_end, body_size, body, replay_of, n)
),
ch AS (SELECT id FROM channels WHERE id IN (SELECT channel_id FROM b) FOR KEY SHARE),
ins AS (
	INSERT INTO events (seq, id, channel_id, method, path, raw_query, remote_addr, received_at,
		state, reject_reason, header_names, header_values, replay_of, body_size, body)
	SELECT b.seq, b.id, b.channel_id, b.method, b.path, b.raw_query, b.remote_addr, b.received_at,
		b.state, b.reject_reason, coalesce(($14::bytea[])[b.header_start + 1 : b.header_end], '{}'),
		coalesce(($15::bytea[])[b.header_start + 1 : b.header_end], '{}'), b.replay_of, b.body_size, b.body
	FROM b JOIN ch ON ch.id = b.channel_id
	ORDER BY b.n
	ON CONFLICT (id) DO NOTHING
	RETURNING seq
)
SELECT b.seq, b.channel_id IN (SELECT id FROM ch), b.seq IN (SELECT seq FROM ins) FROM b ORDER BY b.n`

// trimRejected drops the oldest rejected events of channel $1 until at most
// $2 are left with at most $3 body bytes in all, keeping the newest (just
// appended) whatever its size. It runs under the channel's seq lock, after
// the batch's INSERT: once for the batch leaves what trimming after each of
// its rejected events would, since a trim only ever drops the oldest.
const trimRejected = `DELETE FROM events WHERE seq IN (
	SELECT seq FROM (
		SELECT seq, row_number() OVER newest AS n, sum(body_size) OVER newest AS bytes
		FROM events WHERE channel_id = $1 AND state = 'rejected'
		WINDOW newest AS (ORDER BY seq DESC)
	) AS r WHERE n > 1 AND (n > $2 OR bytes > $3))`

// batchArgs are the arrays of insertEvents, kept by a writer from one batch
// to the next.
type batchArgs struct {
	ids, channels, methods, remotes, states, reasons, replayOf []string
	paths, queries, bodies, names, values                      [][]byte
	receivedAt                                                 []time.Time
	headerStart, headerEnd, sizes                              []int32
}

// fill sets the arrays from batch.
func (a *batchArgs) fill(batch []*appendJob) {
	*a = batchArgs{
		ids: a.ids[:0], channels: a.channels[:0], methods: a.methods[:0], remotes: a.remotes[:0],
		states: a.states[:0], reasons: a.reasons[:0], replayOf: a.replayOf[:0], paths: a.paths[:0], queries: a.queries[:0],
		bodies: a.bodies[:0], names: a.names[:0], values: a.values[:0], receivedAt: a.receivedAt[:0],
		headerStart: a.headerStart[:0], headerEnd: a.headerEnd[:0], sizes: a.sizes[:0],
	}
	for _, j := range batch {
		e := &j.ev
		a.ids = append(a.ids, e.ID)
		a.channels = append(a.channels, e.ChannelID)
		a.methods = append(a.methods, e.Method)
		a.paths = append(a.paths, []byte(e.Path))
		a.queries = append(a.queries, []byte(e.RawQuery))
		a.remotes = append(a.remotes, e.RemoteAddr)
		a.receivedAt = append(a.receivedAt, e.ReceivedAt)
		a.states = append(a.states, string(e.State))
		a.reasons = append(a.reasons, e.RejectReason)
		a.replayOf = append(a.replayOf, e.ReplayOf)
		a.headerStart = append(a.headerStart, int32(len(a.names)))
		for _, h := range e.Headers {
			a.names = append(a.names, []byte(h.Name))
			a.values = append(a.values, []byte(h.Value))
		}
		a.headerEnd = append(a.headerEnd, int32(len(a.names)))
		a.sizes = append(a.sizes, int32(len(j.body)))
		a.bodies = append(a.bodies, j.body)
	}
}

// clear drops the references to the batch's bytes.
func (a *batchArgs) clear() {
	clear(a.paths)
	clear(a.queries)
	clear(a.bodies)
	clear(a.names)
	clear(a.values)
}

// writer is one writer goroutine's state.
type writer struct {
	jobs     chan *appendJob // unbuffered: a job sent is a job the writer owns
	batch    []*appendJob
	keys     []int32  // the batch's lock keys, sorted
	rejected []string // channels with rejected events in the batch
	args     batchArgs
	eqb      pgx.ExtendedQueryBuilder
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
		began := time.Now()
		err := s.appendBatch(w)
		if f := s.onCommit.Load(); f != nil {
			(*f)(store.BatchCommit{Events: len(w.batch), Duration: time.Since(began), Err: err})
		}
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
	for i, q := range [...][2]string{{stmtSeqLocks, seqLocks}, {stmtInsert, insertEvents}, {stmtTrim, trimRejected}} {
		if sd[i], err = c.Prepare(ctx, q[0], q[1]); err != nil {
			return fmt.Errorf("prepare %s: %w", q[0], err)
		}
	}
	lockSD, insertSD, trimSD := sd[0], sd[1], sd[2]

	w.keys, w.rejected = w.keys[:0], w.rejected[:0]
	for _, j := range w.batch {
		w.keys = append(w.keys, j.lockKey)
		if j.rejected {
			w.rejected = append(w.rejected, j.ev.ChannelID)
		}
	}
	slices.Sort(w.keys)
	w.keys = slices.Compact(w.keys)
	slices.Sort(w.rejected)
	w.rejected = slices.Compact(w.rejected)
	w.args.fill(w.batch)
	defer w.args.clear()

	p := c.PgConn().StartPipeline(ctx)
	send := func(sd *pgconn.StatementDescription, args ...any) error {
		if err := w.eqb.Build(c.TypeMap(), sd, args); err != nil {
			return err
		}
		p.SendQueryStatement(sd, w.eqb.ParamValues, w.eqb.ParamFormats, w.eqb.ResultFormats)
		return nil
	}
	err = func() error {
		if err := send(lockSD, s.lockSpace, w.keys); err != nil {
			return err
		}
		a := &w.args
		if err := send(insertSD, a.ids, a.channels, a.methods, a.paths, a.queries, a.remotes, a.receivedAt,
			a.states, a.reasons, a.headerStart, a.headerEnd, a.sizes, a.bodies, a.names, a.values,
			a.replayOf); err != nil {
			return err
		}
		for _, channelID := range w.rejected {
			if err := send(trimSD, channelID, s.maxRejected, s.maxRejectedBytes); err != nil {
				return err
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
	if err := s.readBatch(p, c, w.batch, len(w.rejected)); err != nil {
		return errors.Join(err, p.Close())
	}
	return p.Close()
}

// readBatch reads the results of the pipeline appendBatch sent: the locks,
// the INSERT (taking each event's seq at once), the trims, and the Sync,
// whose arrival means the transaction committed.
func (s *Store) readBatch(p *pgconn.Pipeline, c *pgx.Conn, batch []*appendJob, trims int) error {
	if err := discardResult(p); err != nil {
		return fmt.Errorf("take the seq locks: %w", err)
	}
	res, err := p.GetResults()
	if err != nil {
		return err
	}
	rr, ok := res.(*pgconn.ResultReader)
	if !ok {
		return fmt.Errorf("insert events: got %T, want a statement's result", res)
	}
	m := c.TypeMap()
	fields := rr.FieldDescriptions()
	i := 0
	for ; rr.NextRow(); i++ {
		var (
			seq             int64
			found, inserted bool
		)
		values := rr.Values()
		if len(fields) != 3 || i >= len(batch) {
			break
		}
		for k, dest := range []any{&seq, &found, &inserted} {
			if err := m.Scan(fields[k].DataTypeOID, fields[k].Format, values[k], dest); err != nil {
				_, cerr := rr.Close()
				return errors.Join(fmt.Errorf("insert events: column %s: %w", fields[k].Name, err), cerr)
			}
		}
		j := batch[i]
		switch {
		case !found:
			j.err = fmt.Errorf("channel %s: %w", j.ev.ChannelID, store.ErrNotFound)
		case !inserted:
			j.err = fmt.Errorf("event id taken: %w", store.ErrConflict)
		}
		j.take(seq)
	}
	if _, err := rr.Close(); err != nil {
		return err
	}
	if i != len(batch) || len(fields) != 3 {
		return fmt.Errorf("insert events: %d rows of %d columns for %d events", i, len(fields), len(batch))
	}
	for range trims {
		if err := discardResult(p); err != nil {
			return fmt.Errorf("trim rejected events: %w", err)
		}
	}
	res, err = p.GetResults()
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
	j.lockKey = channelKey(e.ChannelID)
	commit, settle := store.NewCommit()
	j.settle = func(err error) {
		if err != nil {
			err = fmt.Errorf("%s: %w", op, err)
		}
		settle(err)
		s.appending.CompareAndDelete(j.ev.ID, commit)
	}
	// Known before anyone can deliver the event, that is, before this
	// returns: RecordProgress waits for it.
	s.appending.Store(j.ev.ID, commit)
	w := s.writersByKey[uint32(j.lockKey)%uint32(len(s.writersByKey))]
	select {
	case w.jobs <- j:
	case <-s.quit:
		s.appending.CompareAndDelete(j.ev.ID, commit)
		return nil, fmt.Errorf("%s: %w", op, errClosed)
	case <-ctx.Done():
		s.appending.CompareAndDelete(j.ev.ID, commit)
		return nil, fmt.Errorf("%s: %w", op, ctx.Err())
	}
	<-j.taken
	if j.seq == 0 {
		return nil, commit.Err() // settled before taken was closed
	}
	e.Seq, e.ReceivedAt, e.State, e.Size = j.seq, j.ev.ReceivedAt, j.ev.State, len(j.body)
	return commit, nil
}

// ObserveCommits sets the function told of every append batch
// (store.CommitObserver).
func (s *Store) ObserveCommits(f func(store.BatchCommit)) {
	if f == nil {
		s.onCommit.Store(nil)
		return
	}
	s.onCommit.Store(&f)
}

// AppendEvent appends the event and waits for its commit.
func (s *Store) AppendEvent(ctx context.Context, e *store.Event) error {
	return store.AppendAndWait(ctx, e, s.StartAppend)
}
