package server

import (
	"context"
	"errors"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/hookrelay/hookrelay/server/store"
)

// channelCacheTTL bounds how stale ingress's view of a channel may be, and
// how long it remembers that a channel does not exist. Changes made through
// this relay drop the entry at once; the TTL only matters for changes made
// elsewhere (another node, a TTL expiring).
const channelCacheTTL = 2 * time.Second

// channelLookupTimeout bounds one store read shared by concurrent lookups.
const channelLookupTimeout = 10 * time.Second

// channelCache keeps recently read channels for ingress, which would
// otherwise read the store on every webhook. It also remembers for a moment
// that an id names no channel, and merges concurrent lookups of one id into
// one store read, so a flood of webhooks to unknown channels does not reach
// the store.
type channelCache struct {
	lookups singleflight.Group
	now     func() time.Time // the clock; nil: time.Now. Tests stop it to see one TTL.

	mu      sync.Mutex
	entries map[string]cachedChannel // found, by id; at most maxCachedChannels
	missing map[string]time.Time     // not found, by id: when; at most maxCachedChannels
	gen     uint64                   // counts forget calls: a read older than one is not kept
}

type cachedChannel struct {
	ch      store.Channel
	fetched time.Time
}

const maxCachedChannels = 10000

// cached answers from memory when it can.
func (cc *channelCache) cached(id string, now time.Time) (ch store.Channel, ok bool, err error) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if e, ok := cc.entries[id]; ok && now.Sub(e.fetched) < channelCacheTTL {
		return e.ch, true, nil
	}
	if at, ok := cc.missing[id]; ok && now.Sub(at) < channelCacheTTL {
		return store.Channel{}, true, store.ErrNotFound
	}
	return store.Channel{}, false, nil
}

func (cc *channelCache) clock() time.Time {
	if cc.now != nil {
		return cc.now()
	}
	return time.Now()
}

func (cc *channelCache) get(ctx context.Context, st store.Store, id string) (store.Channel, error) {
	if ch, ok, err := cc.cached(id, cc.clock()); ok {
		return ch, err
	}
	// Concurrent lookups of one id wait for one store read, bounded by
	// channelLookupTimeout, which does not end with the request that
	// happened to start it.
	v, err, _ := cc.lookups.Do(id, func() (any, error) {
		// A lookup that started after another one finished finds its answer.
		if ch, ok, err := cc.cached(id, cc.clock()); ok {
			return ch, err
		}
		cc.mu.Lock()
		gen := cc.gen
		cc.mu.Unlock()
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), channelLookupTimeout)
		defer cancel()
		fetched := cc.clock()
		ch, err := st.GetChannel(lctx, id)
		cc.mu.Lock()
		defer cc.mu.Unlock()
		if gen != cc.gen {
			return ch, err // the channel changed meanwhile: answer, keep nothing
		}
		switch {
		case err == nil:
			if cc.entries == nil || len(cc.entries) >= maxCachedChannels {
				cc.entries = make(map[string]cachedChannel)
			}
			cc.entries[id] = cachedChannel{ch: ch, fetched: fetched}
		case errors.Is(err, store.ErrNotFound):
			if cc.missing == nil || len(cc.missing) >= maxCachedChannels {
				cc.missing = make(map[string]time.Time)
			}
			cc.missing[id] = fetched
		}
		return ch, err
	})
	ch, _ := v.(store.Channel)
	return ch, err
}

// forget drops what is known of a channel after it was created, changed or
// deleted.
func (cc *channelCache) forget(id string) {
	cc.mu.Lock()
	delete(cc.entries, id)
	delete(cc.missing, id)
	cc.gen++
	cc.mu.Unlock()
	cc.lookups.Forget(id)
}
