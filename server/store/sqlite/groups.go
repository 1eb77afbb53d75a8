package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/hookrelay/hookrelay/server/store"
)

const groupColumns = `id, channel_id, name, done_through, created_at, last_seen_at`

// EnsureGroup returns the channel's group with that name, creating it when
// missing, as store.Store documents. It runs in the writer, so "now" for
// FromNow is the writer's view: every append it has taken before.
func (s *Store) EnsureGroup(ctx context.Context, channelID, name string, from store.From) (store.Group, error) {
	op := fmt.Sprintf("ensure group %s/%s", channelID, name)
	if from != store.FromNow && from != store.FromResume {
		return store.Group{}, fmt.Errorf("%s: unknown starting point %q", op, from)
	}
	var g store.Group
	err := s.write(ctx, 0, func(w *writeConn) error {
		now := time.Now()
		var start int64
		if from == store.FromNow {
			start = s.lastSeq.Load()
		}
		var err error
		g, err = scanGroup(w.row(`SELECT `+groupColumns+` FROM delivery_groups
			WHERE channel_id = ? AND name = ?`, channelID, name))
		switch {
		case errors.Is(err, sql.ErrNoRows):
			// New: FromResume starts before the channel's oldest event (0
			// does that), FromNow after every append taken so far.
			res, err := w.exec(`INSERT INTO delivery_groups (channel_id, name, done_through,
				created_at, last_seen_at) VALUES (?, ?, ?, ?, ?)`,
				channelID, name, start, micros(now), micros(now))
			if err != nil {
				return constraintErr(err, "group name taken", "channel")
			}
			id, err := res.LastInsertId()
			g = store.Group{ID: id, ChannelID: channelID, Name: name, DoneThrough: start,
				CreatedAt: fromMicros(micros(now)), LastSeenAt: fromMicros(micros(now))}
			return err
		case err != nil:
			return err
		}
		g.DoneThrough = max(g.DoneThrough, start)
		g.LastSeenAt = fromMicros(micros(now))
		if _, err := w.exec(`UPDATE delivery_groups SET done_through = ?, last_seen_at = ? WHERE id = ?`,
			g.DoneThrough, micros(now), g.ID); err != nil {
			return err
		}
		_, err = w.exec(`DELETE FROM done_marks WHERE group_id = ? AND event_seq <= ?`, g.ID, g.DoneThrough)
		return err
	})
	if err != nil {
		return store.Group{}, wrapErr(op, err)
	}
	return g, nil
}

// ListGroups lists the channel's groups, oldest first.
func (s *Store) ListGroups(ctx context.Context, channelID string) ([]store.Group, error) {
	if err := s.readable(); err != nil {
		return nil, err
	}
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+groupColumns+` FROM delivery_groups
		WHERE channel_id = ? ORDER BY id`, channelID)
	if err != nil {
		return nil, wrapErr("list groups", err)
	}
	defer rows.Close()
	var gs []store.Group
	for rows.Next() {
		g, err := scanGroup(rows)
		if err != nil {
			return nil, wrapErr("list groups", err)
		}
		gs = append(gs, g)
	}
	return gs, wrapErr("list groups", rows.Err())
}

// defaultPendingLimit is Pending's limit when none is given.
const defaultPendingLimit = 100

// pendingEvents selects a page of a group's backlog: the events(channel_id,
// seq) index gives the order, the done_marks primary key answers "done?"
// and the deliveries_event index counts the group's attempts per event.
// Bodies over the size asked for are not read (their overflow pages are
// never walked).
const pendingEvents = `SELECT ` + eventColumns + `,
		CASE WHEN e.size <= ?1 THEN e.body END,
		(SELECT count(*) FROM deliveries AS d WHERE d.event_seq = e.seq AND d.group_id = ?2)
	FROM ` + eventTables + `
	WHERE e.channel_id = ?3 AND e.seq > ?4 AND e.state = 'accepted'
	  AND NOT EXISTS (SELECT 1 FROM done_marks AS m WHERE m.group_id = ?2 AND m.event_seq = e.seq)
	ORDER BY e.seq LIMIT ?5`

// Pending reads a page of the group's backlog and the channel's horizon
// from one read transaction (one WAL snapshot), as store.Store documents.
func (s *Store) Pending(ctx context.Context, q store.PendingQuery) (store.PendingPage, error) {
	if err := s.readable(); err != nil {
		return store.PendingPage{}, err
	}
	op := fmt.Sprintf("pending events of group %d", q.GroupID)
	tx, err := s.rdb.BeginTx(ctx, nil)
	if err != nil {
		return store.PendingPage{}, wrapErr(op, err)
	}
	defer func() { _ = tx.Rollback() }() // read only: nothing to undo; after Commit it does nothing
	page, err := pending(ctx, tx, q)
	if err == nil {
		err = tx.Commit()
	}
	if err != nil {
		return store.PendingPage{}, wrapErr(op, err)
	}
	return page, nil
}

func pending(ctx context.Context, tx *sql.Tx, q store.PendingQuery) (store.PendingPage, error) {
	var (
		page        store.PendingPage
		channelID   string
		doneThrough int64
	)
	err := tx.QueryRowContext(ctx, `SELECT channel_id, done_through FROM delivery_groups WHERE id = ?`,
		q.GroupID).Scan(&channelID, &doneThrough)
	if err != nil {
		return page, notFound(err, "group")
	}
	err = tx.QueryRowContext(ctx, `SELECT coalesce(max(seq), 0) FROM events WHERE channel_id = ?`,
		channelID).Scan(&page.Horizon)
	if err != nil {
		return page, err
	}
	limit := q.Limit
	if limit <= 0 {
		limit = defaultPendingLimit
	}
	maxBody := int64(q.MaxBody)
	if maxBody <= 0 {
		maxBody = math.MaxInt64
	}
	rows, err := tx.QueryContext(ctx, pendingEvents, maxBody, q.GroupID, channelID,
		max(q.AfterSeq, doneThrough), limit)
	if err != nil {
		return page, err
	}
	defer rows.Close()
	for rows.Next() {
		var attempts int
		e, err := scanEvent(scanFunc(func(dest ...any) error {
			return rows.Scan(append(dest, &attempts)...)
		}), true)
		if err != nil {
			return page, err
		}
		e.GroupAttempts = attempts
		page.Events = append(page.Events, e)
	}
	return page, rows.Err()
}

// scanFunc is a scanner made of a function.
type scanFunc func(dest ...any) error

func (f scanFunc) Scan(dest ...any) error { return f(dest...) }

func scanGroup(r scanner) (store.Group, error) {
	var (
		g                   store.Group
		createdAt, lastSeen int64
	)
	if err := r.Scan(&g.ID, &g.ChannelID, &g.Name, &g.DoneThrough, &createdAt, &lastSeen); err != nil {
		return store.Group{}, err
	}
	g.CreatedAt, g.LastSeenAt = fromMicros(createdAt), fromMicros(lastSeen)
	return g, nil
}
