package memstore

import (
	"context"
	"fmt"
	"time"

	"github.com/hookrelay/hookrelay/server/store"
)

// defaultPendingLimit is Pending's limit when none is given.
const defaultPendingLimit = 100

// EnsureGroup returns the channel's group with that name, creating it when
// missing, as store.Store documents.
func (s *Store) EnsureGroup(ctx context.Context, channelID, name string, from store.From) (store.Group, error) {
	op := fmt.Sprintf("ensure group %s/%s", channelID, name)
	if from != store.FromNow && from != store.FromResume {
		return store.Group{}, fmt.Errorf("%s: unknown starting point %q", op, from)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(ctx); err != nil {
		return store.Group{}, fmt.Errorf("%s: %w", op, err)
	}
	ch, ok := s.channels[channelID]
	if !ok {
		return store.Group{}, fmt.Errorf("%s: channel: %w", op, store.ErrNotFound)
	}
	// FromResume starts before the channel's oldest event (0 does that),
	// FromNow after everything committed so far.
	var start int64
	if from == store.FromNow {
		start = s.lastSeq
	}
	now := storedTime(time.Now())
	for _, g := range ch.groups {
		if g.g.Name == name {
			g.advance(start)
			g.g.LastSeenAt = now
			return g.g, nil
		}
	}
	s.lastGroupID++
	g := &group{
		g: store.Group{ID: s.lastGroupID, ChannelID: channelID, Name: name, DoneThrough: start,
			CreatedAt: now, LastSeenAt: now},
		done: make(map[int64]bool),
	}
	ch.groups = append(ch.groups, g)
	s.groups[g.g.ID] = g
	return g.g, nil
}

// ListGroups lists the channel's groups, oldest first.
func (s *Store) ListGroups(ctx context.Context, channelID string) ([]store.Group, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.usable(ctx); err != nil {
		return nil, fmt.Errorf("list groups: %w", err)
	}
	ch, ok := s.channels[channelID]
	if !ok {
		return nil, nil
	}
	var gs []store.Group
	for _, g := range ch.groups {
		gs = append(gs, g.g)
	}
	return gs, nil
}

// Pending returns a page of the group's backlog and the channel's
// horizon, as store.Store documents.
func (s *Store) Pending(ctx context.Context, q store.PendingQuery) (store.PendingPage, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	g, err := s.group(ctx, "pending events of", q.GroupID)
	if err != nil {
		return store.PendingPage{}, err
	}
	limit := q.Limit
	if limit <= 0 {
		limit = defaultPendingLimit
	}
	events := s.channels[g.g.ChannelID].events
	var page store.PendingPage
	if len(events) > 0 {
		page.Horizon = events[len(events)-1].e.Seq
	}
	for _, ev := range events[firstAbove(events, max(q.AfterSeq, g.g.DoneThrough)):] {
		if ev.e.State != store.EventAccepted || g.done[ev.e.Seq] {
			continue
		}
		e := ev.copy(q.MaxBody <= 0 || ev.e.Size <= q.MaxBody)
		for _, d := range ev.deliveries {
			if d.GroupID == q.GroupID {
				e.GroupAttempts++
			}
		}
		page.Events = append(page.Events, e)
		if len(page.Events) == limit {
			break
		}
	}
	return page, nil
}

// group returns the group with that id for op, or an error saying why
// not. The caller holds s.mu.
func (s *Store) group(ctx context.Context, op string, groupID int64) (*group, error) {
	if err := s.usable(ctx); err != nil {
		return nil, fmt.Errorf("%s group %d: %w", op, groupID, err)
	}
	g, ok := s.groups[groupID]
	if !ok {
		return nil, fmt.Errorf("%s group %d: %w", op, groupID, store.ErrNotFound)
	}
	return g, nil
}

// advance raises DoneThrough to seq, never lowering it, and drops the done
// marks it now covers.
func (g *group) advance(seq int64) {
	if seq <= g.g.DoneThrough {
		return
	}
	g.g.DoneThrough = seq
	for marked := range g.done {
		if marked <= seq {
			delete(g.done, marked)
		}
	}
}
