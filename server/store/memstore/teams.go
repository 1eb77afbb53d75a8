package memstore

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/hookrelay/hookrelay/server/store"
)

// CreateTeam stores a new team; store.ErrConflict if the id or the name
// exists. A zero CreatedAt is set to now.
func (s *Store) CreateTeam(ctx context.Context, t store.Team) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(ctx); err != nil {
		return fmt.Errorf("create team %s: %w", t.Name, err)
	}
	if _, ok := s.teams[t.ID]; ok {
		return fmt.Errorf("create team %s: team id taken: %w", t.Name, store.ErrConflict)
	}
	if _, ok := s.teamNames[t.Name]; ok {
		return fmt.Errorf("create team %s: team name taken: %w", t.Name, store.ErrConflict)
	}
	t.CreatedAt = storedTimeOrNow(t.CreatedAt)
	s.teams[t.ID] = t
	s.teamNames[t.Name] = t.ID
	return nil
}

// GetTeam returns the team with that id.
func (s *Store) GetTeam(ctx context.Context, id string) (store.Team, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.usable(ctx); err != nil {
		return store.Team{}, fmt.Errorf("get team %s: %w", id, err)
	}
	t, ok := s.teams[id]
	if !ok {
		return store.Team{}, fmt.Errorf("get team %s: %w", id, store.ErrNotFound)
	}
	return t, nil
}

// TeamByName returns the team with that name.
func (s *Store) TeamByName(ctx context.Context, name string) (store.Team, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.usable(ctx); err != nil {
		return store.Team{}, fmt.Errorf("get team %s: %w", name, err)
	}
	id, ok := s.teamNames[name]
	if !ok {
		return store.Team{}, fmt.Errorf("get team %s: %w", name, store.ErrNotFound)
	}
	return s.teams[id], nil
}

// ListTeams lists every team by name.
func (s *Store) ListTeams(ctx context.Context) ([]store.Team, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.usable(ctx); err != nil {
		return nil, fmt.Errorf("list teams: %w", err)
	}
	var ts []store.Team
	for _, t := range s.teams {
		ts = append(ts, t)
	}
	slices.SortFunc(ts, func(a, b store.Team) int { return cmp.Compare(a.Name, b.Name) })
	return ts, nil
}

// CreateToken stores a new token; store.ErrConflict if the id or the hash
// exists. A zero CreatedAt is set to now.
func (s *Store) CreateToken(ctx context.Context, t store.Token) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(ctx); err != nil {
		return fmt.Errorf("create token %s: %w", t.ID, err)
	}
	if _, ok := s.tokens[t.ID]; ok {
		return fmt.Errorf("create token %s: token id taken: %w", t.ID, store.ErrConflict)
	}
	if _, ok := s.tokenHashes[t.Hash]; ok {
		return fmt.Errorf("create token %s: token hash taken: %w", t.ID, store.ErrConflict)
	}
	t.CreatedAt = storedTimeOrNow(t.CreatedAt)
	t.ExpiresAt = storedTime(t.ExpiresAt)
	t.LastUsedAt = storedTime(t.LastUsedAt)
	s.tokens[t.ID] = t
	s.tokenHashes[t.Hash] = t.ID
	return nil
}

// TokenByHash finds a token by the hash of its secret, revoked or expired
// ones too.
func (s *Store) TokenByHash(ctx context.Context, hash string) (store.Token, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.usable(ctx); err != nil {
		return store.Token{}, fmt.Errorf("find token by hash: %w", err)
	}
	id, ok := s.tokenHashes[hash]
	if !ok {
		return store.Token{}, fmt.Errorf("find token by hash: %w", store.ErrNotFound)
	}
	return s.tokens[id], nil
}

// GetToken returns the token with that id.
func (s *Store) GetToken(ctx context.Context, id string) (store.Token, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.usable(ctx); err != nil {
		return store.Token{}, fmt.Errorf("get token %s: %w", id, err)
	}
	t, ok := s.tokens[id]
	if !ok {
		return store.Token{}, fmt.Errorf("get token %s: %w", id, store.ErrNotFound)
	}
	return t, nil
}

// ListTokens lists the tokens of a team, oldest first; "*" lists all and
// "" the relay-wide ones.
func (s *Store) ListTokens(ctx context.Context, teamID string) ([]store.Token, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.usable(ctx); err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	var ts []store.Token
	for _, t := range s.tokens {
		if teamID == "*" || t.TeamID == teamID {
			ts = append(ts, t)
		}
	}
	slices.SortFunc(ts, func(a, b store.Token) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.ID, b.ID))
	})
	return ts, nil
}

// RevokeToken marks the token revoked.
func (s *Store) RevokeToken(ctx context.Context, id string) error {
	return s.updateToken(ctx, "revoke", id, func(t *store.Token) { t.Revoked = true })
}

// TouchToken sets the token's LastUsedAt.
func (s *Store) TouchToken(ctx context.Context, id string, at time.Time) error {
	return s.updateToken(ctx, "touch", id, func(t *store.Token) { t.LastUsedAt = storedTime(at) })
}

// updateToken applies update to the stored token with that id.
func (s *Store) updateToken(ctx context.Context, op, id string, update func(*store.Token)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(ctx); err != nil {
		return fmt.Errorf("%s token %s: %w", op, id, err)
	}
	t, ok := s.tokens[id]
	if !ok {
		return fmt.Errorf("%s token %s: %w", op, id, store.ErrNotFound)
	}
	update(&t)
	s.tokens[id] = t
	return nil
}
