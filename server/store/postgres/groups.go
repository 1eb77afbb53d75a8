package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hookrelay/hookrelay/server/store"
)

const groupColumns = `id, channel_id, name, done_through, created_at, last_seen_at`

// maxSeqQuery reads the highest seq ever taken (0 before the first). Under
// the seq lock no append is in flight, so every seq up to it is committed
// or rolled back for good.
const maxSeqQuery = `SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM event_seq`

// MaxSeq is the highest seq committed so far (0 when none), even if that
// event was deleted since. It waits for the append batch committing at
// that moment, if any.
func (s *Store) MaxSeq(ctx context.Context) (int64, error) {
	var seq int64
	err := s.call(ctx, "max seq", func(ctx context.Context) error {
		return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, seqLock, s.lockSpace); err != nil {
				return err
			}
			return tx.QueryRow(ctx, maxSeqQuery).Scan(&seq)
		})
	})
	return seq, err
}

// EnsureGroup returns the channel's group with that name, creating it when
// missing, as store.Store documents. For FromNow it holds the seq lock, so
// "now" is exact: every event committed before is skipped, every event
// committed after is not.
func (s *Store) EnsureGroup(ctx context.Context, channelID, name string, from store.From) (store.Group, error) {
	op := fmt.Sprintf("ensure group %s/%s", channelID, name)
	if from != store.FromNow && from != store.FromResume {
		return store.Group{}, fmt.Errorf("%s: unknown starting point %q", op, from)
	}
	var g store.Group
	err := s.call(ctx, op, func(ctx context.Context) error {
		return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			// New: FromResume starts before the channel's oldest event (0
			// does that), FromNow after everything committed so far.
			var maxSeq int64
			if from == store.FromNow {
				if _, err := tx.Exec(ctx, seqLock, s.lockSpace); err != nil {
					return err
				}
				if err := tx.QueryRow(ctx, maxSeqQuery).Scan(&maxSeq); err != nil {
					return err
				}
			}
			now := time.Now().Truncate(time.Microsecond)
			rows, _ := tx.Query(ctx, `INSERT INTO delivery_groups AS g (channel_id, name, done_through, created_at, last_seen_at)
				VALUES ($1, $2, $3, $4, $4)
				ON CONFLICT (channel_id, name) DO UPDATE
				SET done_through = greatest(g.done_through, excluded.done_through), last_seen_at = excluded.last_seen_at
				RETURNING `+groupColumns, channelID, name, maxSeq, now)
			var err error
			if g, err = pgx.CollectExactlyOneRow(rows, scanGroup); err != nil {
				return constraintErr(err, "group name taken", "channel "+channelID)
			}
			_, err = tx.Exec(ctx, `DELETE FROM done_marks WHERE group_id = $1 AND event_seq <= $2`, g.ID, g.DoneThrough)
			return err
		})
	})
	if err != nil {
		return store.Group{}, err
	}
	return g, nil
}

// ListGroups lists the channel's groups, oldest first.
func (s *Store) ListGroups(ctx context.Context, channelID string) ([]store.Group, error) {
	return queryRows(ctx, s, "list groups", scanGroup, `SELECT `+groupColumns+` FROM delivery_groups
		WHERE channel_id = $1 ORDER BY id`, channelID)
}

// TouchGroup sets the group's LastSeenAt.
func (s *Store) TouchGroup(ctx context.Context, groupID int64, at time.Time) error {
	op := fmt.Sprintf("touch group %d", groupID)
	n, err := s.exec(ctx, op, `UPDATE delivery_groups SET last_seen_at = $1 WHERE id = $2`, at, groupID)
	return oneRow(n, err, op, "group")
}

// AdvanceGroup raises the group's DoneThrough to seq, never lowering it,
// and drops the done marks it now covers.
func (s *Store) AdvanceGroup(ctx context.Context, groupID int64, seq int64) error {
	op := fmt.Sprintf("advance group %d", groupID)
	n, err := s.exec(ctx, op, `WITH g AS (
			UPDATE delivery_groups SET done_through = greatest(done_through, $2) WHERE id = $1 RETURNING id
		), d AS (
			DELETE FROM done_marks WHERE group_id IN (SELECT id FROM g) AND event_seq <= $2
		)
		SELECT FROM g`, groupID, seq)
	return oneRow(n, err, op, "group")
}

// defaultPendingLimit is Pending's limit when none is given.
const defaultPendingLimit = 100

// Pending returns accepted events of the group's channel after
// max(afterSeq, DoneThrough) that are not done for the group, oldest first,
// with bodies and the attempts already recorded for the group.
func (s *Store) Pending(ctx context.Context, groupID int64, afterSeq int64, limit int) ([]store.Event, error) {
	op := fmt.Sprintf("pending events of group %d", groupID)
	if limit <= 0 {
		limit = defaultPendingLimit
	}
	var es []store.Event
	// The group's watermark and its events are read from one snapshot.
	err := s.call(ctx, op, func(ctx context.Context) error {
		return pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{AccessMode: pgx.ReadOnly, IsoLevel: pgx.RepeatableRead},
			func(tx pgx.Tx) error {
				var (
					channelID   string
					doneThrough int64
				)
				err := tx.QueryRow(ctx, `SELECT channel_id, done_through FROM delivery_groups WHERE id = $1`,
					groupID).Scan(&channelID, &doneThrough)
				if err != nil {
					return notFound(err, "group")
				}
				rows, _ := tx.Query(ctx, `SELECT `+eventColumns+`, e.body,
					(SELECT count(*) FROM deliveries AS d WHERE d.group_id = $4 AND d.event_seq = e.seq)`+eventsFrom+`
				WHERE e.channel_id = $1 AND e.seq > $2 AND e.state = $3
				  AND NOT EXISTS (SELECT 1 FROM done_marks AS m WHERE m.group_id = $4 AND m.event_seq = e.seq)
				ORDER BY e.seq LIMIT $5`,
					channelID, max(afterSeq, doneThrough), string(store.EventAccepted), groupID, limit)
				es, err = pgx.CollectRows(rows, scanPendingEvent)
				return err
			})
	})
	return es, err
}

// scanPendingEvent scans eventColumns, the body and the group's attempts.
func scanPendingEvent(r pgx.CollectableRow) (store.Event, error) {
	var attempts int64
	e, err := scanEventRow(r, true, &attempts)
	e.GroupAttempts = int(attempts)
	return e, err
}

func scanGroup(r pgx.CollectableRow) (store.Group, error) {
	var g store.Group
	if err := r.Scan(&g.ID, &g.ChannelID, &g.Name, &g.DoneThrough, &g.CreatedAt, &g.LastSeenAt); err != nil {
		return store.Group{}, err
	}
	g.CreatedAt, g.LastSeenAt = g.CreatedAt.UTC(), g.LastSeenAt.UTC()
	return g, nil
}
