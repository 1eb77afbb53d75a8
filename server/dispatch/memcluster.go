package dispatch

import (
	"context"
	"sync"
	"time"
)

// MemCluster is an in-memory Cluster of several nodes in one process, for
// tests: claims with leases, events and answers passed between its nodes.
// It is a fake of server/cluster's PostgreSQL implementation, with the
// same rules.
type MemCluster struct {
	mu       sync.Mutex
	claims   map[claimKey]memClaim
	answers  map[string]map[string]Answer // node → event id → answer
	handlers map[string]Handler           // node → its subscriber
}

type claimKey struct {
	group int64
	seq   int64
}

type memClaim struct {
	node  string
	until time.Time
	done  bool
}

// NewMemCluster returns an empty in-memory cluster.
func NewMemCluster() *MemCluster {
	return &MemCluster{
		claims:   make(map[claimKey]memClaim),
		answers:  make(map[string]map[string]Answer),
		handlers: make(map[string]Handler),
	}
}

// Node returns the Cluster as node id sees it.
func (m *MemCluster) Node(id string) Cluster { return &memNode{m: m, id: id} }

// Claims returns a copy of the claim of one seq: the node holding it,
// whether it is done, and whether there is one.
func (m *MemCluster) ClaimOf(groupID, seq int64) (node string, done, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.claims[claimKey{groupID, seq}]
	return c.node, c.done, ok
}

type memNode struct {
	m  *MemCluster
	id string
}

func (n *memNode) ID() string { return n.id }

func (n *memNode) PublishEvent(_ context.Context, ev Event) error {
	n.m.mu.Lock()
	var hs []Handler
	for id, h := range n.m.handlers {
		if id != n.id {
			hs = append(hs, h)
		}
	}
	n.m.mu.Unlock()
	for _, h := range hs {
		h.RemoteEvent(ev)
	}
	return nil
}

func (n *memNode) Claim(_ context.Context, groupID int64, seqs []int64, lease time.Duration) ([]Claim, error) {
	n.m.mu.Lock()
	defer n.m.mu.Unlock()
	now := time.Now()
	out := make([]Claim, len(seqs))
	for i, seq := range seqs {
		k := claimKey{groupID, seq}
		c, ok := n.m.claims[k]
		switch {
		case ok && c.done:
			out[i] = Claim{Seq: seq, State: ClaimDone}
		case ok && c.node != n.id && c.until.After(now):
			out[i] = Claim{Seq: seq, State: ClaimHeld, Until: c.until}
		default:
			c = memClaim{node: n.id, until: now.Add(lease)}
			n.m.claims[k] = c
			out[i] = Claim{Seq: seq, State: ClaimWon, Until: c.until}
		}
	}
	return out, nil
}

func (n *memNode) Renew(_ context.Context, groupID int64, seqs []int64, lease time.Duration) error {
	n.m.mu.Lock()
	defer n.m.mu.Unlock()
	for _, seq := range seqs {
		k := claimKey{groupID, seq}
		if c, ok := n.m.claims[k]; ok && c.node == n.id && !c.done {
			c.until = time.Now().Add(lease)
			n.m.claims[k] = c
		}
	}
	return nil
}

func (n *memNode) Finish(_ context.Context, groupID int64, seqs []int64) error {
	n.m.mu.Lock()
	defer n.m.mu.Unlock()
	for _, seq := range seqs {
		n.m.claims[claimKey{groupID, seq}] = memClaim{node: n.id, done: true}
	}
	return nil
}

func (n *memNode) Release(_ context.Context, groupID int64, seqs []int64) error {
	n.m.mu.Lock()
	defer n.m.mu.Unlock()
	for _, seq := range seqs {
		k := claimKey{groupID, seq}
		if c, ok := n.m.claims[k]; ok && c.node == n.id && !c.done {
			delete(n.m.claims, k)
		}
	}
	return nil
}

func (n *memNode) PostAnswer(_ context.Context, toNode, eventID string, a Answer) error {
	n.m.mu.Lock()
	if n.m.answers[toNode] == nil {
		n.m.answers[toNode] = make(map[string]Answer)
	}
	n.m.answers[toNode][eventID] = a
	h := n.m.handlers[toNode]
	n.m.mu.Unlock()
	if h != nil {
		h.RemoteAnswer(eventID)
	}
	return nil
}

func (n *memNode) TakeAnswer(_ context.Context, eventID string) (Answer, bool, error) {
	n.m.mu.Lock()
	defer n.m.mu.Unlock()
	a, ok := n.m.answers[n.id][eventID]
	delete(n.m.answers[n.id], eventID)
	return a, ok, nil
}

func (n *memNode) Subscribe(h Handler) {
	n.m.mu.Lock()
	defer n.m.mu.Unlock()
	n.m.handlers[n.id] = h
}
