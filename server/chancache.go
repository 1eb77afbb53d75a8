package server

import (
	"context"
	"sync"
	"time"

	"github.com/hookrelay/hookrelay/server/store"
)

// channelCacheTTL bounds how stale ingress's view of a channel may be.
// Changes made through this relay drop the entry at once; the TTL only
// matters for changes made elsewhere (another node, a TTL expiring).
const channelCacheTTL = 2 * time.Second

// channelCache keeps recently read channels for ingress, which would
// otherwise read the store on every webhook.
type channelCache struct {
	mu      sync.Mutex
	entries map[string]cachedChannel // by id; bounded by maxCachedChannels
}

type cachedChannel struct {
	ch      store.Channel
	fetched time.Time
}

const maxCachedChannels = 10000

func (cc *channelCache) get(ctx context.Context, st store.Store, id string) (store.Channel, error) {
	now := time.Now()
	cc.mu.Lock()
	e, ok := cc.entries[id]
	cc.mu.Unlock()
	if ok && now.Sub(e.fetched) < channelCacheTTL {
		return e.ch, nil
	}
	ch, err := st.GetChannel(ctx, id)
	if err != nil {
		return ch, err
	}
	cc.mu.Lock()
	if cc.entries == nil || len(cc.entries) >= maxCachedChannels {
		cc.entries = make(map[string]cachedChannel)
	}
	cc.entries[id] = cachedChannel{ch: ch, fetched: now}
	cc.mu.Unlock()
	return ch, nil
}

// forget drops a channel after it changed or was deleted.
func (cc *channelCache) forget(id string) {
	cc.mu.Lock()
	delete(cc.entries, id)
	cc.mu.Unlock()
}
