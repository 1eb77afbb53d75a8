package dispatch

import (
	"context"
	"sync"
	"time"

	"github.com/hookrelay/hookrelay/protocol"
)

// Cluster is what the dispatcher needs of the relay nodes sharing a store
// (see /work/notes/CLUSTER.md): a signal that an event was committed on
// some node, claims that make one node deliver each event once per group,
// and a way to hand a sync sender's answer to the node where it waits.
// Single is the one-node implementation; server/cluster holds the
// PostgreSQL one; MemCluster is an in-memory fake of several nodes.
type Cluster interface {
	// ID names this node.
	ID() string
	// PublishEvent tells the other nodes that an event was committed here.
	PublishEvent(ctx context.Context, ev Event) error
	// Claim tries to take seqs of a group for this node for lease. A seq
	// this node already holds is renewed and reported won.
	Claim(ctx context.Context, groupID int64, seqs []int64, lease time.Duration) ([]Claim, error)
	// Renew extends this node's claims while their deliveries run.
	Renew(ctx context.Context, groupID int64, seqs []int64, lease time.Duration) error
	// Finish marks claims done: other nodes count them as delivered.
	Finish(ctx context.Context, groupID int64, seqs []int64) error
	// Release hands claims back: claimable by any node at once.
	Release(ctx context.Context, groupID int64, seqs []int64) error
	// PostAnswer hands a sync sender's answer to node toNode, which is
	// told through its Handler's RemoteAnswer.
	PostAnswer(ctx context.Context, toNode, eventID string, a Answer) error
	// TakeAnswer reads and forgets an answer posted to this node.
	TakeAnswer(ctx context.Context, eventID string) (Answer, bool, error)
	// Subscribe registers h for what happens on other nodes.
	Subscribe(h Handler)
}

// Event says that an event was committed on node Origin.
type Event struct {
	ChannelID string
	EventID   string
	Seq       int64
	Origin    string
	// Waiting: a sync sender on node Origin waits for the event's first
	// outcome.
	Waiting bool
}

// ClaimState is the outcome of a claim.
type ClaimState int

// Claim states.
const (
	ClaimWon  ClaimState = iota // this node holds it until Until
	ClaimHeld                   // another node's lease runs until Until
	ClaimDone                   // some node finished it
)

// Claim is the state of one seq after Cluster.Claim.
type Claim struct {
	Seq   int64
	State ClaimState
	Until time.Time
}

// Answer is the first outcome of a delivery, for a sync sender: the app's
// status, headers and body, or the agent's error code and message.
type Answer struct {
	Status  int
	Headers []protocol.Header
	Body    []byte
	ErrCode string
	ErrMsg  string
}

// Handler hears what happens on other nodes.
type Handler interface {
	// RemoteEvent: an event was committed on another node.
	RemoteEvent(Event)
	// RemoteAnswer: an answer for a waiter on this node was posted; take
	// it with TakeAnswer.
	RemoteAnswer(eventID string)
	// Resync: the signal was lost and is back; rescan the store.
	Resync()
}

// Single is the Cluster of one node: every claim is won, publishing tells
// no one.
func Single(nodeID string) Cluster { return &single{id: nodeID} }

type single struct {
	id string

	mu      sync.Mutex
	answers map[string]Answer // posted to this node (never happens alone, kept for the contract)
	handler Handler
}

func (s *single) ID() string                                                 { return s.id }
func (s *single) PublishEvent(context.Context, Event) error                  { return nil }
func (s *single) Renew(context.Context, int64, []int64, time.Duration) error { return nil }
func (s *single) Finish(context.Context, int64, []int64) error               { return nil }
func (s *single) Release(context.Context, int64, []int64) error              { return nil }

func (s *single) Claim(_ context.Context, _ int64, seqs []int64, lease time.Duration) ([]Claim, error) {
	until := time.Now().Add(lease)
	out := make([]Claim, len(seqs))
	for i, seq := range seqs {
		out[i] = Claim{Seq: seq, State: ClaimWon, Until: until}
	}
	return out, nil
}

func (s *single) PostAnswer(_ context.Context, _ string, eventID string, a Answer) error {
	s.mu.Lock()
	if s.answers == nil {
		s.answers = make(map[string]Answer)
	}
	s.answers[eventID] = a
	h := s.handler
	s.mu.Unlock()
	if h != nil {
		h.RemoteAnswer(eventID)
	}
	return nil
}

func (s *single) TakeAnswer(_ context.Context, eventID string) (Answer, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.answers[eventID]
	delete(s.answers, eventID)
	return a, ok, nil
}

func (s *single) Subscribe(h Handler) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.handler = h
}
