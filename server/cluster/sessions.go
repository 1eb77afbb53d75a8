package cluster

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
)

var _ Sessions = (*Postgres)(nil)

// CreateSession stores a sign-in session under key.
func (n *Postgres) CreateSession(ctx context.Context, key string, s Session) error {
	return n.call(ctx, "create session", func(ctx context.Context) error {
		_, err := n.pool.Exec(ctx, `INSERT INTO cluster_sessions (key, token_hash, read_key, channel_id, expires)
			VALUES ($1, $2, $3, $4, $5)`, key, s.TokenHash, s.ReadKey, s.Channel, s.Expires)
		return err
	})
}

// LookupSession returns the live session stored under key.
func (n *Postgres) LookupSession(ctx context.Context, key string) (Session, bool, error) {
	var s Session
	found := false
	err := n.call(ctx, "look up session", func(ctx context.Context) error {
		err := n.pool.QueryRow(ctx, `SELECT token_hash, read_key, channel_id, expires FROM cluster_sessions
			WHERE key = $1 AND expires > now()`, key).Scan(&s.TokenHash, &s.ReadKey, &s.Channel, &s.Expires)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		found = err == nil
		return err
	})
	if err != nil || !found {
		return Session{}, false, err
	}
	s.Expires = s.Expires.UTC()
	return s, true, nil
}

// DeleteSession ends the session stored under key, on every node.
func (n *Postgres) DeleteSession(ctx context.Context, key string) error {
	return n.call(ctx, "delete session", func(ctx context.Context) error {
		_, err := n.pool.Exec(ctx, `DELETE FROM cluster_sessions WHERE key = $1`, key)
		return err
	})
}
