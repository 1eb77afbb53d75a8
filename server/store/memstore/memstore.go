// Package memstore implements store.Store in memory: maps and slices behind
// one mutex, nothing on disk. It is the fake kept next to the interface, for
// tests that need a real store without a file, and the baseline that shows
// what durability costs (see e2e's BenchmarkThroughputStoreVsMemory).
//
// It keeps every rule of the store.Store contract (storetest passes against
// it) except durability: an event "committed" by AppendEvent lives only as
// long as the process. Values are copied in and out, so a caller can neither
// change stored state through a slice it passed or got back nor see later
// changes through one.
package memstore

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/hookrelay/hookrelay/server/store"
)

// Store is a store.Store in memory. Create it with New; it is safe for
// concurrent use.
type Store struct {
	limits store.Limits // with defaults; never changes

	mu sync.RWMutex
	// Everything below is guarded by mu.
	closed      bool
	channels    map[string]*channel
	events      map[string]*event // by event id
	all         []*event          // every event, by seq (ListEvents without a channel)
	groups      map[int64]*group
	deliveryIDs map[string]bool // ids of the deliveries of every stored event
	teams       map[string]store.Team
	teamNames   map[string]string // team name → id
	tokens      map[string]store.Token
	tokenHashes map[string]string // token hash → id
	lastSeq     int64             // highest seq assigned; never reused
	lastGroupID int64             // highest group id assigned; never reused
}

// channel is a stored channel with what hangs off it.
type channel struct {
	c      store.Channel
	events []*event // by seq, oldest first
	groups []*group // by id, oldest first
}

// event is a stored event. e.Body is never nil and e.Headers is nil when
// there are none; neither is shared with a caller.
type event struct {
	e          store.Event
	deliveries []store.Delivery // in the order recorded
	gone       bool             // deleted; set so s.all can be compacted in one pass
}

// group is a stored delivery group.
type group struct {
	g store.Group
	// done holds the seqs above g.DoneThrough of the channel's events that
	// are done for the group; marks at or below DoneThrough are dropped when
	// it rises.
	done map[int64]bool
}

var _ store.Store = (*Store)(nil)

// errClosed is returned by every call after Close.
var errClosed = fmt.Errorf("memstore is closed: %w", store.ErrUnavailable)

// New returns an empty Store that enforces limits (zero fields take
// store's defaults).
func New(limits store.Limits) *Store {
	return &Store{
		limits:      limits.WithDefaults(),
		channels:    make(map[string]*channel),
		events:      make(map[string]*event),
		groups:      make(map[int64]*group),
		deliveryIDs: make(map[string]bool),
		teams:       make(map[string]store.Team),
		teamNames:   make(map[string]string),
		tokens:      make(map[string]store.Token),
		tokenHashes: make(map[string]string),
	}
}

// Close drops the stored state; later calls fail with an error wrapping
// store.ErrUnavailable. Calling it again is harmless.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.channels, s.events, s.all, s.groups, s.deliveryIDs = nil, nil, nil, nil, nil
	s.teams, s.teamNames, s.tokens, s.tokenHashes = nil, nil, nil, nil
	return nil
}

// Ping reports whether the store can be written: until Close, it can.
func (s *Store) Ping(ctx context.Context) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.usable(ctx); err != nil {
		return fmt.Errorf("ping store: %w", err)
	}
	return nil
}

// usable fails once the store is closed or when ctx is done, as a store
// on a database would; every method checks it first, holding s.mu.
func (s *Store) usable(ctx context.Context) error {
	if s.closed {
		return errClosed
	}
	return ctx.Err()
}

// Times are kept to the microsecond, in UTC, as the database stores do.

// storedTime returns t as a store keeps it; the zero time stays zero.
func storedTime(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return time.UnixMicro(t.UnixMicro()).UTC()
}

// storedTimeOrNow returns t as a store keeps it, or the current time when t
// is zero.
func storedTimeOrNow(t time.Time) time.Time {
	if t.IsZero() {
		t = time.Now()
	}
	return storedTime(t)
}

// cloneHeaders copies hs; an empty list becomes nil, as the database
// stores return it.
func cloneHeaders(hs []store.Header) []store.Header {
	if len(hs) == 0 {
		return nil
	}
	return append([]store.Header(nil), hs...)
}

// cloneBody copies b; the copy is never nil (nil means "not loaded").
func cloneBody(b []byte) []byte {
	return append([]byte{}, b...)
}
