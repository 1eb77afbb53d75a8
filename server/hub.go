package server

import (
	"sync"
	"time"

	"github.com/hookrelay/hookrelay/protocol"
	"github.com/hookrelay/hookrelay/server/dispatch"
	"github.com/hookrelay/hookrelay/server/store"
)

// hub is the relay's side of the dispatcher (server/dispatch, which knows
// the connected agents and runs the group workers) plus what follows a
// channel without delivering: watchers (watch.go) and smee feeds
// (smeefeed.go). publish is the one place a new event fans out to all of
// them.
type hub struct {
	relay *Relay
	d     *dispatch.Hub

	mu       sync.Mutex
	watchers map[string]map[*watcher]struct{} // channel id → watchers of new events (watch.go)
	feeds    map[string]*smeeFeed             // channel id → the feed of its smee streams (smeefeed.go)
	watching map[string]int                   // principal's TokenID → watchers registered
	closed   bool
	stopping chan struct{} // closed by drain: long-polls and streams end, new watchers end at once
	stopOnce sync.Once
	wg       sync.WaitGroup // agent sessions and feeds
}

// outcome is what a delivery attempt brought back for a sync sender.
type outcome struct {
	status  int
	headers []protocol.Header
	body    []byte
	errCode string // the agent could not reach its target
	errMsg  string
}

func outcomeOf(a dispatch.Answer) outcome {
	return outcome{status: a.Status, headers: a.Headers, body: a.Body, errCode: a.ErrCode, errMsg: a.ErrMsg}
}

func newHub(r *Relay) *hub {
	h := &hub{
		relay:    r,
		stopping: make(chan struct{}),
		watchers: make(map[string]map[*watcher]struct{}),
		feeds:    make(map[string]*smeeFeed),
		watching: make(map[string]int),
	}
	h.d = dispatch.New(r.ctx, dispatch.Config{
		Store:             r.store,
		Cluster:           r.cfg.Cluster,
		Logger:            r.log,
		MaxAttempts:       r.cfg.MaxAttempts,
		RetryMaxBackoff:   r.cfg.RetryMaxBackoff,
		ResponseTimeout:   r.cfg.ResponseTimeout,
		Lease:             r.cfg.ClaimLease,
		MaxStoredResponse: maxStoredResponse,
		ProbeMin:          r.cfg.ProbeMin,
		ProbeMax:          r.cfg.ProbeMax,
		OnAttempt:         r.metrics.observeDelivery,
		OnRecorded:        h.publishDelivery,
	})
	return h
}

// publish tells everything that follows the channel that a new event is
// committed: its live groups (here and on other nodes), its watchers and
// its smee feed. waiting says a sync sender here waits for its outcome.
func (h *hub) publish(ev *store.Event, waiting bool) {
	h.d.Publish(ev, waiting)
	h.publishLocal(ev)
}

// offer hands a new event to this node's live groups as soon as its seq
// is assigned, before its commit is done (dispatch.Hub.Offer). committed
// tells the rest once the commit succeeded; after a failed commit nothing
// else hears of it.
func (h *hub) offer(ev *store.Event) *dispatch.Offered { return h.d.Offer(ev) }

// committed tells everything that follows the channel, but the groups that
// offer reached, that an offered event is committed: the other nodes, the
// watchers of long-polls, the smee feeds and the inspector's live view. A
// watcher woken before the commit would read the store before the event is
// visible and then sleep past it.
func (h *hub) committed(o *dispatch.Offered, ev *store.Event, waiting bool) {
	h.d.Committed(o, waiting)
	h.publishLocal(ev)
}

// publishLocal tells the channel's watchers and feed.
func (h *hub) publishLocal(ev *store.Event) {
	h.publishLive(ev)
	h.mu.Lock()
	defer h.mu.Unlock()
	for w := range h.watchers[ev.ChannelID] {
		if w.smee == nil { // smee streams hear from their channel's feed
			w.wake()
		}
	}
	if f := h.feeds[ev.ChannelID]; f != nil && ev.State == store.EventAccepted {
		f.offer(ev)
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

// hold counts a job that holds no goroutine while idle (an agent session)
// among the hub's until it calls release; it reports false when the hub is
// closed.
func (h *hub) hold() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false
	}
	h.wg.Add(1)
	return true
}

// release ends a job counted by hold.
func (h *hub) release() { h.wg.Done() }

// sessions lists the connected agent sessions.
func (h *hub) sessions() []*agentSession {
	agents := h.d.Agents()
	out := make([]*agentSession, 0, len(agents))
	for _, a := range agents {
		out = append(out, a.(*agentSession))
	}
	return out
}

// sessionsOf lists the sessions subscribed to a channel (for the API and UI).
func (h *hub) sessionsOf(channelID string) []agentInfo {
	var out []agentInfo
	for _, m := range h.d.Sessions(channelID) {
		a := m.Agent.(*agentSession)
		targets, failing := a.health()
		info := agentInfo{
			SessionID: a.id, Group: m.Group.Name, Host: a.host, Version: a.agentVersion,
			Since: a.since, InFlight: int(a.inflight.Load()), Concurrency: cap(a.slots),
			LastSeen: a.conn.LastHeard().UTC(), Targets: targets, TargetFailing: failing,
			GroupState: protocol.GroupFlowing,
		}
		if st := m.State; st.Paused {
			next := st.NextTry.UTC()
			info.GroupState, info.NextTryAt, info.GroupError = protocol.GroupPaused, &next, st.Reason
			info.NextTryInMS = max(time.Until(next), 0).Milliseconds()
		}
		out = append(out, info)
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
	// GroupState is "paused" while the group's target refuses connections
	// (the relay sends one probe at a time, the next at NextTryAt, and
	// holds the rest back), else "flowing".
	GroupState  string     `json:"group_state"`
	NextTryAt   *time.Time `json:"next_try_at,omitempty"`
	NextTryInMS int64      `json:"next_try_in_ms,omitempty"`
	GroupError  string     `json:"group_error,omitempty"` // paused: the target's last error
}

// closeSessions ends sessions matching keep==false (revoked tokens, deleted channels).
func (h *hub) closeSessions(match func(a *agentSession) bool, code, msg string) int {
	// match runs without h.mu: it may take it.
	var victims []*agentSession
	for _, a := range h.sessions() {
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
	for _, a := range h.sessions() {
		a.draining.Store(true)
		a.sendControl(&protocol.ControlMessage{Type: protocol.TypeDrain, Drain: reason})
	}
}

// closeAll ends every session, worker and feed and waits for their
// goroutines.
func (h *hub) closeAll() {
	h.mu.Lock()
	h.closed = true
	h.mu.Unlock()
	h.d.Close(func(a dispatch.Agent) { a.(*agentSession).close() })
	h.wg.Wait()
}
