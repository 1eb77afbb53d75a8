package cluster

import (
	"context"
	"slices"
	"sync"
	"time"
)

// Local is the Node of a relay alone: it wins every claim, publishes to
// nobody, and keeps answers and agents in memory. A relay on SQLite uses
// it, so the code that speaks to the cluster has one path.
type Local struct {
	id       string
	handlers handlers

	mu      sync.Mutex // guards the fields below
	answers map[string]Answer
	agents  map[string][]AgentRecord // by session id
}

var _ Node = (*Local)(nil)

// NewLocal returns a Node for a relay alone, named id.
func NewLocal(id string) *Local {
	return &Local{id: id, answers: make(map[string]Answer), agents: make(map[string][]AgentRecord)}
}

// ID returns the node's id.
func (l *Local) ID() string { return l.id }

// PublishEvent does nothing: there is no other node.
func (l *Local) PublishEvent(context.Context, Event) error { return nil }

// Claim wins every claim.
func (l *Local) Claim(_ context.Context, _ int64, seqs []int64, lease time.Duration) ([]Claim, error) {
	until := time.Now().Add(lease)
	out := make([]Claim, len(seqs))
	for i, s := range seqs {
		out[i] = Claim{Seq: s, State: ClaimWon, Until: until}
	}
	return out, nil
}

// Renew does nothing: no other node takes claims.
func (l *Local) Renew(context.Context, int64, []int64, time.Duration) error { return nil }

// Finish does nothing: the store records what is done.
func (l *Local) Finish(context.Context, int64, []int64) error { return nil }

// Release does nothing.
func (l *Local) Release(context.Context, int64, []int64) error { return nil }

// PostAnswer keeps the first answer for eventID and tells the handlers.
// toNode can only be this node.
func (l *Local) PostAnswer(_ context.Context, _ string, eventID string, a Answer) error {
	l.mu.Lock()
	_, had := l.answers[eventID]
	if !had {
		l.answers[eventID] = a
	}
	l.mu.Unlock()
	if !had {
		l.handlers.answer(eventID)
	}
	return nil
}

// TakeAnswer reads and deletes the answer posted for eventID.
func (l *Local) TakeAnswer(_ context.Context, eventID string) (Answer, bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	a, ok := l.answers[eventID]
	delete(l.answers, eventID)
	return a, ok, nil
}

// RequestReplay hands the replay to this node's handlers.
func (l *Local) RequestReplay(_ context.Context, _ string, r Replay) error {
	l.handlers.replay(r)
	return nil
}

// PublishStream does nothing: there is no other node.
func (l *Local) PublishStream(StreamMessage) {}

// RegisterAgent records a subscription of an agent session.
func (l *Local) RegisterAgent(_ context.Context, a AgentRecord) error {
	a.Node, a.LastSeen = l.id, time.Now().UTC()
	l.mu.Lock()
	defer l.mu.Unlock()
	recs := slices.DeleteFunc(l.agents[a.SessionID], func(r AgentRecord) bool {
		return r.ChannelID == a.ChannelID && r.Group == a.Group
	})
	l.agents[a.SessionID] = append(recs, a)
	return nil
}

// UnregisterAgent forgets a session.
func (l *Local) UnregisterAgent(_ context.Context, sessionID string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.agents, sessionID)
	return nil
}

// Agents lists the registered agents of a channel.
func (l *Local) Agents(_ context.Context, channelID string) ([]AgentRecord, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []AgentRecord
	now := time.Now().UTC()
	for _, recs := range l.agents {
		for _, r := range recs {
			if r.ChannelID == channelID {
				r.LastSeen = now
				out = append(out, r)
			}
		}
	}
	slices.SortFunc(out, compareAgents)
	return out, nil
}

// AgentCounts counts the agents registered here per channel.
func (l *Local) AgentCounts(_ context.Context, channelIDs []string) ([]AgentCount, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := make(map[string]int)
	for _, recs := range l.agents {
		for _, r := range recs {
			if slices.Contains(channelIDs, r.ChannelID) {
				n[r.ChannelID]++
			}
		}
	}
	var out []AgentCount
	for _, id := range channelIDs {
		if n[id] > 0 {
			out = append(out, AgentCount{ChannelID: id, Node: l.id, Count: n[id]})
			delete(n, id) // an id asked twice is counted once
		}
	}
	return out, nil
}

// Subscribe adds h to the handlers.
func (l *Local) Subscribe(h Handler) { l.handlers.add(h) }

// Close does nothing.
func (l *Local) Close() error { return nil }

// compareAgents orders agent records by session, then group.
func compareAgents(a, b AgentRecord) int {
	if a.SessionID != b.SessionID {
		if a.SessionID < b.SessionID {
			return -1
		}
		return 1
	}
	switch {
	case a.Group < b.Group:
		return -1
	case a.Group > b.Group:
		return 1
	}
	return 0
}
