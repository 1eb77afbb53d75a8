package dispatch

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/hookrelay/hookrelay/server/store"
)

// Defaults for Config fields left zero.
const (
	DefaultMaxAttempts       = 20
	DefaultRetryMaxBackoff   = 5 * time.Minute
	DefaultResponseTimeout   = 10 * time.Second
	DefaultMaxStoredResponse = 64 << 10
	DefaultLease             = 30 * time.Second
	DefaultProbeMin          = time.Second
	DefaultProbeMax          = 30 * time.Second
)

// Config configures a Hub. Store is required.
type Config struct {
	Store store.Store
	// Cluster is the set of nodes sharing Store; nil: Single("").
	Cluster Cluster
	Logger  *slog.Logger
	// MaxAttempts caps delivery attempts per event and group.
	MaxAttempts int
	// RetryMaxBackoff caps the wait between attempts.
	RetryMaxBackoff time.Duration
	// ResponseTimeout is how long a sync sender on another node waits:
	// how long this node remembers to post the answer to it.
	ResponseTimeout time.Duration
	// MaxStoredResponse bounds the response body kept per delivery.
	MaxStoredResponse int
	// Lease is how long a claim lasts unless renewed.
	Lease time.Duration
	// ProbeMin and ProbeMax bound the wait between probes of a paused
	// group (its target refuses connections): it doubles from ProbeMin.
	ProbeMin, ProbeMax time.Duration

	// OnAttempt is called when an attempt ends (metrics); it must not block.
	OnAttempt func(store.Delivery)
	// OnRecorded is called with each attempt once it is stored (the
	// inspector's live streams); it must not block.
	OnRecorded func(store.Delivery)
	// OnRemoteEvent is called after the workers heard of an event
	// committed on another node (watchers, feeds).
	OnRemoteEvent func(Event)
	// OnResync is called after every worker was told to rescan.
	OnResync func()
}

