package memstore

import (
	"context"
	"fmt"
	"slices"

	"github.com/hookrelay/hookrelay/server/store"
)

// Prune applies retention and channel TTLs, in this order: channels expired
// at o.Now (with everything of theirs), events received before
// o.EventsBefore, events beyond o.MaxEventsPerChannel per channel, groups
// last seen before o.GroupsIdleBefore. A zero field skips its rule.
// Deleting events deletes their deliveries and done marks; deleting a group
// keeps the deliveries made for it.
func (s *Store) Prune(ctx context.Context, o store.PruneOptions) (store.PruneResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(ctx); err != nil {
		return store.PruneResult{}, fmt.Errorf("prune: %w", err)
	}
	var r store.PruneResult
	// Bounds are compared as stored, to the microsecond.
	if now := storedTime(o.Now); !now.IsZero() {
		for _, ch := range s.channels {
			if !ch.c.ExpiresAt.IsZero() && ch.c.ExpiresAt.Before(now) {
				events, groups := s.deleteChannel(ch)
				r.Channels++
				r.Events += events
				r.Groups += groups
			}
		}
	}
	if before := storedTime(o.EventsBefore); !before.IsZero() {
		for _, ch := range s.channels {
			r.Events += s.dropEvents(ch, func(ev *event) bool { return ev.e.ReceivedAt.Before(before) })
		}
	}
	if o.MaxEventsPerChannel > 0 {
		for _, ch := range s.channels {
			if over := len(ch.events) - o.MaxEventsPerChannel; over > 0 {
				cutoff := ch.events[over-1].e.Seq // the newest event to go
				r.Events += s.dropEvents(ch, func(ev *event) bool { return ev.e.Seq <= cutoff })
			}
		}
	}
	if r.Events > 0 {
		s.compactAll()
	}
	if idle := storedTime(o.GroupsIdleBefore); !idle.IsZero() {
		for _, ch := range s.channels {
			ch.groups = slices.DeleteFunc(ch.groups, func(g *group) bool {
				if !g.g.LastSeenAt.Before(idle) {
					return false
				}
				delete(s.groups, g.g.ID)
				r.Groups++
				return true
			})
		}
	}
	return r, nil
}
