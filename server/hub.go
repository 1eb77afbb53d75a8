package server

import (
	"sync"
	"time"

	"github.com/hookrelay/hookrelay/protocol"
	"github.com/hookrelay/hookrelay/server/store"
)

// hub knows the connected agents and runs one dispatcher (groupWorker) per
// group that has at least one agent connected.
type hub struct {
	relay *Relay

	mu       sync.Mutex
	agents   map[string]*agentSession          // by session id
	workers  map[int64]*groupWorker            // by group id
	retiring map[int64]*groupWorker            // stopped workers still finishing, by group id
	channels map[string]map[int64]*groupWorker // channel id → its live groups
	waiters  map[string]*waiter                // event id → sync sender waiting
	watchers map[string]map[*watcher]struct{}  // channel id → watchers of new events (watch.go)
	feeds    map[string]*smeeFeed              // channel id → the feed of its smee streams (smeefeed.go)
	tunnels  map[string]int                    // principal's TokenID → tunnels open or in handshake
	watching map[string]int                    // principal's TokenID → watchers registered
	closed   bool
	stopping chan struct{} // closed by drain: long-polls and streams end, new watchers end at once
	stopOnce sync.Once
	wg       sync.WaitGroup // agent sessions and workers
}

// waiter is a sync sender waiting for the first outcome of its event.
type waiter struct{ ch chan outcome }

// outcome is what a delivery attempt brought back for a sync sender.
type outcome struct {
	status  int
	headers []protocol.Header
	body    []byte
	errCode string // the agent could not reach its target
	errMsg  string
}

func newHub(r *Relay) *hub {
	return &hub{
		relay:    r,
		agents:   make(map[string]*agentSession),
		workers:  make(map[int64]*groupWorker),
		channels: make(map[string]map[int64]*groupWorker),
		waiters:  make(map[string]*waiter),
		retiring: make(map[int64]*groupWorker),
		stopping: make(chan struct{}),
		watchers: make(map[string]map[*watcher]struct{}),
		feeds:    make(map[string]*smeeFeed),
		tunnels:  make(map[string]int),
		watching: make(map[string]int),
	}
}

func (h *hub) hasAgents(channelID string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, w := range h.channels[channelID] {
		if w.agentCount() > 0 {
			return true
		}
	}
	return false
}

func (h *hub) addWaiter(eventID string) *waiter {
	w := &waiter{ch: make(chan outcome, 1)}
	h.mu.Lock()
	h.waiters[eventID] = w
	h.mu.Unlock()
	return w
}

func (h *hub) removeWaiter(eventID string) {
	h.mu.Lock()
	delete(h.waiters, eventID)
	h.mu.Unlock()
}

// answer hands an outcome to the event's sync sender, if one still waits.
// Only the first outcome is taken.
func (h *hub) answer(eventID string, out outcome) {
	h.mu.Lock()
	w := h.waiters[eventID]
	delete(h.waiters, eventID)
	h.mu.Unlock()
	if w != nil {
		select {
		case w.ch <- out:
		default:
		}
	}
}

// publish tells the channel's live groups that a new event is committed.
func (h *hub) publish(ev *store.Event) {
	h.publishLive(ev)
	h.mu.Lock()
	defer h.mu.Unlock()
	if ev.State == store.EventAccepted {
		for _, w := range h.channels[ev.ChannelID] {
			w.offer(ev)
		}
	}
	for w := range h.watchers[ev.ChannelID] {
		if w.smee == nil { // smee streams hear from their channel's feed
			w.wake()
		}
	}
	if f := h.feeds[ev.ChannelID]; f != nil && ev.State == store.EventAccepted {
		f.offer(ev)
	}
}

// register adds a session and joins it to the workers of its groups.
func (h *hub) register(a *agentSession, groups []store.Group) bool {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return false
	}
	h.agents[a.id] = a
	h.mu.Unlock()
	h.join(a, groups)
	return true
}

// join adds a session to the workers of groups, starting workers as needed.
func (h *hub) join(a *agentSession, groups []store.Group) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	for _, g := range groups {
		w := h.workers[g.ID]
		if w == nil {
			w = newGroupWorker(h.relay, g)
			w.prev = h.retiring[g.ID]
			h.workers[g.ID] = w
			if h.channels[g.ChannelID] == nil {
				h.channels[g.ChannelID] = make(map[int64]*groupWorker)
			}
			h.channels[g.ChannelID][g.ID] = w
			h.wg.Add(1)
			go func() {
				defer h.wg.Done()
				w.run()
			}()
		}
		if w.addAgent(a) {
			a.workers = append(a.workers, w)
		}
	}
}

// leave removes a session from the groups of subs.
func (h *hub) leave(a *agentSession, subs []protocol.Subscription) {
	h.mu.Lock()
	defer h.mu.Unlock()
	kept := a.workers[:0]
	for _, w := range a.workers {
		drop := false
		for _, s := range subs {
			if s.Channel == w.group.ChannelID && (s.Group == "" || s.Group == w.group.Name) {
				drop = true
			}
		}
		if drop {
			h.detach(a, w)
		} else {
			kept = append(kept, w)
		}
	}
	a.workers = kept
}

// unregister removes a session from every group; a worker left without
// agents stops.
func (h *hub) unregister(a *agentSession) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.agents, a.id)
	for _, w := range a.workers {
		h.detach(a, w)
	}
	a.workers = nil
}