func (c *Config) setDefaults() {
	if c.Cluster == nil {
		c.Cluster = Single("")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.RetryMaxBackoff <= 0 {
		c.RetryMaxBackoff = DefaultRetryMaxBackoff
	}
	if c.ResponseTimeout <= 0 {
		c.ResponseTimeout = DefaultResponseTimeout
	}
	if c.MaxStoredResponse <= 0 {
		c.MaxStoredResponse = DefaultMaxStoredResponse
	}
	if c.Lease <= 0 {
		c.Lease = DefaultLease
	}
	if c.ProbeMin <= 0 {
		c.ProbeMin = DefaultProbeMin
	}
	if c.ProbeMax < c.ProbeMin {
		c.ProbeMax = max(DefaultProbeMax, c.ProbeMin)
	}
}

// Hub knows the connected agents and runs one worker per group that has at
// least one agent connected. It hands new events to the workers of their
// channel, and a delivery's first outcome to the sync sender waiting for
// it, on this node or (through the Cluster) on another.
type Hub struct {
	cfg    Config
	store  store.Store
	node   Cluster
	log    *slog.Logger
	ctx    context.Context // ended by Close: workers stop
	cancel context.CancelFunc

	mu       sync.Mutex
	agents   map[string]*member           // by agent id
	workers  map[int64]*worker            // by group id
	retiring map[int64]*worker            // stopped workers still finishing, by group id
	channels map[string]map[int64]*worker // channel id → its live groups
	waiters  map[string]*Waiter           // event id → sync sender waiting here
	remote   map[string]remoteWait        // event id → a sync sender waiting on another node
	recent   answerCache                  // first outcomes no sender was known to wait for (answers.go)
	tunnels  map[string]int               // key (a token id) → tunnels open or in handshake
	closed   bool
	wg       sync.WaitGroup // workers

	jobs chan func(context.Context) // answers to take or post, off the cluster's goroutine (answers.go)
	bg   sync.WaitGroup             // runJobs goroutines
}

// member is a registered agent and the workers it belongs to.
type member struct {
	agent   Agent
	workers []*worker
}

// remoteWait remembers that a sender on node origin waits for an event.
type remoteWait struct {
	origin string
	since  time.Time
}

// maxRemoteWaits bounds the remembered remote waiters; the oldest are
// dropped first (their senders have timed out by then).
const maxRemoteWaits = 10000

// New returns a Hub whose workers live until ctx ends or Close.
func New(ctx context.Context, cfg Config) *Hub {
	cfg.setDefaults()
	ctx, cancel := context.WithCancel(ctx)
	h := &Hub{
		cfg: cfg, store: cfg.Store, node: cfg.Cluster, log: cfg.Logger, ctx: ctx, cancel: cancel,
		agents:   make(map[string]*member),
		workers:  make(map[int64]*worker),
		retiring: make(map[int64]*worker),
		channels: make(map[string]map[int64]*worker),
		waiters:  make(map[string]*Waiter),
		remote:   make(map[string]remoteWait),
		tunnels:  make(map[string]int),
		jobs:     make(chan func(context.Context), answerJobs),
	}
	h.recent.byID = make(map[string]recentAnswer)
	for range answerRunners {
		h.bg.Add(1)
		go h.runJobs()
	}
	h.node.Subscribe(h)
	return h
}

// Node is the hub's cluster.
func (h *Hub) Node() Cluster { return h.node }

// Close stops taking agents, calls stop for each registered agent (which
// must end it and Unregister it), and waits for the workers to finish.
func (h *Hub) Close(stop func(Agent)) {
	h.mu.Lock()
	h.closed = true
	agents := h.agentsLocked()
	h.mu.Unlock()
	for _, a := range agents {
		stop(a)
	}
	h.wg.Wait()
	h.cancel()
	h.bg.Wait()
}

// HasAgents reports whether a group of the channel has an agent here that
// can take an event now: its group is not paused (its target is down).
func (h *Hub) HasAgents(channelID string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, w := range h.channels[channelID] {
		if w.agentCount() > 0 && !w.state().Paused {
			return true
		}
	}
	return false
}

// Waiter is a sync sender waiting for the first outcome of its event.
type Waiter struct{ ch chan Answer }

// C delivers the first outcome.
func (w *Waiter) C() <-chan Answer { return w.ch }

// AddWaiter registers a sync sender for an event; call it before the event
// is committed, and RemoveWaiter when done.
func (h *Hub) AddWaiter(eventID string) *Waiter {
	w := &Waiter{ch: make(chan Answer, 1)}
	h.mu.Lock()
	h.waiters[eventID] = w
	h.mu.Unlock()
	return w
}

// RemoveWaiter forgets the waiter of an event.
func (h *Hub) RemoveWaiter(eventID string) {
	h.mu.Lock()
	delete(h.waiters, eventID)
	h.mu.Unlock()
}

// Publish tells the channel's live groups, here and on the other nodes,
// that an event is committed; waiting says a sync sender here waits for it.
func (h *Hub) Publish(ev *store.Event, waiting bool) {
	h.Committed(h.Offer(ev), waiting)
}

// Offered is an event handed to this node's workers by Offer, and which
// of them took it, until Committed.
type Offered struct {
	ev      *store.Event
	workers map[*worker]bool
}

// Offer hands an event to this node's live groups of its channel as soon
// as its seq is assigned, before its commit is done: their delivery then
// runs while the store commits. Only this node's workers hear of it now;
// the other nodes read the store, so they hear of it from Committed, and
// never if the commit fails. A worker copes with an event whose commit
// fails: its delivery record is skipped by the store (the event does not
// exist), a retry finds it gone, and its seq is a gap no horizon waits
// for. The caller must not change ev until the commit is done.
//
// An event whose body is larger than the workers keep in memory
// (inlineBodyLimit) is not handed over until Committed: a worker reloads
// such a body from the store at dispatch, and before the commit the store
// has no such event.
func (h *Hub) Offer(ev *store.Event) *Offered {
	o := &Offered{ev: ev}
	if ev.State != store.EventAccepted || len(ev.Body) > inlineBodyLimit {
		return o
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, w := range h.channels[ev.ChannelID] {
		if o.workers == nil {
			o.workers = make(map[*worker]bool, len(h.channels[ev.ChannelID]))
		}
		o.workers[w] = true
		w.offer(ev)
	}
	return o
}

// Handed reports whether Offer handed the event to a worker of this node,
// whose delivery may then have started before the commit.
func (o *Offered) Handed() bool { return len(o.workers) > 0 }

// Committed tells the other nodes that an offered event is committed, and
// hands it to the workers of this node that started since Offer (they
// may have read the store before the commit). No worker gets it twice: a
// second hand-over of an event done and recorded would deliver it again.
// waiting says a sync sender here waits for it.
func (h *Hub) Committed(o *Offered, waiting bool) {
	ev := o.ev
	if ev.State == store.EventAccepted {
		h.mu.Lock()
		for _, w := range h.channels[ev.ChannelID] {
			if !o.workers[w] {
				w.offer(ev)
			}
		}
		h.mu.Unlock()
	}
	err := h.node.PublishEvent(h.ctx, Event{
		ChannelID: ev.ChannelID, EventID: ev.ID, Seq: ev.Seq, Origin: h.node.ID(), Waiting: waiting,
	})
	if err != nil && h.ctx.Err() == nil {
		// The other nodes find it at their next rescan.
		h.log.Warn("publish an event to the other nodes", "event", ev.ID, "err", err)
	}
}

// RemoteEvent takes an event committed on another node (Handler).
func (h *Hub) RemoteEvent(ev Event) {
	h.mu.Lock()
	var early *Answer // delivered here before the notice came (found in a store scan)
	if ev.Waiting && ev.Origin != h.node.ID() {
		if a, ok := h.recent.take(ev.EventID); ok {
			early = &a
		} else {
			h.rememberRemote(ev.EventID, ev.Origin)
		}
	}
	for _, w := range h.channels[ev.ChannelID] {
		// Loaded by id at dispatch; a rejected one is skipped then.
		w.offer(&store.Event{ID: ev.EventID, ChannelID: ev.ChannelID, Seq: ev.Seq, State: store.EventAccepted})
	}
	h.mu.Unlock()
	if early != nil {
		h.later(func(ctx context.Context) { h.postAnswer(ctx, ev.Origin, ev.EventID, *early) })
	}
	if h.cfg.OnRemoteEvent != nil {
		h.cfg.OnRemoteEvent(ev)
	}
}

// rememberRemote notes a remote waiter, dropping the oldest beyond the
// bound. h.mu is held.
func (h *Hub) rememberRemote(eventID, origin string) {
	now := time.Now()
	if len(h.remote) >= maxRemoteWaits {
		for id, rw := range h.remote {
			if now.Sub(rw.since) >= h.cfg.ResponseTimeout {
				delete(h.remote, id)
			}
		}
		for id := range h.remote {
			if len(h.remote) < maxRemoteWaits {
				break
			}
			delete(h.remote, id)
		}
	}
	h.remote[eventID] = remoteWait{origin: origin, since: now}
}

// Resync makes every worker read the store again (Handler).
func (h *Hub) Resync() {
	h.mu.Lock()
	for _, w := range h.workers {
		w.rescan()
	}
	h.mu.Unlock()
	h.takeMissedAnswers()
	if h.cfg.OnResync != nil {
		h.cfg.OnResync()
	}
}

// Register adds an agent and joins it to the workers of its groups. It
// reports false when the hub is closed.
func (h *Hub) Register(a Agent, groups []store.Group) bool {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return false
	}
	h.agents[a.ID()] = &member{agent: a}
	h.mu.Unlock()
	h.Join(a, groups)
	return true
}

// Join adds a registered agent to the workers of groups, starting workers
// as needed.
func (h *Hub) Join(a Agent, groups []store.Group) {
	h.mu.Lock()
	defer h.mu.Unlock()
	m := h.agents[a.ID()]
	if h.closed || m == nil {
		return
	}
	for _, g := range groups {
		w := h.workers[g.ID]
		if w == nil {
			w = newWorker(h, g)
			w.prev = h.retiring[g.ID]
			h.workers[g.ID] = w
			if h.channels[g.ChannelID] == nil {
				h.channels[g.ChannelID] = make(map[int64]*worker)
			}
			h.channels[g.ChannelID][g.ID] = w
			h.wg.Add(1) // done when the worker has finished (end)
			w.notify()
		}
		if w.addAgent(a) {
			m.workers = append(m.workers, w)
		}
	}
}

// Leave removes an agent from its groups for which drop is true.
func (h *Hub) Leave(a Agent, drop func(store.Group) bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	m := h.agents[a.ID()]
	if m == nil {
		return
	}
	kept := m.workers[:0]
	for _, w := range m.workers {
		if drop(w.group) {
			h.detach(a, w)
		} else {
			kept = append(kept, w)
		}
	}
	m.workers = kept
}

// Unregister removes an agent from every group; a worker left without
// agents stops.
func (h *Hub) Unregister(a Agent) {
	h.mu.Lock()
	defer h.mu.Unlock()
	m := h.agents[a.ID()]
	if m == nil || m.agent != a {
		return
	}
	delete(h.agents, a.ID())
	for _, w := range m.workers {
		h.detach(a, w)
	}
}

// detach removes a from w, stopping w when it has no agent left. h.mu is held.
func (h *Hub) detach(a Agent, w *worker) {
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

// retired forgets a worker whose run has returned.
func (h *Hub) retired(w *worker) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.retiring[w.group.ID] == w {
		delete(h.retiring, w.group.ID)
	}
}

// TargetUp says that an agent's targets all answer again (the agent said
// so): its paused groups send their probe now rather than at the end of
// the wait.
func (h *Hub) TargetUp(a Agent) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if m := h.agents[a.ID()]; m != nil {
		for _, w := range m.workers {
			w.probeNow.Store(true)
			w.notify()
		}
	}
}

