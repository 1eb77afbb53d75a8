package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hookrelay/hookrelay/server/store"
)

// CreateTeam stores a new team; store.ErrConflict if the id or the name
// exists. A zero CreatedAt is set to now.
func (s *Store) CreateTeam(ctx context.Context, t store.Team) error {
	return s.call(ctx, "create team "+t.Name, func(ctx context.Context) error {
		_, err := s.pool.Exec(ctx, `INSERT INTO teams (id, name, created_at) VALUES ($1, $2, $3)`,
			t.ID, t.Name, nowOr(t.CreatedAt))
		return constraintErr(err, "team id or name taken", "")
	})
}

// GetTeam returns the team with that id.
func (s *Store) GetTeam(ctx context.Context, id string) (store.Team, error) {
	return s.getTeam(ctx, "get team "+id, `id = $1`, id)
}

// TeamByName returns the team with that name.
func (s *Store) TeamByName(ctx context.Context, name string) (store.Team, error) {
	return s.getTeam(ctx, "get team "+name, `name = $1`, name)
}

func (s *Store) getTeam(ctx context.Context, op, cond string, arg any) (store.Team, error) {
	return queryRow(ctx, s, op, "team", scanTeam, `SELECT id, name, created_at FROM teams WHERE `+cond, arg)
}

// ListTeams lists every team by name.
func (s *Store) ListTeams(ctx context.Context) ([]store.Team, error) {
	return queryRows(ctx, s, "list teams", scanTeam, `SELECT id, name, created_at FROM teams ORDER BY name`)
}

func scanTeam(r pgx.CollectableRow) (store.Team, error) {
	var t store.Team
	err := r.Scan(&t.ID, &t.Name, &t.CreatedAt)
	t.CreatedAt = t.CreatedAt.UTC()
	return t, err
}

const tokenColumns = `id, team_id, role, name, hash, created_at, expires_at, last_used_at, revoked`

// CreateToken stores a new token; store.ErrConflict if the id or the hash
// exists. A zero CreatedAt is set to now.
func (s *Store) CreateToken(ctx context.Context, t store.Token) error {
	return s.call(ctx, "create token "+t.ID, func(ctx context.Context) error {
		_, err := s.pool.Exec(ctx, `INSERT INTO tokens (`+tokenColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
			t.ID, t.TeamID, string(t.Role), t.Name, t.Hash, nowOr(t.CreatedAt),
			nullTime(t.ExpiresAt), nullTime(t.LastUsedAt), t.Revoked)
		return constraintErr(err, "token id or hash taken", "")
	})
}

// TokenByHash finds a token by the hash of its secret, revoked or expired
// ones too (uses the unique index on hash).
func (s *Store) TokenByHash(ctx context.Context, hash string) (store.Token, error) {
	return s.getToken(ctx, "find token by hash", `hash = $1`, hash)
}

// GetToken returns the token with that id.
func (s *Store) GetToken(ctx context.Context, id string) (store.Token, error) {
	return s.getToken(ctx, "get token "+id, `id = $1`, id)
}

func (s *Store) getToken(ctx context.Context, op, cond string, arg any) (store.Token, error) {
	return queryRow(ctx, s, op, "token", scanToken, `SELECT `+tokenColumns+` FROM tokens WHERE `+cond, arg)
}

// ListTokens lists the tokens of a team, oldest first; "*" lists all and
// "" the relay-wide ones.
func (s *Store) ListTokens(ctx context.Context, teamID string) ([]store.Token, error) {
	return queryRows(ctx, s, "list tokens", scanToken, `SELECT `+tokenColumns+` FROM tokens
		WHERE $1 = '*' OR team_id = $1 ORDER BY created_at, id`, teamID)
}

// RevokeToken marks the token revoked.
func (s *Store) RevokeToken(ctx context.Context, id string) error {
	n, err := s.exec(ctx, "revoke token "+id, `UPDATE tokens SET revoked = true WHERE id = $1`, id)
	return oneRow(n, err, "revoke token "+id, "token")
}

// TouchToken sets the token's LastUsedAt.
func (s *Store) TouchToken(ctx context.Context, id string, at time.Time) error {
	n, err := s.exec(ctx, "touch token "+id, `UPDATE tokens SET last_used_at = $1 WHERE id = $2`, nullTime(at), id)
	return oneRow(n, err, "touch token "+id, "token")
}

func scanToken(r pgx.CollectableRow) (store.Token, error) {
	var (
		t                   store.Token
		role                string
		expiresAt, lastUsed *time.Time
	)
	if err := r.Scan(&t.ID, &t.TeamID, &role, &t.Name, &t.Hash, &t.CreatedAt, &expiresAt, &lastUsed,
		&t.Revoked); err != nil {
		return store.Token{}, err
	}
	t.Role = store.Role(role)
	t.CreatedAt = t.CreatedAt.UTC()
	t.ExpiresAt = fromNullTime(expiresAt)
	t.LastUsedAt = fromNullTime(lastUsed)
	return t, nil
}
