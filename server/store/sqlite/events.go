package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"strings"

	"github.com/hookrelay/hookrelay/server/store"
)

// eventColumns are the columns scanEvent reads, from eventTables; the body
// is appended when wanted (it is the table's last column, see the
// migrations). An event without a delivery has no event_status row, one
// that is no edited replay no event_origins row.
const eventColumns = `e.seq, e.id, e.channel_id, e.method, e.path, e.raw_query, e.remote_addr,
	e.received_at, e.state, e.reject_reason, coalesce(st.last_status, 0), coalesce(st.attempts, 0),
	coalesce(st.delivered_any, 0), e.headers, e.size, coalesce(o.replay_of, '')`

const eventTables = `events AS e LEFT JOIN event_status AS st ON st.seq = e.seq
	LEFT JOIN event_origins AS o ON o.event_seq = e.seq`

const insertEvent = `INSERT INTO events (seq, id, channel_id, method, path, raw_query, remote_addr,
	received_at, state, reject_reason, size, headers, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

// trimRejected drops the oldest rejected events of channel ?1 until at most
// ?3 are left with at most ?4 body bytes in all, keeping seq ?2 (the one
// just appended) whatever its size. The partial index events_rejected
// answers it; the literal state lets the planner use it.
const trimRejected = `DELETE FROM events WHERE seq IN (
	SELECT seq FROM (
		SELECT seq, row_number() OVER newest AS n, sum(size) OVER newest AS bytes
		FROM events WHERE channel_id = ?1 AND state = 'rejected'
		WINDOW newest AS (ORDER BY seq DESC)
	) WHERE seq <> ?2 AND (n > ?3 OR bytes > ?4))`

// StartAppend hands the event to the writer and returns once the writer
// has taken it and assigned e.Seq, as store.Store documents.
func (s *Store) StartAppend(ctx context.Context, e *store.Event) (*store.Commit, error) {
	headers := store.AppendHeaders(make([]byte, 0, 256), e.Headers)
	receivedAt := nowOr(e.ReceivedAt)
	state := e.State
	if state == "" {
		state = store.EventAccepted
	}
	body := e.Body
	if body == nil {
		body = []byte{} // NOT NULL; an empty body is an empty blob
	}
	maxRejected, maxRejectedBytes := capOrMax(int64(s.opts.Limits.RejectedEvents)), capOrMax(s.opts.Limits.RejectedBytes)
	commit, settle := store.NewCommit()
	op := "append event " + e.ID
	ev := *e // the fields the job reads, so the caller's later writes to e race with nothing
	j := &job{size: len(body), taken: make(chan struct{})}
	j.fn = func(w *writeConn) error {
		_, err := w.exec(insertEvent, j.seq, ev.ID, ev.ChannelID, ev.Method, ev.Path, []byte(ev.RawQuery),
			ev.RemoteAddr, micros(receivedAt), string(state), ev.RejectReason, len(body), headers, body)
		if err != nil {
			return constraintErr(err, "event id taken", "channel "+ev.ChannelID)
		}
		if state == store.EventRejected {
			_, err = w.exec(trimRejected, ev.ChannelID, j.seq, maxRejected, maxRejectedBytes)
		}
		if err == nil && ev.ReplayOf != "" {
			_, err = w.exec(`INSERT INTO event_origins (event_seq, replay_of) VALUES (?, ?)`, j.seq, ev.ReplayOf)
		}
		return err
	}
	j.finish = func(err error) { settle(wrapErr(op, err)) }
	if err := s.submit(ctx, j); err != nil {
		return nil, wrapErr(op, err)
	}
	<-j.taken
	e.Seq, e.ReceivedAt, e.State, e.Size = j.seq, receivedAt, state, len(body)
	return commit, nil
}

// AppendEvent appends the event and waits for its commit.
func (s *Store) AppendEvent(ctx context.Context, e *store.Event) error {
	return store.AppendAndWait(ctx, e, s.StartAppend)
}

// capOrMax is a cap for SQL: a negative one (no cap) is the largest value.
func capOrMax(n int64) int64 {
	if n < 0 {
		return math.MaxInt64
	}
	return n
}

// GetEvent returns the event with that id, with its body.
func (s *Store) GetEvent(ctx context.Context, id string) (store.Event, error) {
	if err := s.readable(); err != nil {
		return store.Event{}, err
	}
	row := s.rdb.QueryRowContext(ctx, `SELECT `+eventColumns+`, e.body FROM `+eventTables+` WHERE e.id = ?`, id)
	e, err := scanEvent(row, true)
	return e, wrapErr("get event "+id, notFound(err, "event"))
}

// ListEvents returns the events q selects, newest first.
func (s *Store) ListEvents(ctx context.Context, q store.EventQuery) ([]store.Event, error) {
	if err := s.readable(); err != nil {
		return nil, err
	}
	var (
		where []string
		args  []any
	)
	add := func(cond string, a ...any) {
		where = append(where, cond)
		args = append(args, a...)
	}
	if q.ChannelID != "" {
		add("e.channel_id = ?", q.ChannelID)
	}
	if q.BeforeSeq > 0 {
		add("e.seq < ?", q.BeforeSeq)
	}
	if q.AfterSeq > 0 {
		add("e.seq > ?", q.AfterSeq)
	}
	if q.Method != "" {
		add("e.method = ?", q.Method)
	}
	if q.Status != 0 {
		add("coalesce(st.last_status, 0) = ?", q.Status)
	}
	if !q.Since.IsZero() {
		add("e.received_at >= ?", micros(q.Since))
	}
	if !q.Until.IsZero() {
		add("e.received_at < ?", micros(q.Until))
	}
	if q.Text != "" {
		// lower() folds ASCII letters only, as store.LowerASCII does.
		text := store.LowerASCII(q.Text)
		add(`(instr(lower(CAST(e.body AS TEXT)), ?) > 0 OR hookrelay_headers_contain(e.headers, ?))`, text, text)
	}
	limit := q.Limit
	if limit <= 0 {
		limit = 50
	}
	cols := eventColumns
	if q.WithBody {
		cols += ", e.body"
	}
	query := `SELECT ` + cols + ` FROM ` + eventTables
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, " AND ")
	}
	query += ` ORDER BY e.seq DESC LIMIT ?`
	args = append(args, limit)
	rows, err := s.rdb.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, wrapErr("list events", err)
	}
	es, err := scanEvents(rows, q.WithBody)
	return es, wrapErr("list events", err)
}

// MaxSeq is the highest seq assigned (0 when none), as store.Store
// documents. After a restart that did not close the store, it includes the
// seqs reserved ahead and skipped (see writer.go).
func (s *Store) MaxSeq(context.Context) (int64, error) {
	if err := s.readable(); err != nil {
		return 0, err
	}
	return s.lastSeq.Load(), nil
}

// scanEvents reads every row of rows (eventColumns, then the body when
// withBody) and closes it.
func scanEvents(rows *sql.Rows, withBody bool) ([]store.Event, error) {
	defer rows.Close()
	var es []store.Event
	for rows.Next() {
		e, err := scanEvent(rows, withBody)
		if err != nil {
			return nil, err
		}
		es = append(es, e)
	}
	return es, rows.Err()
}

// scanEvent reads eventColumns and, when withBody, a body column that is
// NULL when the body was not loaded.
func scanEvent(r scanner, withBody bool) (store.Event, error) {
	var (
		e          store.Event
		rawQuery   []byte
		receivedAt int64
		state      string
		headers    []byte
	)
	dest := []any{&e.Seq, &e.ID, &e.ChannelID, &e.Method, &e.Path, &rawQuery, &e.RemoteAddr,
		&receivedAt, &state, &e.RejectReason, &e.LastStatus, &e.Attempts, &e.DeliveredAny, &headers, &e.Size, &e.ReplayOf}
	if withBody {
		dest = append(dest, &e.Body)
	}
	if err := r.Scan(dest...); err != nil {
		return store.Event{}, err
	}
	e.RawQuery = string(rawQuery)
	e.ReceivedAt = fromMicros(receivedAt)
	e.State = store.EventState(state)
	if withBody && e.Body == nil && e.Size == 0 {
		e.Body = []byte{} // loaded but empty: nil means "not loaded"
	}
	var err error
	if e.Headers, err = store.ParseHeaders(headers); err != nil {
		return store.Event{}, fmt.Errorf("event %s: %w", e.ID, err)
	}
	return e, nil
}
