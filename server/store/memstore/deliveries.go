package memstore

import (
	"context"
	"fmt"
	"slices"

	"github.com/hookrelay/hookrelay/server/store"
)

// RecordProgress writes the worker's report at once, as store.Store
// documents: all of it, or nothing when a delivery id is taken.
func (s *Store) RecordProgress(ctx context.Context, p store.Progress) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	op := fmt.Sprintf("record progress of group %d", p.GroupID)
	if err := s.usable(ctx); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	ids := make(map[string]bool, len(p.Deliveries))
	for _, d := range p.Deliveries {
		if s.deliveryIDs[d.ID] || ids[d.ID] {
			return fmt.Errorf("%s: delivery id %s taken: %w", op, d.ID, store.ErrConflict)
		}
		ids[d.ID] = true
	}
	g := s.groups[p.GroupID] // nil when gone: its deliveries are still kept
	if g != nil {
		g.advance(p.DoneThrough)
		if !p.SeenAt.IsZero() {
			g.g.LastSeenAt = storedTime(p.SeenAt)
		}
	}
	for _, d := range p.Deliveries {
		ev, ok := s.events[d.EventID]
		if !ok {
			continue // deleted, or its append failed
		}
		s.record(ev, d, p.GroupID)
		// A mark at or below DoneThrough would be redundant. Only Pending
		// reads marks, and only for events of the group's own channel.
		if d.Done && g != nil && g.g.ChannelID == ev.e.ChannelID && ev.e.Seq > g.g.DoneThrough {
			g.done[ev.e.Seq] = true
		}
	}
	return nil
}

// record stores one delivery of ev and updates its summary. The caller
// holds s.mu for writing.
func (s *Store) record(ev *event, d store.Delivery, groupID int64) {
	d.GroupID = groupID
	d.EventSeq, d.ChannelID = ev.e.Seq, ev.e.ChannelID
	d.StartedAt = storedTimeOrNow(d.StartedAt)
	d.ResponseHeaders = cloneHeaders(d.ResponseHeaders)
	d.ResponseBody = cloneBody(d.ResponseBody)
	ev.deliveries = append(ev.deliveries, d)
	s.deliveryIDs[d.ID] = true

	e := &ev.e
	e.Attempts++
	if d.Status > 0 {
		e.LastStatus = d.Status
	}
	if d.Status > 0 || (d.Done && d.Error == "") {
		e.DeliveredAny = true
	}
}

// Deliveries lists the attempts of one event, oldest (StartedAt) first and
// in the order recorded among equals; none for an unknown event.
func (s *Store) Deliveries(ctx context.Context, eventID string) ([]store.Delivery, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.usable(ctx); err != nil {
		return nil, fmt.Errorf("deliveries of event %s: %w", eventID, err)
	}
	ev, ok := s.events[eventID]
	if !ok || len(ev.deliveries) == 0 {
		return nil, nil
	}
	ds := make([]store.Delivery, len(ev.deliveries))
	for i, d := range ev.deliveries {
		d.ResponseHeaders = cloneHeaders(d.ResponseHeaders)
		d.ResponseBody = cloneBody(d.ResponseBody)
		ds[i] = d
	}
	slices.SortStableFunc(ds, func(a, b store.Delivery) int { return a.StartedAt.Compare(b.StartedAt) })
	return ds, nil
}
