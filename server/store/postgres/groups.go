package postgres

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hookrelay/hookrelay/server/store"
)

const groupColumns = `id, channel_id, name, done_through, created_at, last_seen_at`

// ensureGroup creates the group ($1, $2) or updates it, in one statement.
// A new group starts at $3, which is 0 (before the channel's oldest event)
// or, for FromNow ($4), the highest seq taken so far on any node; an
// existing one is raised to it. The done marks the group's DoneThrough now
// covers go with it.
const ensureGroup = `WITH g AS (
	INSERT INTO delivery_groups AS dg (channel_id, name, done_through, created_at, last_seen_at)
	VALUES ($1, $2, CASE WHEN $3::boolean THEN (` + maxSeqQuery + `) ELSE 0 END, $4, $4)
	ON CONFLICT (channel_id, name) DO UPDATE
	SET done_through = greatest(dg.done_through, excluded.done_through), last_seen_at = excluded.last_seen_at
	RETURNING ` + groupColumns + `
), marks AS (
	DELETE FROM done_marks AS m USING g WHERE m.group_id = g.id AND m.event_seq <= g.done_through
)
SELECT ` + groupColumns + ` FROM g`

// EnsureGroup returns the channel's group with that name, creating it when
// missing, as store.Store documents. "Now" for FromNow is the sequence's
// last value: every append that took its seq before, on any node, is
// skipped.
func (s *Store) EnsureGroup(ctx context.Context, channelID, name string, from store.From) (store.Group, error) {
	op := fmt.Sprintf("ensure group %s/%s", channelID, name)
	if from != store.FromNow && from != store.FromResume {
		return store.Group{}, fmt.Errorf("%s: unknown starting point %q", op, from)
	}
	var g store.Group
	err := s.call(ctx, op, func(ctx context.Context) error {
		rows, _ := s.pool.Query(ctx, ensureGroup, channelID, name, from == store.FromNow,
			time.Now().Truncate(time.Microsecond))
		var err error
		g, err = pgx.CollectExactlyOneRow(rows, scanGroup)
		return constraintErr(err, "group name taken", "channel "+channelID)
	})
	return g, err
}

// ListGroups lists the channel's groups, oldest first.
func (s *Store) ListGroups(ctx context.Context, channelID string) ([]store.Group, error) {
	return queryRows(ctx, s, "list groups", scanGroup, `SELECT `+groupColumns+` FROM delivery_groups
		WHERE channel_id = $1 ORDER BY id`, channelID)
}

// defaultPendingLimit is Pending's limit when none is given.
const defaultPendingLimit = 100

// The statements of Pending, run in one REPEATABLE READ transaction so they
// share a snapshot.
const (
	// pendingGroup reads the group and its channel's horizon.
	pendingGroup = `SELECT g.channel_id, g.done_through,
		(SELECT coalesce(max(e.seq), 0) FROM events AS e WHERE e.channel_id = g.channel_id)
	FROM delivery_groups AS g WHERE g.id = $1`
	// pendingEvents reads a page of the group's backlog: the
	// events_channel_seq index gives the order, the done_marks primary key
	// answers "done?" and the deliveries_event index counts the group's
	// attempts per event. A body over $2 bytes is not read (its TOAST
	// chunks are never fetched).
	pendingEvents = `SELECT ` + eventColumns + `, CASE WHEN e.body_size <= $2::bigint THEN e.body END,
		(SELECT count(*) FROM deliveries AS d WHERE d.event_seq = e.seq AND d.group_id = $1)` + eventsFrom + `
	JOIN delivery_groups AS g ON g.id = $1 AND e.channel_id = g.channel_id
	WHERE e.seq > greatest($3, g.done_through) AND e.state = 'accepted'
	  AND NOT EXISTS (SELECT FROM done_marks AS m WHERE m.group_id = $1 AND m.event_seq = e.seq)
	ORDER BY e.seq LIMIT $4`
)

// Pending reads a page of the group's backlog and its channel's horizon
// from one snapshot, as store.Store documents. The transaction and both
// queries go in one pipeline: one round trip.
func (s *Store) Pending(ctx context.Context, q store.PendingQuery) (store.PendingPage, error) {
	op := fmt.Sprintf("pending events of group %d", q.GroupID)
	limit := q.Limit
	if limit <= 0 {
		limit = defaultPendingLimit
	}
	maxBody := int64(q.MaxBody)
	if maxBody <= 0 {
		maxBody = math.MaxInt64
	}
	var page store.PendingPage
	err := s.call(ctx, op, func(ctx context.Context) error {
		b := &pgx.Batch{}
		b.Queue(`BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY`)
		b.Queue(pendingGroup, q.GroupID)
		b.Queue(pendingEvents, q.GroupID, maxBody, q.AfterSeq, limit)
		b.Queue(`COMMIT`)
		br := s.pool.SendBatch(ctx, b)
		defer br.Close()
		if _, err := br.Exec(); err != nil {
			return err
		}
		var (
			channelID   string
			doneThrough int64
		)
		if err := br.QueryRow().Scan(&channelID, &doneThrough, &page.Horizon); err != nil {
			return notFound(err, "group")
		}
		rows, _ := br.Query()
		var err error
		page.Events, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Event, error) {
			var attempts int64
			e, err := scanEventRow(r, true, &attempts)
			e.GroupAttempts = int(attempts)
			if int64(e.Size) > maxBody {
				e.Body = nil // not loaded
			}
			return e, err
		})
		if err != nil {
			return err
		}
		_, err = br.Exec()
		return err
	})
	if err != nil {
		return store.PendingPage{}, err
	}
	return page, nil
}

func scanGroup(r pgx.CollectableRow) (store.Group, error) {
	var g store.Group
	if err := r.Scan(&g.ID, &g.ChannelID, &g.Name, &g.DoneThrough, &g.CreatedAt, &g.LastSeenAt); err != nil {
		return store.Group{}, err
	}
	g.CreatedAt, g.LastSeenAt = g.CreatedAt.UTC(), g.LastSeenAt.UTC()
	return g, nil
}