// Subscribes reports whether the agent receives the channel's events.
func (h *Hub) Subscribes(agentID, channelID string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if m := h.agents[agentID]; m != nil {
		for _, w := range m.workers {
			if w.group.ChannelID == channelID {
				return true
			}
		}
	}
	return false
}

// Member is an agent in one of a channel's groups, as Sessions lists them.
type Member struct {
	Agent Agent
	Group store.Group
	State GroupState
}

// Sessions lists the agents of a channel's groups, with each group's state.
func (h *Hub) Sessions(channelID string) []Member {
	h.mu.Lock()
	ws := make([]*worker, 0, len(h.channels[channelID]))
	for _, w := range h.channels[channelID] {
		ws = append(ws, w)
	}
	h.mu.Unlock()
	var out []Member
	for _, w := range ws {
		st := w.state()
		for _, a := range w.agentList() {
			out = append(out, Member{Agent: a, Group: w.group, State: st})
		}
	}
	return out
}

// Agents lists the registered agents.
func (h *Hub) Agents() []Agent {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.agentsLocked()
}

func (h *Hub) agentsLocked() []Agent {
	out := make([]Agent, 0, len(h.agents))
	for _, m := range h.agents {
		out = append(out, m.agent)
	}
	return out
}

// AgentCount counts the registered agents.
func (h *Hub) AgentCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.agents)
}

// Replay hands ev to the channel's groups here (or the one named) to be
// delivered again and returns the names of the groups that took it.
func (h *Hub) Replay(channelID, group string, ev store.Event) []string {
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

// ReserveTunnel takes one of limit places under key (a token id) for a
// tunnel; it returns how many are taken and whether the place was free.
func (h *Hub) ReserveTunnel(key string, limit int) (int, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := h.tunnels[key]
	if n >= limit {
		return n, false
	}
	h.tunnels[key] = n + 1
	return n, true
}

// ReleaseTunnel gives back a place taken by ReserveTunnel.
func (h *Hub) ReleaseTunnel(key string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.tunnels[key]--; h.tunnels[key] <= 0 {
		delete(h.tunnels, key)
	}
}

// LiveChannels lists the channels that have a group with an agent here.
func (h *Hub) LiveChannels() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	ids := make([]string, 0, len(h.channels))
	for id := range h.channels {
		ids = append(ids, id)
	}
	return ids
}
