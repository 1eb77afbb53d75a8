package server

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/hookrelay/hookrelay/server/cluster"
	"github.com/hookrelay/hookrelay/server/store"
)

// What the relay's other nodes tell this one, for what follows a channel
// without delivering (the dispatcher subscribes on its own): an event
// committed on another node wakes this node's long-polls and smee feeds of
// its channel, and shows on its live streams; a plain replay asked of this
// node goes to its groups here. And what this node tells them about its
// agents: the registry (cluster.Node.RegisterAgent) follows the hub's
// sessions, so that a channel's agents list shows every node's.
//
// On a relay alone (cluster.Local) nothing comes in, and the registry is
// this node's own sessions.

// remote is the relay's cluster.Handler for watchers, feeds and replays.
// Its methods run on the cluster's listening goroutine and never block:
// what needs the store goes to remoteLoop.
type remote struct {
	r     *Relay
	alone bool                // r.cluster is cluster.Local
	live  chan liveItem       // for this node's live streams, in the order heard
	plays chan cluster.Replay // replays asked of this node, to load and hand over
	kick  chan struct{}       // capacity 1: the hub's sessions changed; sync the registry

	mu        sync.Mutex // guards elsewhere
	elsewhere map[string]presence
}

// presence is whether a channel had agents on other nodes, as read at.
type presence struct {
	has bool
	at  time.Time
}

// Presence of agents on other nodes is read from the registry at most once
// a second per channel, and remembered for at most maxPresence channels.
const (
	presenceTTL = time.Second
	maxPresence = 10000
)

// agentsElsewhere reports whether another node holds an agent of the
// channel, so that a sync sender here waits for the answer it will post.
// What it read is kept for presenceTTL: an agent that just connected
// elsewhere may miss a webhook's sync answer (the webhook is queued and
// delivered all the same). A registry that cannot be read says no.
func (rm *remote) agentsElsewhere(ctx context.Context, channelID string) bool {
	if rm.alone {
		return false
	}
	now := time.Now()
	rm.mu.Lock()
	p, ok := rm.elsewhere[channelID]
	rm.mu.Unlock()
	if ok && now.Sub(p.at) < presenceTTL {
		return p.has
	}
	recs, err := rm.r.cluster.Agents(ctx, channelID)
	if err != nil {
		rm.r.log.Warn("cluster: read the agents of other nodes", "channel", channelID, "err", err)
		return false
	}
	has := slices.ContainsFunc(recs, func(a cluster.AgentRecord) bool { return a.Node != rm.r.cluster.ID() })
	rm.mu.Lock()
	defer rm.mu.Unlock()
	if len(rm.elsewhere) >= maxPresence {
		for id, p := range rm.elsewhere {
			if now.Sub(p.at) >= presenceTTL {
				delete(rm.elsewhere, id)
			}
		}
		if len(rm.elsewhere) >= maxPresence {
			clear(rm.elsewhere)
		}
	}
	rm.elsewhere[channelID] = presence{has: has, at: now}
	return has
}

// liveItem is an event to load and show, or a message to pass on, for the
// live streams of a channel. They go through one queue so that a stream
// shows an event before its deliveries, as the other node recorded them.
type liveItem struct {
	ev  cluster.Event
	msg *cluster.StreamMessage
}

// remoteQueue bounds the events and replays waiting for remoteLoop; a live
// stream whose event did not fit is told to resync.
const remoteQueue = 1024

// agentsSyncInterval is how often the registry is checked against the
// hub's sessions even when nothing kicked it (a failed write, an agent's
// new subscriptions).
const agentsSyncInterval = 10 * time.Second

func newRemote(r *Relay) *remote {
	_, alone := r.cluster.(*cluster.Local)
	return &remote{r: r, alone: alone, live: make(chan liveItem, remoteQueue), plays: make(chan cluster.Replay, 64),
		kick: make(chan struct{}, 1), elsewhere: make(map[string]presence)}
}

// RemoteEvent wakes the channel's long-polls and smee feed (both read the
// store) and queues the event for its live streams.
func (rm *remote) RemoteEvent(ev cluster.Event) {
	h := rm.r.hub
	h.mu.Lock()
	for w := range h.watchers[ev.ChannelID] {
		if w.smee == nil && w.live == nil {
			w.wake()
		}
	}
	if f := h.feeds[ev.ChannelID]; f != nil {
		f.nudge()
	}
	h.mu.Unlock()
	if len(h.liveWatchers(ev.ChannelID)) == 0 {
		return
	}
	rm.queueLive(liveItem{ev: ev}, ev.ChannelID)
}

// queueLive queues it for the live streams, or tells them to resync when
// the queue is full.
func (rm *remote) queueLive(it liveItem, channelID string) {
	select {
	case rm.live <- it:
	default:
		rm.r.hub.resyncLive(channelID)
	}
}

// RemoteAnswer is the dispatcher's business.
func (rm *remote) RemoteAnswer(string) {}

