package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"

	"github.com/hookrelay/hookrelay/server/store"
)

const channelColumns = `id, team_id, async, expires_at, created_at, read_key_hash,
	verify_scheme, verify_secret, verify_header, allowed_cidrs, rate_limit`

// CreateChannel stores a new channel; store.ErrConflict if the id exists. A
// zero CreatedAt is set to now.
func (s *Store) CreateChannel(ctx context.Context, c store.Channel) error {
	cidrs, err := marshalCIDRs(c.AllowedCIDRs)
	if err != nil {
		return fmt.Errorf("create channel %s: %w", c.ID, err)
	}
	err = s.write(ctx, 0, func(w *writeConn) error {
		_, err := w.exec(`INSERT INTO channels (`+channelColumns+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			c.ID, c.TeamID, c.Async, nullMicros(c.ExpiresAt), micros(nowOr(c.CreatedAt)),
			c.ReadKeyHash, c.VerifyScheme, c.VerifySecret, c.VerifyHeader, cidrs, c.RateLimit)
		return constraintErr(err, "channel id taken", "")
	})
	return wrapErr("create channel "+c.ID, err)
}

// GetChannel returns the channel with that id.
func (s *Store) GetChannel(ctx context.Context, id string) (store.Channel, error) {
	if err := s.readable(); err != nil {
		return store.Channel{}, err
	}
	row := s.rdb.QueryRowContext(ctx, `SELECT `+channelColumns+` FROM channels WHERE id = ?`, id)
	c, err := scanChannel(row)
	return c, wrapErr("get channel "+id, notFound(err, "channel"))
}

// UpdateChannel replaces every field of the channel but ID and CreatedAt.
func (s *Store) UpdateChannel(ctx context.Context, c store.Channel) error {
	cidrs, err := marshalCIDRs(c.AllowedCIDRs)
	if err != nil {
		return fmt.Errorf("update channel %s: %w", c.ID, err)
	}
	err = s.write(ctx, 0, func(w *writeConn) error {
		res, err := w.exec(`UPDATE channels SET team_id = ?, async = ?, expires_at = ?,
			read_key_hash = ?, verify_scheme = ?, verify_secret = ?, verify_header = ?,
			allowed_cidrs = ?, rate_limit = ? WHERE id = ?`,
			c.TeamID, c.Async, nullMicros(c.ExpiresAt), c.ReadKeyHash, c.VerifyScheme,
			c.VerifySecret, c.VerifyHeader, cidrs, c.RateLimit, c.ID)
		return affectedOne(res, err, "channel")
	})
	return wrapErr("update channel "+c.ID, err)
}

// ListChannels lists the channels of a team, oldest first; "*" lists all.
func (s *Store) ListChannels(ctx context.Context, teamID string) ([]store.Channel, error) {
	if err := s.readable(); err != nil {
		return nil, err
	}
	q := `SELECT ` + channelColumns + ` FROM channels`
	var args []any
	if teamID != "*" {
		q += ` WHERE team_id = ?`
		args = append(args, teamID)
	}
	rows, err := s.rdb.QueryContext(ctx, q+` ORDER BY created_at, id`, args...)
	if err != nil {
		return nil, wrapErr("list channels", err)
	}
	defer rows.Close()
	var cs []store.Channel
	for rows.Next() {
		c, err := scanChannel(rows)
		if err != nil {
			return nil, wrapErr("list channels", err)
		}
		cs = append(cs, c)
	}
	return cs, wrapErr("list channels", rows.Err())
}

// DeleteChannel deletes the channel with its events, groups, deliveries
// and done marks. The events go in chunks, each its own write, so a big
// channel does not hold up appends for long.
func (s *Store) DeleteChannel(ctx context.Context, id string) error {
	if _, err := s.deleteEvents(ctx, "channel_id = ?", id); err != nil {
		return wrapErr("delete channel "+id, err)
	}
	err := s.write(ctx, 0, func(w *writeConn) error {
		res, err := w.exec(`DELETE FROM channels WHERE id = ?`, id)
		return affectedOne(res, err, "channel")
	})
	return wrapErr("delete channel "+id, err)
}

// deleteChunk is how many events one write deletes.
const deleteChunk = 1000

// deleteEvents deletes the events matching the SQL condition cond, with
// their deliveries and done marks (ON DELETE CASCADE), a chunk per write,
// and returns how many it deleted.
func (s *Store) deleteEvents(ctx context.Context, cond string, args ...any) (int, error) {
	// No ORDER BY: it would make SQLite scan the table in seq order instead
	// of using the index that cond can use.
	q := `DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE ` + cond +
		` LIMIT ` + fmt.Sprint(deleteChunk) + `)`
	total := 0
	for {
		var n int64
		err := s.write(ctx, 0, func(w *writeConn) error {
			res, err := w.exec(q, args...)
			if err != nil {
				return err
			}
			n, err = res.RowsAffected()
			return err
		})
		if err != nil {
			return total, err
		}
		total += int(n)
		if n < deleteChunk {
			return total, nil
		}
	}
}

// affectedOne turns an update of no row into store.ErrNotFound naming what.
func affectedOne(res sql.Result, err error, what string) error {
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("%s: %w", what, store.ErrNotFound)
	}
	return nil
}

// scanner is a *sql.Row or *sql.Rows.
type scanner interface{ Scan(dest ...any) error }

func scanChannel(r scanner) (store.Channel, error) {
	var (
		c         store.Channel
		expiresAt sql.NullInt64
		createdAt int64
		cidrs     string
	)
	err := r.Scan(&c.ID, &c.TeamID, &c.Async, &expiresAt, &createdAt, &c.ReadKeyHash,
		&c.VerifyScheme, &c.VerifySecret, &c.VerifyHeader, &cidrs, &c.RateLimit)
	if err != nil {
		return store.Channel{}, err
	}
	c.ExpiresAt = fromNullMicros(expiresAt)
	c.CreatedAt = fromMicros(createdAt)
	if err := json.Unmarshal([]byte(cidrs), &c.AllowedCIDRs); err != nil {
		return store.Channel{}, fmt.Errorf("channel %s: allowed_cidrs: %w", c.ID, err)
	}
	if len(c.AllowedCIDRs) == 0 {
		c.AllowedCIDRs = nil
	}
	return c, nil
}

func marshalCIDRs(cidrs []string) (string, error) {
	if len(cidrs) == 0 {
		return "[]", nil
	}
	b, err := json.Marshal(cidrs)
	return string(b), err
}
