package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/hookrelay/hookrelay/server/store"
)

// Prune applies retention and channel TTLs, in this order: channels expired
// at o.Now (with everything of theirs), events received before
// o.EventsBefore, events beyond o.MaxEventsPerChannel per channel, groups
// last seen before o.GroupsIdleBefore. A zero field skips its rule.
// Deleting events deletes their status, deliveries and done marks.
//
// Events are deleted in chunks, each its own transaction, so no long
// transaction holds back vacuum or other nodes' writes. Several nodes may
// prune at once: each deletes what is still there. On error the counts so
// far are returned with it.
func (s *Store) Prune(ctx context.Context, o store.PruneOptions) (store.PruneResult, error) {
	var r store.PruneResult
	if err := s.pruneChannels(ctx, o, &r); err != nil {
		return r, fmt.Errorf("prune expired channels: %w", err)
	}
	if !o.EventsBefore.IsZero() {
		n, err := s.deleteEvents(ctx, "prune old events", "received_at < $1", o.EventsBefore)
		r.Events += n
		if err != nil {
			return r, err
		}
	}
	if err := s.pruneOverCap(ctx, o.MaxEventsPerChannel, &r); err != nil {
		return r, fmt.Errorf("prune events over the per-channel cap: %w", err)
	}
	if !o.GroupsIdleBefore.IsZero() {
		n, err := s.exec(ctx, "prune idle groups", `DELETE FROM delivery_groups WHERE last_seen_at < $1`,
			o.GroupsIdleBefore)
		r.Groups += int(n)
		if err != nil {
			return r, err
		}
	}
	return r, nil
}

// pruneChannels deletes the channels whose ExpiresAt is before o.Now.
func (s *Store) pruneChannels(ctx context.Context, o store.PruneOptions, r *store.PruneResult) error {
	if o.Now.IsZero() {
		return nil
	}
	ids, err := s.strings(ctx, "list expired channels", `SELECT id FROM channels
		WHERE expires_at IS NOT NULL AND expires_at < $1 ORDER BY expires_at`, o.Now)
	if err != nil {
		return err
	}
	for _, id := range ids {
		n, err := s.deleteEvents(ctx, "delete channel "+id, "channel_id = $1", id)
		r.Events += n
		if err != nil {
			return err
		}
		// The groups are counted by the same statement that deletes the
		// channel (and with it, by cascade, the groups).
		var groups, deleted int64
		err = s.call(ctx, "delete channel "+id, func(ctx context.Context) error {
			return s.pool.QueryRow(ctx, `WITH g AS (SELECT count(*) AS n FROM delivery_groups WHERE channel_id = $1),
				c AS (DELETE FROM channels WHERE id = $1 RETURNING id)
				SELECT (SELECT n FROM g), (SELECT count(*) FROM c)`, id).Scan(&groups, &deleted)
		})
		if err != nil {
			return err
		}
		if deleted > 0 { // not deleted by someone else meanwhile
			r.Channels++
			r.Groups += int(groups)
		}
	}
	return nil
}

// pruneOverCap deletes, in every channel holding more than maxEvents
// events, all but the newest maxEvents.
func (s *Store) pruneOverCap(ctx context.Context, maxEvents int, r *store.PruneResult) error {
	if maxEvents <= 0 {
		return nil
	}
	ids, err := s.strings(ctx, "find channels over the cap", `SELECT channel_id FROM events
		GROUP BY channel_id HAVING count(*) > $1`, maxEvents)
	if err != nil {
		return err
	}
	for _, id := range ids {
		// The newest event to go: the (maxEvents+1)-th newest. Events
		// appended meanwhile are newer, so the newest maxEvents stay.
		var cutoff int64
		err := s.call(ctx, "find the cap of channel "+id, func(ctx context.Context) error {
			err := s.pool.QueryRow(ctx, `SELECT seq FROM events WHERE channel_id = $1
				ORDER BY seq DESC LIMIT 1 OFFSET $2`, id, maxEvents).Scan(&cutoff)
			return notFound(err, "channel "+id)
		})
		if errors.Is(err, store.ErrNotFound) {
			continue // pruned or deleted meanwhile
		}
		if err != nil {
			return err
		}
		n, err := s.deleteEvents(ctx, "delete events of channel "+id, "channel_id = $1 AND seq <= $2", id, cutoff)
		r.Events += n
		if err != nil {
			return err
		}
	}
	return nil
}

// strings runs a query returning one text column.
func (s *Store) strings(ctx context.Context, op, query string, args ...any) ([]string, error) {
	return queryRows(ctx, s, op, pgx.RowTo[string], query, args...)
}
