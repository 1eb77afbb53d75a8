package memstore

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/hookrelay/hookrelay/server/store"
)

// CreateChannel stores a new channel; store.ErrConflict if the id exists. A
// zero CreatedAt is set to now.
func (s *Store) CreateChannel(ctx context.Context, c store.Channel) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(ctx); err != nil {
		return fmt.Errorf("create channel %s: %w", c.ID, err)
	}
	if _, ok := s.channels[c.ID]; ok {
		return fmt.Errorf("create channel %s: channel id taken: %w", c.ID, store.ErrConflict)
	}
	c.CreatedAt = storedTimeOrNow(c.CreatedAt)
	s.channels[c.ID] = &channel{c: storedChannel(c)}
	return nil
}

// GetChannel returns the channel with that id.
func (s *Store) GetChannel(ctx context.Context, id string) (store.Channel, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.usable(ctx); err != nil {
		return store.Channel{}, fmt.Errorf("get channel %s: %w", id, err)
	}
	ch, ok := s.channels[id]
	if !ok {
		return store.Channel{}, fmt.Errorf("get channel %s: %w", id, store.ErrNotFound)
	}
	return copyChannel(ch.c), nil
}

// UpdateChannel replaces every field of the channel but ID and CreatedAt.
func (s *Store) UpdateChannel(ctx context.Context, c store.Channel) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(ctx); err != nil {
		return fmt.Errorf("update channel %s: %w", c.ID, err)
	}
	ch, ok := s.channels[c.ID]
	if !ok {
		return fmt.Errorf("update channel %s: %w", c.ID, store.ErrNotFound)
	}
	c.CreatedAt = ch.c.CreatedAt
	ch.c = storedChannel(c)
	return nil
}

// ListChannels lists the channels of a team, oldest first; "*" lists all.
func (s *Store) ListChannels(ctx context.Context, teamID string) ([]store.Channel, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.usable(ctx); err != nil {
		return nil, fmt.Errorf("list channels: %w", err)
	}
	var cs []store.Channel
	for _, ch := range s.channels {
		if teamID == "*" || ch.c.TeamID == teamID {
			cs = append(cs, copyChannel(ch.c))
		}
	}
	slices.SortFunc(cs, func(a, b store.Channel) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.ID, b.ID))
	})
	return cs, nil
}

// DeleteChannel deletes the channel with its events, groups, deliveries
// and done marks.
func (s *Store) DeleteChannel(ctx context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(ctx); err != nil {
		return fmt.Errorf("delete channel %s: %w", id, err)
	}
	ch, ok := s.channels[id]
	if !ok {
		return fmt.Errorf("delete channel %s: %w", id, store.ErrNotFound)
	}
	s.deleteChannel(ch)
	s.compactAll()
	return nil
}

// deleteChannel deletes ch with everything of it and returns how many
// events and groups went with it. The caller holds s.mu for writing and
// calls compactAll afterwards.
func (s *Store) deleteChannel(ch *channel) (events, groups int) {
	events = s.dropEvents(ch, func(*event) bool { return true })
	for _, g := range ch.groups {
		delete(s.groups, g.g.ID)
	}
	delete(s.channels, ch.c.ID)
	return events, len(ch.groups)
}

// storedChannel returns c as it is kept: times to the microsecond, its
// CIDR list copied (nil when empty).
func storedChannel(c store.Channel) store.Channel {
	c.ExpiresAt = storedTime(c.ExpiresAt)
	c.CreatedAt = storedTime(c.CreatedAt)
	return copyChannel(c)
}

// copyChannel returns c with a CIDR list of its own (nil when empty).
func copyChannel(c store.Channel) store.Channel {
	if len(c.AllowedCIDRs) == 0 {
		c.AllowedCIDRs = nil
	} else {
		c.AllowedCIDRs = slices.Clone(c.AllowedCIDRs)
	}
	return c
}
