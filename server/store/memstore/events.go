package memstore

import (
	"context"
	"fmt"
	"slices"
	"sort"

	"github.com/hookrelay/hookrelay/server/store"
)

// defaultListLimit is ListEvents' limit when none is given.
const defaultListLimit = 50

// StartAppend stores the event at once and sets e.Seq (and e.ReceivedAt
// when zero, e.State when empty, e.Size); the Commit it returns is already
// settled. As with a database store, an append that fails for its channel
// or id fails through the Commit and still uses up a seq; StartAppend
// itself fails, leaving e as it was, only when the store is closed or ctx
// is done.
func (s *Store) StartAppend(ctx context.Context, e *store.Event) (*store.Commit, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(ctx); err != nil {
		return nil, fmt.Errorf("append event %s: %w", e.ID, err)
	}
	commit, settle := store.NewCommit()
	s.lastSeq++
	e.Seq = s.lastSeq
	e.ReceivedAt = storedTimeOrNow(e.ReceivedAt)
	if e.State == "" {
		e.State = store.EventAccepted
	}
	e.Size = len(e.Body)
	settle(s.append(e))
	return commit, nil
}

// append stores e, whose Seq and defaults are set. The caller holds s.mu.
func (s *Store) append(e *store.Event) error {
	ch, ok := s.channels[e.ChannelID]
	if !ok {
		return fmt.Errorf("append event %s: channel %s: %w", e.ID, e.ChannelID, store.ErrNotFound)
	}
	if _, ok := s.events[e.ID]; ok {
		return fmt.Errorf("append event %s: event id taken: %w", e.ID, store.ErrConflict)
	}
	stored := *e
	stored.Headers = cloneHeaders(e.Headers)
	stored.Body = cloneBody(e.Body)
	stored.LastStatus, stored.Attempts, stored.DeliveredAny, stored.GroupAttempts = 0, 0, false, 0
	ev := &event{e: stored}
	s.events[stored.ID] = ev
	ch.events = append(ch.events, ev) // seqs are assigned under s.mu, so both stay sorted
	s.all = append(s.all, ev)
	if stored.State == store.EventRejected {
		s.trimRejected(ch, ev)
	}
	return nil
}

// trimRejected drops the channel's oldest rejected events until the caps
// of s.limits hold, keeping newest (the event just appended) whatever its
// size. The caller holds s.mu for writing.
func (s *Store) trimRejected(ch *channel, newest *event) {
	count, bytes := 0, int64(0)
	over := func(ev *event) bool {
		count++
		bytes += int64(ev.e.Size)
		return (s.limits.RejectedEvents >= 0 && count > s.limits.RejectedEvents) ||
			(s.limits.RejectedBytes >= 0 && bytes > s.limits.RejectedBytes)
	}
	drop := make(map[*event]bool)
	for i := len(ch.events) - 1; i >= 0; i-- {
		if ev := ch.events[i]; ev.e.State == store.EventRejected && over(ev) && ev != newest {
			drop[ev] = true
		}
	}
	if len(drop) > 0 {
		s.dropEvents(ch, func(ev *event) bool { return drop[ev] })
		s.compactAll()
	}
}

// AppendEvent appends the event; on error e is left as it was.
func (s *Store) AppendEvent(ctx context.Context, e *store.Event) error {
	return store.AppendAndWait(ctx, e, s.StartAppend)
}

// GetEvent returns the event with that id, with its body.
func (s *Store) GetEvent(ctx context.Context, id string) (store.Event, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.usable(ctx); err != nil {
		return store.Event{}, fmt.Errorf("get event %s: %w", id, err)
	}
	ev, ok := s.events[id]
	if !ok {
		return store.Event{}, fmt.Errorf("get event %s: %w", id, store.ErrNotFound)
	}
	return ev.copy(true), nil
}

// ListEvents returns the events q selects, newest first.
func (s *Store) ListEvents(ctx context.Context, q store.EventQuery) ([]store.Event, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.usable(ctx); err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	candidates := s.all
	if q.ChannelID != "" {
		ch, ok := s.channels[q.ChannelID]
		if !ok {
			return nil, nil
		}
		candidates = ch.events
	}
	end := len(candidates)
	if q.BeforeSeq > 0 {
		end = firstAbove(candidates, q.BeforeSeq-1)
	}
	limit := q.Limit
	if limit <= 0 {
		limit = defaultListLimit
	}
	since, until := storedTime(q.Since), storedTime(q.Until) // compared as stored
	text := store.LowerASCII(q.Text)
	var es []store.Event
	for i := end - 1; i >= 0 && len(es) < limit; i-- {
		e := &candidates[i].e
		if q.AfterSeq > 0 && e.Seq <= q.AfterSeq {
			break
		}
		if (q.Method != "" && e.Method != q.Method) ||
			(q.Status != 0 && e.LastStatus != q.Status) ||
			(!since.IsZero() && e.ReceivedAt.Before(since)) ||
			(!until.IsZero() && !e.ReceivedAt.Before(until)) ||
			(text != "" && !hasText(e, text)) {
			continue
		}
		es = append(es, candidates[i].copy(q.WithBody))
	}
	return es, nil
}

// MaxSeq is the highest seq ever assigned (0 when none), even if that
// event was deleted since.
func (s *Store) MaxSeq(ctx context.Context) (int64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.usable(ctx); err != nil {
		return 0, fmt.Errorf("max seq: %w", err)
	}
	return s.lastSeq, nil
}

// copy returns the stored event with slices of its own; the body only when
// withBody (else nil, "not loaded").
func (ev *event) copy(withBody bool) store.Event {
	e := ev.e
	e.Headers = cloneHeaders(e.Headers)
	if withBody {
		e.Body = cloneBody(e.Body)
	} else {
		e.Body = nil
	}
	return e
}

// firstAbove returns the index of the first of events (sorted by seq)
// whose seq is above seq.
func firstAbove(events []*event, seq int64) int {
	return sort.Search(len(events), func(i int) bool { return events[i].e.Seq > seq })
}

// dropEvents deletes the events of ch for which drop reports true, with
// their deliveries and done marks, and returns how many it deleted. The
// caller holds s.mu for writing and calls compactAll afterwards.
func (s *Store) dropEvents(ch *channel, drop func(*event) bool) int {
	n := 0
	ch.events = slices.DeleteFunc(ch.events, func(ev *event) bool {
		if !drop(ev) {
			return false
		}
		delete(s.events, ev.e.ID)
		for _, d := range ev.deliveries {
			delete(s.deliveryIDs, d.ID)
		}
		for _, g := range ch.groups {
			delete(g.done, ev.e.Seq)
		}
		ev.gone = true
		n++
		return true
	})
	return n
}

// compactAll removes the events dropEvents deleted from s.all.
func (s *Store) compactAll() {
	s.all = slices.DeleteFunc(s.all, func(ev *event) bool { return ev.gone })
}

// hasText reports whether lowerText (lower case) occurs in a header name, a
// header value or the body of e, ignoring the case of ASCII letters.
func hasText(e *store.Event, lowerText string) bool {
	return store.HeadersContain(e.Headers, lowerText) || store.ContainsFold(e.Body, lowerText)
}
