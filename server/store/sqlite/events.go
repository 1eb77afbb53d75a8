package sqlite

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/hookrelay/hookrelay/server/store"
)

// eventColumns are the columns scanEvent reads; the body is appended when
// wanted (it is the table's last column, see the migration).
const eventColumns = `seq, id, channel_id, method, path, raw_query, remote_addr, received_at,
	state, reject_reason, last_status, attempts, delivered_any, headers, length(body)`

const insertEvent = `INSERT INTO events (id, channel_id, method, path, raw_query, remote_addr,
	received_at, state, reject_reason, headers, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

// AppendEvent commits the event in the next group-commit batch and sets
// e.Seq (and e.ReceivedAt when zero, e.State when empty). It fails with
// store.ErrNotFound for an unknown channel and store.ErrConflict for a
// duplicate id.
func (s *Store) AppendEvent(ctx context.Context, e *store.Event) error {
	headers, err := marshalHeaders(e.Headers)
	if err != nil {
		return fmt.Errorf("append event %s: %w", e.ID, err)
	}
	receivedAt := nowOr(e.ReceivedAt)
	state := e.State
	if state == "" {
		state = store.EventAccepted
	}
	body := e.Body
	if body == nil {
		body = []byte{} // NOT NULL; an empty body is an empty blob
	}
	var seq int64
	err = s.write(ctx, len(body), func(w *writeConn) error {
		res, err := w.exec(insertEvent, e.ID, e.ChannelID, e.Method, e.Path, e.RawQuery,
			e.RemoteAddr, micros(receivedAt), string(state), e.RejectReason, headers, body)
		if err != nil {
			return constraintErr(err, "event id taken", "channel "+e.ChannelID)
		}
		seq, err = res.LastInsertId()
		return err
	})
	if err != nil {
		return wrapErr("append event "+e.ID, err)
	}
	e.Seq, e.ReceivedAt, e.State, e.Size = seq, receivedAt, state, len(body)
	return nil
}

// GetEvent returns the event with that id, with its body.
func (s *Store) GetEvent(ctx context.Context, id string) (store.Event, error) {
	if err := s.readable(); err != nil {
		return store.Event{}, err
	}
	row := s.rdb.QueryRowContext(ctx, `SELECT `+eventColumns+`, body FROM events WHERE id = ?`, id)
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
		add("channel_id = ?", q.ChannelID)
	}
	if q.BeforeSeq > 0 {
		add("seq < ?", q.BeforeSeq)
	}
	if q.AfterSeq > 0 {
		add("seq > ?", q.AfterSeq)
	}
	if q.Method != "" {
		add("method = ?", q.Method)
	}
	if q.Status != 0 {
		add("last_status = ?", q.Status)
	}
	if !q.Since.IsZero() {
		add("received_at >= ?", micros(q.Since))
	}
	if !q.Until.IsZero() {
		add("received_at < ?", micros(q.Until))
	}
	if q.Text != "" {
		// lower() folds ASCII letters only; both sides go through it.
		add(`(instr(lower(CAST(body AS TEXT)), lower(?)) > 0 OR EXISTS (
			SELECT 1 FROM json_each(headers) AS h
			WHERE instr(lower(h.value ->> 'name'), lower(?)) > 0
			   OR instr(lower(h.value ->> 'value'), lower(?)) > 0))`, q.Text, q.Text, q.Text)
	}
	limit := q.Limit
	if limit <= 0 {
		limit = 50
	}
	cols := eventColumns
	if q.WithBody {
		cols += ", body"
	}
	query := `SELECT ` + cols + ` FROM events`
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, " AND ")
	}
	query += ` ORDER BY seq DESC LIMIT ?`
	args = append(args, limit)
	return s.queryEvents(ctx, "list events", q.WithBody, query, args...)
}

// MaxSeq is the highest seq ever assigned (0 when none), even if that
// event was deleted since.
func (s *Store) MaxSeq(ctx context.Context) (int64, error) {
	if err := s.readable(); err != nil {
		return 0, err
	}
	var seq int64
	err := s.rdb.QueryRowContext(ctx, maxSeqQuery).Scan(&seq)
	return seq, wrapErr("max seq", err)
}

// queryEvents runs a query selecting eventColumns (and the body when
// withBody) on the read pool.
func (s *Store) queryEvents(ctx context.Context, op string, withBody bool, query string, args ...any) ([]store.Event, error) {
	rows, err := s.rdb.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, wrapErr(op, err)
	}
	defer rows.Close()
	var es []store.Event
	for rows.Next() {
		e, err := scanEvent(rows, withBody)
		if err != nil {
			return nil, wrapErr(op, err)
		}
		es = append(es, e)
	}
	return es, wrapErr(op, rows.Err())
}

func scanEvent(r scanner, withBody bool) (store.Event, error) {
	var (
		e          store.Event
		receivedAt int64
		state      string
		headers    string
	)
	dest := []any{&e.Seq, &e.ID, &e.ChannelID, &e.Method, &e.Path, &e.RawQuery, &e.RemoteAddr,
		&receivedAt, &state, &e.RejectReason, &e.LastStatus, &e.Attempts, &e.DeliveredAny, &headers, &e.Size}
	if withBody {
		dest = append(dest, &e.Body)
	}
	if err := r.Scan(dest...); err != nil {
		return store.Event{}, err
	}
	e.ReceivedAt = fromMicros(receivedAt)
	e.State = store.EventState(state)
	if withBody && e.Body == nil {
		e.Body = []byte{} // loaded but empty: nil means "not loaded"
	}
	var err error
	if e.Headers, err = unmarshalHeaders(headers); err != nil {
		return store.Event{}, fmt.Errorf("event %s: %w", e.ID, err)
	}
	return e, nil
}

// marshalHeaders encodes headers as a JSON array of {"name","value"},
// keeping order, case and repeats. HTML escaping is off so the stored text
// reads as received ("<" rather than "\u003c") when inspected by hand.
func marshalHeaders(hs []store.Header) (string, error) {
	if len(hs) == 0 {
		return "[]", nil
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(hs); err != nil {
		return "", fmt.Errorf("encode headers: %w", err)
	}
	return strings.TrimSuffix(b.String(), "\n"), nil
}

func unmarshalHeaders(s string) ([]store.Header, error) {
	var hs []store.Header
	if err := json.Unmarshal([]byte(s), &hs); err != nil {
		return nil, fmt.Errorf("decode headers: %w", err)
	}
	if len(hs) == 0 {
		return nil, nil
	}
	return hs, nil
}
