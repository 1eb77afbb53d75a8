package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hookrelay/hookrelay/protocol"
	"github.com/hookrelay/hookrelay/server/store"
)

// retentionLoop deletes old events, idle groups and expired channels every
// PruneInterval until the relay closes.
func (r *Relay) retentionLoop() {
	defer r.wg.Done()
	t := time.NewTicker(r.cfg.PruneInterval)
	defer t.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-t.C:
			r.limiters.sweep(time.Now())
			r.anonLimiters.sweep(time.Now())
			if _, err := r.prune(r.ctx, time.Now()); err != nil && r.ctx.Err() == nil {
				r.log.Error("retention", "err", err)
			}
		}
	}
}

// prune runs one retention pass and ends the tunnels of deleted channels.
func (r *Relay) prune(ctx context.Context, now time.Time) (store.PruneResult, error) {
	res, err := r.store.Prune(ctx, store.PruneOptions{
		Now:                 now,
		EventsBefore:        now.Add(-r.cfg.Retention),
		MaxEventsPerChannel: r.cfg.MaxEventsPerChannel,
		GroupsIdleBefore:    now.Add(-r.cfg.Retention),
	})
	if err != nil {
		return res, err
	}
	if res.Events+res.Groups+res.Channels > 0 {
		r.log.Info("retention", "events_deleted", res.Events, "groups_dropped", res.Groups, "channels_expired", res.Channels)
	}
	if res.Channels > 0 {
		r.endExpiredTunnels(ctx)
	}
	return res, nil
}

// endExpiredTunnels disconnects the agents of channels that no longer
// exist (their TTL passed), telling them why.
func (r *Relay) endExpiredTunnels(ctx context.Context) {
	for _, id := range r.hub.d.LiveChannels() {
		_, err := r.store.GetChannel(ctx, id)
		if !errors.Is(err, store.ErrNotFound) {
			continue
		}
		r.channels.forget(id)
		r.limiters.forget(id)
		r.hub.endChannel(id, protocol.CodeChannelNotFound, fmt.Sprintf("channel %q expired (its TTL passed) and was deleted", id))
	}
}
