package memstore

import (
	"context"
	"fmt"
	"slices"

	"github.com/hookrelay/hookrelay/server/store"
)

// RecordDelivery stores one attempt, updates the event's summary and, when
// d.Done, marks the event done for the group. The event's seq and channel
// are taken from the stored event. It fails with store.ErrNotFound when the
// event is gone and store.ErrConflict for a duplicate delivery id; a done
// mark for a group that is gone is skipped.
func (s *Store) RecordDelivery(ctx context.Context, d store.Delivery) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(ctx); err != nil {
		return fmt.Errorf("record delivery %s: %w", d.ID, err)
	}
	ev, ok := s.events[d.EventID]
	if !ok {
		return fmt.Errorf("record delivery %s: event %s: %w", d.ID, d.EventID, store.ErrNotFound)
	}
	if s.deliveryIDs[d.ID] {
		return fmt.Errorf("record delivery %s: delivery id taken: %w", d.ID, store.ErrConflict)
	}
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
	if !d.Done {
		return nil
	}
	// A mark at or below DoneThrough would be redundant. Only Pending reads
	// marks, and only for events of the group's own channel, so a mark for
	// another channel's event could never be seen and is not kept.
	if g, ok := s.groups[d.GroupID]; ok && g.g.ChannelID == e.ChannelID && e.Seq > g.g.DoneThrough {
		g.done[e.Seq] = true
	}
	return nil
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
