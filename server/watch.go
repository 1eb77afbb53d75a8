package server

import (
	"fmt"
	"sync"
)

// A watcher is one open request that follows a channel's new events: a
// long-poll, a live stream of the inspector, a smee-compatible event
// stream. Each registers with the hub on behalf of the principal that
// opened it (addWatcher) and leaves with unwatch. The hub ends watchers
// when what they stand on goes away: their token is revoked, their
// channel's read key replaced or the channel deleted, or the relay stops.
// An ended watcher's done channel is closed and endReason says why; its
// handler then answers and returns at once, whatever it was waiting for.
// endWatchers is the one way to end them from outside their handlers.

// Why a watcher ended.
const (
	endDraining       = "draining"        // the relay stops: answer what there is, then end
	endTokenRevoked   = "token_revoked"   // the token (or read key) that opened it no longer counts
	endChannelDeleted = "channel_deleted" // its channel is gone
)

// watcher is told when a channel gets a new event. A live stream's watcher
// also gets typed messages in live (stream.go); a smee-compatible stream's
// gets the channel's new events, confirmed in order by the channel's feed,
// in smee (smeestream.go, smeefeed.go).
type watcher struct {
	channelID string
	owner     string        // principal.TokenID of the credential it was opened with; "" when none
	ch        chan struct{} // capacity 1: something new
	live      *liveQueue    // nil but for the inspector's live streams
	smee      *smeeQueue    // nil but for smee-compatible streams

	done    chan struct{} // closed by end
	endOnce sync.Once
	code    string // set before done is closed: endDraining, ...
	reason  string // a sentence for the user
}

// newWatcher returns a watcher of a channel for owner; set live or smee
// before adding it.
func newWatcher(channelID, owner string) *watcher {
	return &watcher{channelID: channelID, owner: owner, ch: make(chan struct{}, 1), done: make(chan struct{})}
}

// wake tells the watcher's owner to look again. It never blocks.
func (w *watcher) wake() {
	select {
	case w.ch <- struct{}{}:
	default:
	}
}

// end ends the watcher once, for a reason (code is endDraining, ...);
// later calls are ignored. Streams that can say goodbye are told why.
func (w *watcher) end(code, reason string) {
	w.endOnce.Do(func() {
		w.code, w.reason = code, reason
		close(w.done)
		if w.smee != nil {
			w.smee.end(reason)
		}
		w.wake()
	})
}

// endReason returns why the watcher ended; call it after done is closed.
func (w *watcher) endReason() (code, reason string) { return w.code, w.reason }

// watch registers a long-poll's watcher for the channel's new events.
func (h *hub) watch(channelID, owner string) (*watcher, error) {
	return h.addWatcher(newWatcher(channelID, owner))
}

// tooManyWatchers is addWatcher's error when the principal already holds
// max_streams_per_token watchers.
type tooManyWatchers struct{ n int }

func (e tooManyWatchers) Error() string {
	return fmt.Sprintf("this token already has %d live streams and long-polls open, the relay's max_streams_per_token; close one first", e.n)
}

// addWatcher registers w, unless its principal already holds the relay's
// MaxStreamsPerToken; unwatch ends the registration. A watcher added while
// the relay drains is ended at once.
func (h *hub) addWatcher(w *watcher) (*watcher, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if n := h.watching[w.owner]; n >= h.relay.cfg.MaxStreamsPerToken {
		return nil, tooManyWatchers{n}
	}
	h.watching[w.owner]++
	if h.watchers[w.channelID] == nil {
		h.watchers[w.channelID] = make(map[*watcher]struct{})
	}
	h.watchers[w.channelID][w] = struct{}{}
	select {
	case <-h.stopping:
		w.end(endDraining, "the relay is stopping")
	default:
	}
	return w, nil
}

func (h *hub) unwatch(w *watcher) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.watchers[w.channelID][w]; !ok {
		return
	}
	delete(h.watchers[w.channelID], w)
	if len(h.watchers[w.channelID]) == 0 {
		delete(h.watchers, w.channelID)
	}
	if h.watching[w.owner]--; h.watching[w.owner] <= 0 {
		delete(h.watching, w.owner)
	}
}

// endWatchers ends the watchers (of any channel) that match and returns
// how many.
func (h *hub) endWatchers(match func(*watcher) bool, code, reason string) int {
	h.mu.Lock()
	var victims []*watcher
	for _, ws := range h.watchers {
		for w := range ws {
			if match(w) {
				victims = append(victims, w)
			}
		}
	}
	h.mu.Unlock()
	for _, w := range victims {
		w.end(code, reason)
	}
	return len(victims)
}

// endAccess ends what a principal stops being allowed to follow: every
// agent session and watcher opened with owner (a principal.TokenID). It
// returns how many tunnels it closed.
func (h *hub) endAccess(owner, reason string) (tunnels int) {
	h.endWatchers(func(w *watcher) bool { return w.owner == owner }, endTokenRevoked, reason)
	return h.closeSessions(func(a *agentSession) bool { return a.principal.TokenID == owner }, endTokenRevoked, reason)
}

// endChannel ends the agent sessions and watchers of a channel that is
// gone, telling them why (code is a protocol error code for the agents).
func (h *hub) endChannel(channelID, code, reason string) {
	h.endWatchers(func(w *watcher) bool { return w.channelID == channelID }, endChannelDeleted, reason)
	h.closeSessions(func(a *agentSession) bool { return a.subscribes(channelID) }, code, reason)
}