// Resync: notifications were lost. Long-polls and feeds look at the store
// again, and live streams tell their pages to read the API again.
func (rm *remote) Resync() {
	h := rm.r.hub
	h.mu.Lock()
	channels := slices.Collect(maps.Keys(h.watchers))
	for _, ws := range h.watchers {
		for w := range ws {
			if w.smee == nil && w.live == nil {
				w.wake()
			}
		}
	}
	for _, f := range h.feeds {
		f.nudge()
	}
	h.mu.Unlock()
	for _, id := range channels {
		h.resyncLive(id)
	}
}

// RemoteStream queues another node's stream message for this node's live
// streams of the channel.
func (rm *remote) RemoteStream(m cluster.StreamMessage) {
	if len(rm.r.hub.liveWatchers(m.ChannelID)) == 0 {
		return
	}
	rm.queueLive(liveItem{msg: &m}, m.ChannelID)
}

// RemoteReplay queues a replay another node asked of this one.
func (rm *remote) RemoteReplay(rp cluster.Replay) {
	select {
	case rm.plays <- rp:
	default:
		rm.r.log.Warn("cluster: a replay asked by another node was dropped: too many at once", "event", rp.EventID, "group", rp.Group)
	}
}

// agentsChanged asks remoteLoop to sync the registry. It never blocks.
func (rm *remote) agentsChanged() {
	select {
	case rm.kick <- struct{}{}:
	default:
	}
}

// loop loads what the handler queued and keeps the registry in step with
// the hub's sessions, until the relay closes.
func (rm *remote) loop() {
	defer rm.r.wg.Done()
	r := rm.r
	resync := time.NewTicker(agentsSyncInterval)
	defer resync.Stop()
	registered := make(map[agentKey]bool)
	for {
		select {
		case <-r.ctx.Done():
			rm.unregisterAll(registered)
			return
		case it := <-rm.live:
			if m := it.msg; m != nil {
				r.hub.pushLive(m.ChannelID, m.Name, func() any { return m.Data })
				continue
			}
			ev := it.ev
			stored, err := r.store.GetEvent(r.ctx, ev.EventID)
			if err != nil {
				if r.ctx.Err() == nil {
					r.log.Warn("cluster: load an event of another node for the live streams", "event", ev.EventID, "err", err)
					r.hub.resyncLive(ev.ChannelID)
				}
				continue
			}
			r.hub.publishLive(&stored)
		case rp := <-rm.plays:
			ev, err := r.store.GetEvent(r.ctx, rp.EventID)
			if err != nil {
				r.log.Warn("cluster: load an event to replay for another node", "event", rp.EventID, "err", err)
				continue
			}
			if len(r.hub.d.Replay(rp.ChannelID, rp.Group, ev)) == 0 {
				r.log.Warn("cluster: another node asked for a replay to a group with no agent here", "event", rp.EventID, "group", rp.Group)
			}
		case <-rm.kick:
			rm.syncAgents(registered)
		case <-resync.C:
			rm.syncAgents(registered)
		}
	}
}

// agentKey is one session's subscription to one group.
type agentKey struct{ session, channel, group string }

// syncAgents registers the hub's sessions not yet registered and
// unregisters those gone; what fails is tried again at the next sync.
func (rm *remote) syncAgents(registered map[agentKey]bool) {
	r := rm.r
	ctx, cancel := context.WithTimeout(r.ctx, 10*time.Second)
	defer cancel()
	now := make(map[agentKey]agentInfo)
	for _, ch := range r.hub.d.LiveChannels() {
		for _, a := range r.hub.sessionsOf(ch) {
			now[agentKey{a.SessionID, ch, a.Group}] = a
		}
	}
	gone := make(map[string]bool)
	for k := range registered {
		if _, ok := now[k]; !ok {
			gone[k.session] = true
		}
	}
	for session := range gone {
		if err := r.cluster.UnregisterAgent(ctx, session); err != nil {
			r.log.Warn("cluster: unregister agent", "session", session, "err", err)
			continue
		}
		for k := range registered {
			if k.session == session {
				delete(registered, k) // its other subscriptions still here are registered again below
			}
		}
	}
	for k, a := range now {
		if registered[k] {
			continue
		}
		info, _ := json.Marshal(a) // agentInfo always encodes
		if err := r.cluster.RegisterAgent(ctx, cluster.AgentRecord{SessionID: k.session, ChannelID: k.channel, Group: k.group, Info: info}); err != nil {
			r.log.Warn("cluster: register agent", "session", k.session, "err", err)
			continue
		}
		registered[k] = true
	}
}

// unregisterAll forgets this node's sessions as the relay closes, with a
// short bound: the store may be gone, and a node not seen for a while
// leaves the lists anyway.
func (rm *remote) unregisterAll(registered map[agentKey]bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	done := make(map[string]bool)
	for k := range registered {
		if !done[k.session] {
			done[k.session] = true
			if err := rm.r.cluster.UnregisterAgent(ctx, k.session); err != nil {
				rm.r.log.Warn("cluster: unregister agent", "session", k.session, "err", err)
				return
			}
		}
	}
}

