package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hookrelay/hookrelay/server/store"
)

const channelColumns = `id, team_id, async, expires_at, created_at, read_key_hash,
	verify_scheme, verify_secret, verify_header, allowed_cidrs, rate_limit`

// CreateChannel stores a new channel; store.ErrConflict if the id exists. A
// zero CreatedAt is set to now.
func (s *Store) CreateChannel(ctx context.Context, c store.Channel) error {
	return s.call(ctx, "create channel "+c.ID, func(ctx context.Context) error {
		_, err := s.pool.Exec(ctx, `INSERT INTO channels (`+channelColumns+`)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
			c.ID, c.TeamID, c.Async, nullTime(c.ExpiresAt), nowOr(c.CreatedAt), c.ReadKeyHash,
			c.VerifyScheme, []byte(c.VerifySecret), c.VerifyHeader, cidrs(c.AllowedCIDRs), c.RateLimit)
		return constraintErr(err, "channel id taken", "")
	})
}

// GetChannel returns the channel with that id.
func (s *Store) GetChannel(ctx context.Context, id string) (store.Channel, error) {
	return queryRow(ctx, s, "get channel "+id, "channel", scanChannel,
		`SELECT `+channelColumns+` FROM channels WHERE id = $1`, id)
}

// UpdateChannel replaces every field of the channel but ID and CreatedAt.
func (s *Store) UpdateChannel(ctx context.Context, c store.Channel) error {
	op := "update channel " + c.ID
	n, err := s.exec(ctx, op, `UPDATE channels SET team_id = $1, async = $2, expires_at = $3,
		read_key_hash = $4, verify_scheme = $5, verify_secret = $6, verify_header = $7,
		allowed_cidrs = $8, rate_limit = $9 WHERE id = $10`,
		c.TeamID, c.Async, nullTime(c.ExpiresAt), c.ReadKeyHash, c.VerifyScheme,
		[]byte(c.VerifySecret), c.VerifyHeader, cidrs(c.AllowedCIDRs), c.RateLimit, c.ID)
	return oneRow(n, err, op, "channel")
}

// ListChannels lists the channels of a team, oldest first; "*" lists all.
func (s *Store) ListChannels(ctx context.Context, teamID string) ([]store.Channel, error) {
	return queryRows(ctx, s, "list channels", scanChannel, `SELECT `+channelColumns+` FROM channels
		WHERE $1 = '*' OR team_id = $1 ORDER BY created_at, id`, teamID)
}

// DeleteChannel deletes the channel with its events, groups, deliveries
// and done marks. The events go in chunks, each its own transaction, so a
// big channel holds no long transaction.
func (s *Store) DeleteChannel(ctx context.Context, id string) error {
	op := "delete channel " + id
	if _, err := s.deleteEvents(ctx, op, "channel_id = $1", id); err != nil {
		return err
	}
	n, err := s.exec(ctx, op, `DELETE FROM channels WHERE id = $1`, id)
	return oneRow(n, err, op, "channel")
}

// deleteChunk is how many events one transaction deletes.
const deleteChunk = 1000

// deleteEvents deletes the events matching the SQL condition cond (on
// events, with $1… for args), with their status, deliveries and done marks
// (ON DELETE CASCADE), a chunk per transaction, and returns how many it
// deleted. Each chunk gets its own QueryTimeout.
func (s *Store) deleteEvents(ctx context.Context, op, cond string, args ...any) (int, error) {
	q := fmt.Sprintf(`DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE %s LIMIT %d)`,
		cond, deleteChunk)
	total := 0
	for {
		n, err := s.exec(ctx, op, q, args...)
		total += int(n)
		if err != nil || n < deleteChunk {
			return total, err
		}
	}
}

// exec runs one statement in its own call (with its own QueryTimeout) and
// returns the number of rows it affected.
func (s *Store) exec(ctx context.Context, op, query string, args ...any) (int64, error) {
	var n int64
	err := s.call(ctx, op, func(ctx context.Context) error {
		tag, err := s.pool.Exec(ctx, query, args...)
		n = tag.RowsAffected()
		return err
	})
	return n, err
}

// oneRow turns a statement that changed no row into store.ErrNotFound
// naming what; err is exec's (already wrapped).
func oneRow(n int64, err error, op, what string) error {
	if err == nil && n == 0 {
		return fmt.Errorf("%s: %s: %w", op, what, store.ErrNotFound)
	}
	return err
}

func scanChannel(r pgx.CollectableRow) (store.Channel, error) {
	var (
		c         store.Channel
		expiresAt *time.Time
		secret    []byte
	)
	err := r.Scan(&c.ID, &c.TeamID, &c.Async, &expiresAt, &c.CreatedAt, &c.ReadKeyHash,
		&c.VerifyScheme, &secret, &c.VerifyHeader, &c.AllowedCIDRs, &c.RateLimit)
	if err != nil {
		return store.Channel{}, err
	}
	c.VerifySecret = string(secret)
	c.ExpiresAt = fromNullTime(expiresAt)
	c.CreatedAt = c.CreatedAt.UTC()
	if len(c.AllowedCIDRs) == 0 {
		c.AllowedCIDRs = nil
	}
	return c, nil
}

// cidrs is the allowed_cidrs value for a list: never NULL.
func cidrs(list []string) []string {
	if list == nil {
		return []string{}
	}
	return list
}
