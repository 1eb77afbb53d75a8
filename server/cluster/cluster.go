package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/hookrelay/hookrelay/server/dispatch"
)

// The types of the seam with the dispatcher are the dispatcher's (it is
// their consumer, and defines the interface it needs, dispatch.Cluster);
// they are aliased here so that a Node is a dispatch.Cluster as it is.
type (
	// Event says that an event was committed on node Origin; Waiting: a
	// sync sender there waits for its first outcome.
	Event = dispatch.Event
	// ClaimState is the outcome of claiming one event for one group.
	ClaimState = dispatch.ClaimState
	// Claim is the state of one event's claim for a group after Claim.
	Claim = dispatch.Claim
	// Answer is the first outcome of a sync sender's event.
	Answer = dispatch.Answer
	// Handler is told what other nodes did. Its methods are called one at
	// a time from the node's listening goroutine and must not block.
	Handler = dispatch.Handler
)

// Claim states.
const (
	// ClaimWon: this node holds the claim until Until; deliver the event.
	ClaimWon = dispatch.ClaimWon
	// ClaimHeld: another node holds a live lease until Until; look again
	// after it (the holder may die), never skip the event for good.
	ClaimHeld = dispatch.ClaimHeld
	// ClaimDone: some node delivered the event (or gave up on it) for the
	// group; count it as done.
	ClaimDone = dispatch.ClaimDone
)

// AgentRecord is one agent session's subscription to one channel, as every
// node sees it.
type AgentRecord struct {
	SessionID string
	Node      string // filled by RegisterAgent
	ChannelID string
	Group     string
	// Info is what the registering node wants others to show (host,
	// version, since ...), as JSON.
	Info json.RawMessage
	// LastSeen is when the node holding the session last said it is alive
	// (filled by Agents).
	LastSeen time.Time
}

// AgentCount is how many agent records a channel has on one node.
type AgentCount struct {
	ChannelID string
	Node      string
	Count     int
}

// Replay asks the node holding a group's agents to deliver an event again
// (a plain replay: the same event, to one group).
type Replay struct {
	ChannelID string
	EventID   string
	Group     string
}

// ReplayHandler is implemented by a Handler that takes replays other nodes
// ask this one to make (RequestReplay).
type ReplayHandler interface {
	RemoteReplay(Replay)
}

// StreamMessage is a message for the live streams of a channel on every
// node (the inspector's "delivery" messages): a name and a small JSON
// document, at most MaxStreamData bytes.
type StreamMessage struct {
	ChannelID string
	Name      string
	Data      json.RawMessage
}

// MaxStreamData bounds StreamMessage.Data, to keep notifications small.
const MaxStreamData = 2000

// StreamHandler is implemented by a Handler that takes other nodes'
// stream messages (PublishStream).
type StreamHandler interface {
	RemoteStream(StreamMessage)
}

// Node is this relay node's view of the cluster: dispatch.Cluster and what
// the rest of the relay needs (agents, replays, stream messages).
type Node interface {
	// The dispatcher's part: ID, PublishEvent, Claim, Renew, Finish,
	// Release, PostAnswer, TakeAnswer and Subscribe. Here, Renew's error
	// wraps ErrClaimLost (see LostError) for claims another node took
	// after this node's lease expired, and PostAnswer keeps only the first
	// answer for an event. Subscribe accepts several handlers (the
	// dispatcher, the inspector's streams).
	dispatch.Cluster
	// RequestReplay asks node toNode to replay an event to one group.
	RequestReplay(ctx context.Context, toNode string, r Replay) error
	// PublishStream hands a message to the other nodes' live streams of
	// its channel. It never blocks: a message that cannot be sent at once
	// is dropped (and logged), since a stream's page reads the API again
	// on a resync or reload.
	PublishStream(m StreamMessage)
	// RegisterAgent records (or updates) an agent session's subscription
	// on this node; UnregisterAgent removes all of a session's records.
	RegisterAgent(ctx context.Context, a AgentRecord) error
	UnregisterAgent(ctx context.Context, sessionID string) error
	// Agents lists the agents of a channel on every live node.
	Agents(ctx context.Context, channelID string) ([]AgentRecord, error)
	// AgentCounts counts the records Agents would list for each of
	// channelIDs, by node, in one call (a list of channels).
	AgentCounts(ctx context.Context, channelIDs []string) ([]AgentCount, error)
	// Close stops the node's goroutines and releases its connections.
	Close() error
}

// ErrClaimLost is wrapped by Renew's error when claims were taken by
// another node.
var ErrClaimLost = errors.New("claim lost to another node")

// LostError lists the claims Renew could not renew.
type LostError struct {
	GroupID int64
	Seqs    []int64
}

func (e *LostError) Error() string {
	return fmt.Sprintf("group %d: %d claims were taken by another node after their lease ended: %v", e.GroupID, len(e.Seqs), e.Seqs)
}

// Unwrap makes errors.Is(err, ErrClaimLost) true.
func (e *LostError) Unwrap() error { return ErrClaimLost }

// ErrClosed is returned by calls after Close.
var ErrClosed = errors.New("cluster node is closed")

// handlers is a Node's subscribed handlers.
type handlers struct {
	mu   sync.Mutex // guards list
	list []Handler
}

func (hs *handlers) add(h Handler) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	hs.list = append(hs.list, h)
}

func (hs *handlers) each(fn func(Handler)) {
	hs.mu.Lock()
	list := slices.Clone(hs.list)
	hs.mu.Unlock()
	for _, h := range list {
		fn(h)
	}
}

func (hs *handlers) event(ev Event)   { hs.each(func(h Handler) { h.RemoteEvent(ev) }) }
func (hs *handlers) answer(id string) { hs.each(func(h Handler) { h.RemoteAnswer(id) }) }
func (hs *handlers) resync()          { hs.each(func(h Handler) { h.Resync() }) }
func (hs *handlers) stream(m StreamMessage) {
	hs.each(func(h Handler) {
		if sh, ok := h.(StreamHandler); ok {
			sh.RemoteStream(m)
		}
	})
}

func (hs *handlers) replay(r Replay) {
	hs.each(func(h Handler) {
		if rh, ok := h.(ReplayHandler); ok {
			rh.RemoteReplay(r)
		}
	})
}

// DefaultNodeID returns a node id for a process on host name (the host's
// own name when empty): the name and 8 random hex digits, so two processes
// never share one, even on one host or after a restart. Nothing durable
// hangs on a node id: a node's claims expire and its agents leave the
// lists once it is gone.
func DefaultNodeID(name string) string {
	if name == "" {
		name, _ = os.Hostname() // best effort: "" names none
	}
	var b [4]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	if name == "" {
		return "node-" + hex.EncodeToString(b[:])
	}
	return name + "-" + hex.EncodeToString(b[:])
}

// Session is an inspector sign-in session: the credential it was opened
// with (the token's hash; for a read key, its channel) and its end.
type Session struct {
	TokenHash string
	ReadKey   bool
	Channel   string
	Expires   time.Time
}

// Sessions is implemented by a Node whose nodes share sign-in sessions
// (Postgres); a relay alone keeps them in memory. Keys are hashes of the
// cookies, never the cookies.
type Sessions interface {
	CreateSession(ctx context.Context, key string, s Session) error
	// LookupSession returns the session unless it is missing or expired.
	LookupSession(ctx context.Context, key string) (Session, bool, error)
	DeleteSession(ctx context.Context, key string) error
}

var _ dispatch.Cluster = Node(nil)
