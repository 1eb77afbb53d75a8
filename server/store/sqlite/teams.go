package sqlite

import (
	"context"
	"database/sql"
	"time"

	"github.com/hookrelay/hookrelay/server/store"
)

// CreateTeam stores a new team; store.ErrConflict if the id or the name
// exists. A zero CreatedAt is set to now.
func (s *Store) CreateTeam(ctx context.Context, t store.Team) error {
	err := s.write(ctx, 0, func(w *writeConn) error {
		_, err := w.exec(`INSERT INTO teams (id, name, created_at) VALUES (?, ?, ?)`,
			t.ID, t.Name, micros(nowOr(t.CreatedAt)))
		return constraintErr(err, "team id or name taken", "")
	})
	return wrapErr("create team "+t.Name, err)
}

// GetTeam returns the team with that id.
func (s *Store) GetTeam(ctx context.Context, id string) (store.Team, error) {
	return s.getTeam(ctx, "get team "+id, `id = ?`, id)
}

// TeamByName returns the team with that name.
func (s *Store) TeamByName(ctx context.Context, name string) (store.Team, error) {
	return s.getTeam(ctx, "get team "+name, `name = ?`, name)
}

func (s *Store) getTeam(ctx context.Context, op, cond string, arg any) (store.Team, error) {
	if err := s.readable(); err != nil {
		return store.Team{}, err
	}
	var (
		t         store.Team
		createdAt int64
	)
	err := s.rdb.QueryRowContext(ctx, `SELECT id, name, created_at FROM teams WHERE `+cond, arg).
		Scan(&t.ID, &t.Name, &createdAt)
	if err != nil {
		return store.Team{}, wrapErr(op, notFound(err, "team"))
	}
	t.CreatedAt = fromMicros(createdAt)
	return t, nil
}

// ListTeams lists every team by name.
func (s *Store) ListTeams(ctx context.Context) ([]store.Team, error) {
	if err := s.readable(); err != nil {
		return nil, err
	}
	rows, err := s.rdb.QueryContext(ctx, `SELECT id, name, created_at FROM teams ORDER BY name`)
	if err != nil {
		return nil, wrapErr("list teams", err)
	}
	defer rows.Close()
	var ts []store.Team
	for rows.Next() {
		var (
			t         store.Team
			createdAt int64
		)
		if err := rows.Scan(&t.ID, &t.Name, &createdAt); err != nil {
			return nil, wrapErr("list teams", err)
		}
		t.CreatedAt = fromMicros(createdAt)
		ts = append(ts, t)
	}
	return ts, wrapErr("list teams", rows.Err())
}

const tokenColumns = `id, team_id, role, name, hash, created_at, expires_at, last_used_at, revoked`

// CreateToken stores a new token; store.ErrConflict if the id or the hash
// exists. A zero CreatedAt is set to now.
func (s *Store) CreateToken(ctx context.Context, t store.Token) error {
	err := s.write(ctx, 0, func(w *writeConn) error {
		_, err := w.exec(`INSERT INTO tokens (`+tokenColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			t.ID, t.TeamID, string(t.Role), t.Name, t.Hash, micros(nowOr(t.CreatedAt)),
			nullMicros(t.ExpiresAt), nullMicros(t.LastUsedAt), t.Revoked)
		return constraintErr(err, "token id or hash taken", "")
	})
	return wrapErr("create token "+t.ID, err)
}

// TokenByHash finds a token by the hash of its secret, revoked or expired
// ones too (uses the unique index on hash).
func (s *Store) TokenByHash(ctx context.Context, hash string) (store.Token, error) {
	if err := s.readable(); err != nil {
		return store.Token{}, err
	}
	t, err := scanToken(s.rdb.QueryRowContext(ctx, `SELECT `+tokenColumns+` FROM tokens WHERE hash = ?`, hash))
	return t, wrapErr("find token by hash", notFound(err, "token"))
}

// GetToken returns the token with that id.
func (s *Store) GetToken(ctx context.Context, id string) (store.Token, error) {
	if err := s.readable(); err != nil {
		return store.Token{}, err
	}
	t, err := scanToken(s.rdb.QueryRowContext(ctx, `SELECT `+tokenColumns+` FROM tokens WHERE id = ?`, id))
	return t, wrapErr("get token "+id, notFound(err, "token"))
}

// ListTokens lists the tokens of a team, oldest first; "*" lists all and
// "" the relay-wide ones.
func (s *Store) ListTokens(ctx context.Context, teamID string) ([]store.Token, error) {
	if err := s.readable(); err != nil {
		return nil, err
	}
	q := `SELECT ` + tokenColumns + ` FROM tokens`
	var args []any
	if teamID != "*" {
		q += ` WHERE team_id = ?`
		args = append(args, teamID)
	}
	rows, err := s.rdb.QueryContext(ctx, q+` ORDER BY created_at, id`, args...)
	if err != nil {
		return nil, wrapErr("list tokens", err)
	}
	defer rows.Close()
	var ts []store.Token
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, wrapErr("list tokens", err)
		}
		ts = append(ts, t)
	}
	return ts, wrapErr("list tokens", rows.Err())
}

// RevokeToken marks the token revoked.
func (s *Store) RevokeToken(ctx context.Context, id string) error {
	err := s.write(ctx, 0, func(w *writeConn) error {
		res, err := w.exec(`UPDATE tokens SET revoked = 1 WHERE id = ?`, id)
		return affectedOne(res, err, "token")
	})
	return wrapErr("revoke token "+id, err)
}

// TouchToken sets the token's LastUsedAt.
func (s *Store) TouchToken(ctx context.Context, id string, at time.Time) error {
	err := s.write(ctx, 0, func(w *writeConn) error {
		res, err := w.exec(`UPDATE tokens SET last_used_at = ? WHERE id = ?`, nullMicros(at), id)
		return affectedOne(res, err, "token")
	})
	return wrapErr("touch token "+id, err)
}

func scanToken(r scanner) (store.Token, error) {
	var (
		t                   store.Token
		role                string
		createdAt           int64
		expiresAt, lastUsed sql.NullInt64
	)
	if err := r.Scan(&t.ID, &t.TeamID, &role, &t.Name, &t.Hash, &createdAt, &expiresAt, &lastUsed,
		&t.Revoked); err != nil {
		return store.Token{}, err
	}
	t.Role = store.Role(role)
	t.CreatedAt = fromMicros(createdAt)
	t.ExpiresAt = fromNullMicros(expiresAt)
	t.LastUsedAt = fromNullMicros(lastUsed)
	return t, nil
}