// detach removes a from w, stopping w when it has no agent left. h.mu is held.
func (h *hub) detach(a *agentSession, w *groupWorker) {
	if w.removeAgent(a) > 0 {
		return
	}
	w.stop()
	h.retiring[w.group.ID] = w
	delete(h.workers, w.group.ID)
	delete(h.channels[w.group.ChannelID], w.group.ID)
	if len(h.channels[w.group.ChannelID]) == 0 {
		delete(h.channels, w.group.ChannelID)
	}
}

// track runs fn as a goroutine owned by the hub.
func (h *hub) track(fn func()) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false
	}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		fn()
	}()
	return true
}

// sessionsOf lists the sessions subscribed to a channel (for the API and UI).
func (h *hub) sessionsOf(channelID string) []agentInfo {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []agentInfo
	for _, w := range h.channels[channelID] {
		for _, a := range w.agentList() {
			targets, failing := a.health()
			out = append(out, agentInfo{
				SessionID: a.id, Group: w.group.Name, Host: a.host, Version: a.agentVersion,
				Since: a.since, InFlight: int(a.inflight.Load()), Concurrency: cap(a.slots),
				LastSeen: a.conn.LastHeard().UTC(), Targets: targets, TargetFailing: failing,
			})
		}
	}
	return out
}

// agentInfo describes a connected agent of a channel.
type agentInfo struct {
	SessionID   string    `json:"session_id"`
	Group       string    `json:"group"`
	Host        string    `json:"host"`
	Version     string    `json:"version"`
	Since       time.Time `json:"since"`
	InFlight    int       `json:"in_flight"`
	Concurrency int       `json:"concurrency"`
	// LastSeen is when the relay last heard from the agent: any message,
	// WebSocket pings and pongs included (every 20 s on an idle tunnel).
	LastSeen time.Time `json:"last_seen"`
	// Targets is what the agent last said about its targets (health
	// messages, SPEC.md 5.7); absent when it never said (older agents).
	Targets []protocol.TargetHealth `json:"targets,omitempty"`
	// TargetFailing is true when one of Targets is down.
	TargetFailing bool `json:"target_failing"`
}

// closeSessions ends sessions matching keep==false (revoked tokens, deleted channels).
func (h *hub) closeSessions(match func(a *agentSession) bool, code, msg string) int {
	h.mu.Lock()
	agents := make([]*agentSession, 0, len(h.agents))
	for _, a := range h.agents {
		agents = append(agents, a)
	}
	h.mu.Unlock()
	// match runs without h.mu: it may take it (agentSession.subscribes does).
	var victims []*agentSession
	for _, a := range agents {
		if match(a) {
			victims = append(victims, a)
		}
	}
	for _, a := range victims {
		a.sendError(code, msg)
		a.close()
	}
	return len(victims)
}

// drain tells every agent to reconnect (elsewhere) because this relay
// stops, and ends every watcher: graceful shutdown waits for open requests.
func (h *hub) drain(reason string) {
	h.stopOnce.Do(func() { close(h.stopping) })
	h.endWatchers(func(*watcher) bool { return true }, endDraining, "the relay is stopping")
	h.mu.Lock()
	agents := make([]*agentSession, 0, len(h.agents))
	for _, a := range h.agents {
		agents = append(agents, a)
	}
	h.mu.Unlock()
	for _, a := range agents {
		a.draining.Store(true)
		a.sendControl(&protocol.ControlMessage{Type: protocol.TypeDrain, Drain: reason})
	}
}

// closeAll ends every session and worker and waits for their goroutines.
func (h *hub) closeAll() {
	h.mu.Lock()
	h.closed = true
	agents := make([]*agentSession, 0, len(h.agents))
	for _, a := range h.agents {
		agents = append(agents, a)
	}
	h.mu.Unlock()
	for _, a := range agents {
		a.close()
	}
	h.wg.Wait()
}

// agentCount of all connected sessions.
func (h *hub) agentCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.agents)
}

// replay hands ev to the channel's connected groups (or the one named) and
// returns the names of the groups that took it.
func (h *hub) replay(channelID, group string, ev store.Event) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var names []string
	for _, w := range h.channels[channelID] {
		if group != "" && w.group.Name != group {
			continue
		}
		if w.replay(ev) {
			names = append(names, w.group.Name)
		}
	}
	return names
}

// reserveTunnel takes one of a principal's limit places for a tunnel; it
// returns how many it has and whether the place was free.
func (h *hub) reserveTunnel(tokenID string, limit int) (int, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := h.tunnels[tokenID]
	if n >= limit {
		return n, false
	}
	h.tunnels[tokenID] = n + 1
	return n, true
}

// releaseTunnel gives back a place taken by reserveTunnel.
func (h *hub) releaseTunnel(tokenID string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.tunnels[tokenID]--; h.tunnels[tokenID] <= 0 {
		delete(h.tunnels, tokenID)
	}
}

// retired forgets a worker whose run has returned.
func (h *hub) retired(w *groupWorker) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.retiring[w.group.ID] == w {
		delete(h.retiring, w.group.ID)
	}
}

// liveChannels lists the channels that have a group with an agent.
func (h *hub) liveChannels() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	ids := make([]string, 0, len(h.channels))
	for id := range h.channels {
		ids = append(ids, id)
	}
	return ids
}
