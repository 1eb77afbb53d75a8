package postgres

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hookrelay/hookrelay/server/store"
)

// eventColumns are the columns scanEvent reads (events e, event_status st);
// the body is appended when wanted.
const eventColumns = `e.seq, e.id, e.channel_id, e.method, e.path, e.raw_query, e.remote_addr,
	e.received_at, e.state, e.reject_reason, coalesce(st.last_status, 0), coalesce(st.attempts, 0),
	coalesce(st.delivered_any, false), e.header_names, e.header_values, e.body_size, e.replay_of`

// eventsFrom joins each event to its delivery summary.
const eventsFrom = ` FROM events AS e LEFT JOIN event_status AS st ON st.event_seq = e.seq`

// GetEvent returns the event with that id, with its body.
func (s *Store) GetEvent(ctx context.Context, id string) (store.Event, error) {
	return queryRow(ctx, s, "get event "+id, "event", scanEventWithBody,
		`SELECT `+eventColumns+`, e.body`+eventsFrom+` WHERE e.id = $1`, id)
}

// ListEvents returns the events q selects, newest first.
func (s *Store) ListEvents(ctx context.Context, q store.EventQuery) ([]store.Event, error) {
	var (
		where []string
		args  []any
	)
	add := func(cond string, a any) {
		args = append(args, a)
		where = append(where, strings.ReplaceAll(cond, "$?", "$"+strconv.Itoa(len(args))))
	}
	if q.ChannelID != "" {
		add("e.channel_id = $?", q.ChannelID)
	}
	if q.BeforeSeq > 0 {
		add("e.seq < $?", q.BeforeSeq)
	}
	if q.AfterSeq > 0 {
		add("e.seq > $?", q.AfterSeq)
	}
	if q.Method != "" {
		add("e.method = $?", q.Method)
	}
	if q.Status != 0 {
		add("coalesce(st.last_status, 0) = $?", q.Status)
	}
	if !q.Since.IsZero() {
		add("e.received_at >= $?", q.Since)
	}
	if !q.Until.IsZero() {
		add("e.received_at < $?", q.Until)
	}
	if q.Text != "" {
		add(`(contains_fold(e.body, $?::bytea) OR EXISTS (
			SELECT FROM unnest(e.header_names, e.header_values) AS h (name, value)
			WHERE contains_fold(h.name, $?::bytea) OR contains_fold(h.value, $?::bytea)))`,
			[]byte(q.Text))
	}
	limit := q.Limit
	if limit <= 0 {
		limit = 50
	}
	cols := eventColumns
	if q.WithBody {
		cols += ", e.body"
	}
	query := `SELECT ` + cols + eventsFrom
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, " AND ")
	}
	args = append(args, limit)
	query += ` ORDER BY e.seq DESC LIMIT $` + strconv.Itoa(len(args))
	return s.queryEvents(ctx, "list events", q.WithBody, query, args...)
}

// queryEvents runs a query selecting eventColumns (and the body when
// withBody).
func (s *Store) queryEvents(ctx context.Context, op string, withBody bool, query string, args ...any) ([]store.Event, error) {
	scan := scanEvent
	if withBody {
		scan = scanEventWithBody
	}
	return queryRows(ctx, s, op, scan, query, args...)
}

func scanEvent(r pgx.CollectableRow) (store.Event, error) { return scanEventRow(r, false) }

func scanEventWithBody(r pgx.CollectableRow) (store.Event, error) { return scanEventRow(r, true) }

// scanEventRow scans eventColumns, then the body when withBody, then into
// extra.
func scanEventRow(r pgx.CollectableRow, withBody bool, extra ...any) (store.Event, error) {
	var (
		e               store.Event
		path, rawQuery  []byte
		state           string
		names, values   [][]byte
		receivedAt      time.Time
		size            int32
		lastStatus, att int32
	)
	dest := []any{&e.Seq, &e.ID, &e.ChannelID, &e.Method, &path, &rawQuery, &e.RemoteAddr,
		&receivedAt, &state, &e.RejectReason, &lastStatus, &att, &e.DeliveredAny, &names, &values, &size,
		&e.ReplayOf}
	if withBody {
		dest = append(dest, &e.Body)
	}
	dest = append(dest, extra...)
	if err := r.Scan(dest...); err != nil {
		return store.Event{}, err
	}
	e.Path, e.RawQuery = string(path), string(rawQuery)
	e.ReceivedAt = receivedAt.UTC()
	e.State = store.EventState(state)
	e.LastStatus, e.Attempts, e.Size = int(lastStatus), int(att), int(size)
	if withBody && e.Body == nil {
		e.Body = []byte{} // loaded but empty: nil means "not loaded"
	}
	var err error
	if e.Headers, err = joinHeaders(names, values); err != nil {
		return store.Event{}, fmt.Errorf("event %s: %w", e.ID, err)
	}
	return e, nil
}

// joinHeaders makes a header list of the two parallel arrays the events
// table keeps (see the migration); nil for no headers.
func joinHeaders(names, values [][]byte) ([]store.Header, error) {
	if len(names) != len(values) {
		return nil, fmt.Errorf("%d header names but %d values", len(names), len(values))
	}
	if len(names) == 0 {
		return nil, nil
	}
	hs := make([]store.Header, len(names))
	for i := range names {
		hs[i] = store.Header{Name: string(names[i]), Value: string(values[i])}
	}
	return hs, nil
}

// maxSeqQuery reads the highest seq the sequence has handed out (0 before
// the first), whichever session took it: a sequence is not transactional.
const maxSeqQuery = `SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM event_seq`

// MaxSeq is the highest seq assigned so far on any node (0 when none), as
// store.Store documents. After a crash of PostgreSQL it may include up to
// 32 seqs the sequence logged ahead and skipped.
func (s *Store) MaxSeq(ctx context.Context) (int64, error) {
	return queryRow(ctx, s, "max seq", "sequence", pgx.RowTo[int64], maxSeqQuery)
}
