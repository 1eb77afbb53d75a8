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

// AppendEvent stores the event and sets e.Seq (and e.ReceivedAt when zero,
// e.State when empty, e.Size). It fails with store.ErrNotFound for an
// unknown channel and store.ErrConflict for a duplicate id, leaving e as it
// was.
func (s *Store) AppendEvent(ctx context.Context, e *store.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(ctx); err != nil {
		return fmt.Errorf("append event %s: %w", e.ID, err)
	}
	ch, ok := s.channels[e.ChannelID]
	if !ok {
		return fmt.Errorf("append event %s: channel %s: %w", e.ID, e.ChannelID, store.ErrNotFound)
	}
	if _, ok := s.events[e.ID]; ok {
		return fmt.Errorf("append event %s: event id taken: %w", e.ID, store.ErrConflict)
	}
	s.lastSeq++
	stored := *e
	stored.Seq = s.lastSeq
	stored.ReceivedAt = storedTimeOrNow(e.ReceivedAt)
	if stored.State == "" {
		stored.State = store.EventAccepted
	}
	stored.Headers = cloneHeaders(e.Headers)
	stored.Body = cloneBody(e.Body)
	stored.Size = len(stored.Body)
	stored.LastStatus, stored.Attempts, stored.DeliveredAny = 0, 0, false
	ev := &event{e: stored}
	s.events[stored.ID] = ev
	ch.events = append(ch.events, ev) // seqs are assigned under s.mu, so both stay sorted
	s.all = append(s.all, ev)
	e.Seq, e.ReceivedAt, e.State, e.Size = stored.Seq, stored.ReceivedAt, stored.State, stored.Size
	return nil
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
	text := lowerASCII(q.Text)
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
	for _, h := range e.Headers {
		if containsFold(h.Name, lowerText) || containsFold(h.Value, lowerText) {
			return true
		}
	}
	return containsFold(e.Body, lowerText)
}

// containsFold reports whether lowerSub occurs in s when ASCII letters of s
// are taken in lower case. Other bytes compare as they are, as SQLite's
// lower() leaves them.
func containsFold[T string | []byte](s T, lowerSub string) bool {
	for i := 0; i+len(lowerSub) <= len(s); i++ {
		j := 0
		for j < len(lowerSub) && lowerByte(s[i+j]) == lowerSub[j] {
			j++
		}
		if j == len(lowerSub) {
			return true
		}
	}
	return false
}

func lowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		b[i] = lowerByte(c)
	}
	return string(b)
}

func lowerByte(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