// clusterAgentJSON is an agent as the agents list shows it: with the node
// that holds its tunnel.
type clusterAgentJSON struct {
	agentInfo
	Node string `json:"node"`
}

// channelAgentList lists the agents of a channel on every node: this
// node's from the hub (live figures), the others' from the registry (as
// they were when they subscribed; last_seen is when their node was last
// heard from). A registry that cannot be read leaves this node's alone,
// with partial set.
func (r *Relay) channelAgentList(ctx context.Context, channelID string) (agents []clusterAgentJSON, partial bool) {
	self := r.cluster.ID()
	agents = []clusterAgentJSON{}
	for _, a := range r.hub.sessionsOf(channelID) {
		agents = append(agents, clusterAgentJSON{agentInfo: a, Node: self})
	}
	recs, err := r.cluster.Agents(ctx, channelID)
	if err != nil {
		r.log.Warn("cluster: list the agents of other nodes", "channel", channelID, "err", err)
		return agents, true
	}
	for _, rec := range recs {
		if rec.Node == self {
			continue
		}
		var a agentInfo
		if err := json.Unmarshal(rec.Info, &a); err != nil {
			r.log.Warn("cluster: an agent record that does not decode", "session", rec.SessionID, "node", rec.Node, "err", err)
		}
		a.SessionID, a.Group, a.LastSeen = rec.SessionID, rec.Group, rec.LastSeen
		agents = append(agents, clusterAgentJSON{agentInfo: a, Node: rec.Node})
	}
	return agents, false
}

// countAgentsElsewhere adds the agents other nodes hold to the channels'
// counts (this node's sessions are counted already), as channelAgentList
// lists them, in one call to the registry. When it cannot be read the
// counts stay this node's (logged).
func (r *Relay) countAgentsElsewhere(ctx context.Context, views []channelJSON) {
	if r.remote.alone || len(views) == 0 {
		return
	}
	ids := make([]string, len(views))
	at := make(map[string]int, len(views))
	for i, v := range views {
		ids[i] = v.ID
		at[v.ID] = i
	}
	counts, err := r.cluster.AgentCounts(ctx, ids)
	if err != nil {
		r.log.Warn("cluster: count the agents of other nodes", "channels", len(ids), "err", err)
		return
	}
	for _, n := range counts {
		if i, ok := at[n.ChannelID]; ok && n.Node != r.cluster.ID() {
			views[i].Agents += n.Count
		}
	}
}

// remoteReplays asks other nodes to replay ev to the groups of its channel
// that have agents there but none here (only group, when named). Each group
// is asked of one node. It returns the names of the groups asked.
func (r *Relay) remoteReplays(ctx context.Context, ev store.Event, group string, local []string) []string {
	recs, err := r.cluster.Agents(ctx, ev.ChannelID)
	if err != nil {
		r.log.Warn("cluster: list the agents of other nodes for a replay", "event", ev.ID, "err", err)
		return nil
	}
	asked := make(map[string]bool)
	var names []string
	for _, rec := range recs {
		if rec.Node == r.cluster.ID() || (group != "" && rec.Group != group) || slices.Contains(local, rec.Group) || asked[rec.Group] {
			continue
		}
		if err := r.cluster.RequestReplay(ctx, rec.Node, cluster.Replay{ChannelID: ev.ChannelID, EventID: ev.ID, Group: rec.Group}); err != nil {
			r.log.Warn("cluster: ask another node for a replay", "event", ev.ID, "node", rec.Node, "err", err)
			continue
		}
		asked[rec.Group] = true
		names = append(names, rec.Group)
	}
	return names
}

// resyncLive tells the channel's live streams that they missed messages:
// their pages read the API again.
func (h *hub) resyncLive(channelID string) {
	for _, w := range h.liveWatchers(channelID) {
		w.live.markDropped()
		w.wake()
	}
}

// markDropped makes the queue's next take report a drop.
func (q *liveQueue) markDropped() {
	q.mu.Lock()
	q.dropped = true
	q.mu.Unlock()
}

// nudge wakes the feed to list the store again. It never blocks.
func (f *smeeFeed) nudge() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// announceLive hands a live stream message to the other nodes' streams of
// the channel. A delivery's error can be long: it is cut to fit a
// notification (the whole of it is read from the API).
func (r *Relay) announceLive(channelID, name string, ld liveDelivery) {
	if r.remote.alone {
		return // nobody to tell: skip the encoding
	}
	b, err := json.Marshal(ld)
	for err == nil && len(b) > cluster.MaxStreamData && ld.Error != "" {
		ld.Error = truncateUTF8(ld.Error, max(0, len(ld.Error)-(len(b)-cluster.MaxStreamData)-3))
		b, err = json.Marshal(ld)
	}
	if err != nil {
		r.log.Error("encode live message", "err", err)
		return
	}
	r.cluster.PublishStream(cluster.StreamMessage{ChannelID: channelID, Name: name, Data: b})
}
