package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hookrelay/hookrelay/server/store"
)

const groupColumns = `id, channel_id, name, done_through, created_at, last_seen_at`

// maxSeqQuery reads the highest seq ever assigned.
const maxSeqQuery = `SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)`

// EnsureGroup returns the channel's group with that name, creating it when
// missing, as store.Store documents. It runs in the writer, so "now" for
// FromNow is the writer's view: every event committed before it.
func (s *Store) EnsureGroup(ctx context.Context, channelID, name string, from store.From) (store.Group, error) {
	op := fmt.Sprintf("ensure group %s/%s", channelID, name)
	if from != store.FromNow && from != store.FromResume {
		return store.Group{}, fmt.Errorf("%s: unknown starting point %q", op, from)
	}
	var g store.Group
	err := s.write(ctx, 0, func(w *writeConn) error {
		now := time.Now()
		var maxSeq int64
		if from == store.FromNow {
			if err := w.row(maxSeqQuery).Scan(&maxSeq); err != nil {
				return err
			}
		}
		var err error
		g, err = scanGroup(w.row(`SELECT `+groupColumns+` FROM delivery_groups
			WHERE channel_id = ? AND name = ?`, channelID, name))
		switch {
		case errors.Is(err, sql.ErrNoRows):
			// New: FromResume starts before the channel's oldest event (0
			// does that), FromNow after everything committed so far.
			res, err := w.exec(`INSERT INTO delivery_groups (channel_id, name, done_through,
				created_at, last_seen_at) VALUES (?, ?, ?, ?, ?)`,
				channelID, name, maxSeq, micros(now), micros(now))
			if err != nil {
				return constraintErr(err, "group name taken", "channel")
			}
			id, err := res.LastInsertId()
			g = store.Group{ID: id, ChannelID: channelID, Name: name, DoneThrough: maxSeq,
				CreatedAt: fromMicros(micros(now)), LastSeenAt: fromMicros(micros(now))}
			return err
		case err != nil:
			return err
		}
		g.DoneThrough = max(g.DoneThrough, maxSeq)
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

// TouchGroup sets the group's LastSeenAt.
func (s *Store) TouchGroup(ctx context.Context, groupID int64, at time.Time) error {
	err := s.write(ctx, 0, func(w *writeConn) error {
		res, err := w.exec(`UPDATE delivery_groups SET last_seen_at = ? WHERE id = ?`, micros(at), groupID)
		return affectedOne(res, err, "group")
	})
	return wrapErr(fmt.Sprintf("touch group %d", groupID), err)
}

// AdvanceGroup raises the group's DoneThrough to seq, never lowering it,
// and drops the done marks it now covers.
func (s *Store) AdvanceGroup(ctx context.Context, groupID int64, seq int64) error {
	err := s.write(ctx, 0, func(w *writeConn) error {
		res, err := w.exec(`UPDATE delivery_groups SET done_through = max(done_through, ?) WHERE id = ?`,
			seq, groupID)
		if err := affectedOne(res, err, "group"); err != nil {
			return err
		}
		_, err = w.exec(`DELETE FROM done_marks WHERE group_id = ? AND event_seq <= ?`, groupID, seq)
		return err
	})
	return wrapErr(fmt.Sprintf("advance group %d", groupID), err)
}

// defaultPendingLimit is Pending's limit when none is given.
const defaultPendingLimit = 100

// Pending returns accepted events of the group's channel after
// max(afterSeq, DoneThrough) that are not done for the group, oldest first,
// with bodies. The events(channel_id, seq) index gives the order and the
// done_marks primary key answers "done?" per event.
func (s *Store) Pending(ctx context.Context, groupID int64, afterSeq int64, limit int) ([]store.Event, error) {
	if err := s.readable(); err != nil {
		return nil, err
	}
	op := fmt.Sprintf("pending events of group %d", groupID)
	var (
		channelID   string
		doneThrough int64
	)
	err := s.rdb.QueryRowContext(ctx, `SELECT channel_id, done_through FROM delivery_groups WHERE id = ?`,
		groupID).Scan(&channelID, &doneThrough)
	if err != nil {
		return nil, wrapErr(op, notFound(err, "group"))
	}
	if limit <= 0 {
		limit = defaultPendingLimit
	}
	es, err := s.queryEvents(ctx, op, true, `SELECT `+eventColumns+`, body FROM events AS e
		WHERE channel_id = ? AND seq > ? AND state = ?
		  AND NOT EXISTS (SELECT 1 FROM done_marks AS d WHERE d.group_id = ? AND d.event_seq = e.seq)
		ORDER BY seq LIMIT ?`,
		channelID, max(afterSeq, doneThrough), string(store.EventAccepted), groupID, limit)
	if err != nil || len(es) == 0 {
		return es, err
	}
	// Attempts already made for this group (the deliveries_event index
	// leads with event_seq, so each count is a short index range).
	args := make([]any, 0, len(es)+1)
	args = append(args, groupID)
	for _, e := range es {
		args = append(args, e.Seq)
	}
	rows, err := s.rdb.QueryContext(ctx, `SELECT event_seq, count(*) FROM deliveries
		WHERE group_id = ? AND event_seq IN (?`+strings.Repeat(", ?", len(es)-1)+`) GROUP BY event_seq`, args...)
	if err != nil {
		return nil, wrapErr(op, err)
	}
	defer rows.Close()
	counts := make(map[int64]int)
	for rows.Next() {
		var seq int64
		var n int
		if err := rows.Scan(&seq, &n); err != nil {
			return nil, wrapErr(op, err)
		}
		counts[seq] = n
	}
	if err := rows.Err(); err != nil {
		return nil, wrapErr(op, err)
	}
	for i := range es {
		es[i].GroupAttempts = counts[es[i].Seq]
	}
	return es, nil
}

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
