package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/hookrelay/hookrelay/server/store"
)

// Prune applies retention and channel TTLs, in this order: channels expired
// at o.Now (with everything of theirs), events received before
// o.EventsBefore, events beyond o.MaxEventsPerChannel per channel, groups
// last seen before o.GroupsIdleBefore. A zero field skips its rule.
// Deleting events deletes their deliveries and done marks.
//
// Events are deleted in chunks, each chunk its own write, so appends keep
// flowing while a large backlog is pruned. On error the counts so far are
// returned with it.
func (s *Store) Prune(ctx context.Context, o store.PruneOptions) (store.PruneResult, error) {
	var r store.PruneResult
	if err := s.pruneChannels(ctx, o, &r); err != nil {
		return r, wrapErr("prune expired channels", err)
	}
	if !o.EventsBefore.IsZero() {
		n, err := s.deleteEvents(ctx, "received_at < ?", micros(o.EventsBefore))
		r.Events += n
		if err != nil {
			return r, wrapErr("prune old events", err)
		}
	}
	if err := s.pruneOverCap(ctx, o.MaxEventsPerChannel, &r); err != nil {
		return r, wrapErr("prune events over the per-channel cap", err)
	}
	if !o.GroupsIdleBefore.IsZero() {
		var n int64
		err := s.write(ctx, 0, func(w *writeConn) error {
			res, err := w.exec(`DELETE FROM delivery_groups WHERE last_seen_at < ?`, micros(o.GroupsIdleBefore))
			if err != nil {
				return err
			}
			n, err = res.RowsAffected()
			return err
		})
		if err != nil {
			return r, wrapErr("prune idle groups", err)
		}
		r.Groups += int(n)
	}
	return r, nil
}

// pruneChannels deletes the channels whose ExpiresAt is before o.Now.
func (s *Store) pruneChannels(ctx context.Context, o store.PruneOptions, r *store.PruneResult) error {
	if o.Now.IsZero() {
		return nil
	}
	ids, err := s.readStrings(ctx, `SELECT id FROM channels
		WHERE expires_at IS NOT NULL AND expires_at < ? ORDER BY expires_at`, micros(o.Now))
	if err != nil {
		return err
	}
	for _, id := range ids {
		n, err := s.deleteEvents(ctx, "channel_id = ?", id)
		r.Events += n
		if err != nil {
			return err
		}
		var groups, deleted int64
		err = s.write(ctx, 0, func(w *writeConn) error {
			if err := w.row(`SELECT count(*) FROM delivery_groups WHERE channel_id = ?`, id).
				Scan(&groups); err != nil {
				return err
			}
			res, err := w.exec(`DELETE FROM channels WHERE id = ?`, id)
			if err != nil {
				return err
			}
			deleted, err = res.RowsAffected()
			return err
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
	ids, err := s.readStrings(ctx, `SELECT channel_id FROM events
		GROUP BY channel_id HAVING count(*) > ?`, maxEvents)
	if err != nil {
		return err
	}
	for _, id := range ids {
		// The newest event to go: the (maxEvents+1)-th newest. Events
		// appended meanwhile are newer, so the newest maxEvents stay.
		var cutoff int64
		err := s.rdb.QueryRowContext(ctx, `SELECT seq FROM events WHERE channel_id = ?
			ORDER BY seq DESC LIMIT 1 OFFSET ?`, id, maxEvents).Scan(&cutoff)
		if errors.Is(err, sql.ErrNoRows) {
			continue // pruned or deleted meanwhile
		}
		if err != nil {
			return fmt.Errorf("channel %s: %w", id, err)
		}
		n, err := s.deleteEvents(ctx, "channel_id = ? AND seq <= ?", id, cutoff)
		r.Events += n
		if err != nil {
			return err
		}
	}
	return nil
}

// readStrings runs a query returning one text column on the read pool.
func (s *Store) readStrings(ctx context.Context, query string, args ...any) ([]string, error) {
	if err := s.readable(); err != nil {
		return nil, err
	}
	rows, err := s.rdb.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}
