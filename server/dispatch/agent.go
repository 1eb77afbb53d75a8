package dispatch

import (
	"context"
	"errors"

	"github.com/hookrelay/hookrelay/protocol"
)

// Agent is a connected agent as the dispatcher sees it. The relay's tunnel
// sessions implement it; unit tests use fakes.
type Agent interface {
	// ID is the agent's session id, unique on this node.
	ID() string
	// TryAcquire takes one of the agent's delivery slots, if one is free
	// and the agent still takes deliveries (it is not stopping).
	TryAcquire() bool
	// Release gives back a slot taken by TryAcquire.
	Release()
	// FreeSlots counts the agent's free delivery slots.
	FreeSlots() int
	// Deliver runs one delivery and returns the agent's answer; body holds
	// req.BodyLength bytes and is not kept. Target failures come back as a
	// response with Error set. An error means there is no answer: it wraps
	// ErrAgentGone (the tunnel failed; try again), ErrAgentStopping (the
	// agent refused to start it: not an attempt) or ErrUndeliverable (the
	// protocol cannot carry the event; retrying cannot help).
	Deliver(ctx context.Context, req *protocol.DeliveryRequest, body []byte) (*protocol.DeliveryResponse, []byte, error)
	// GroupState tells the agent how one of its groups is doing (the
	// target is down and the group paused, or back); it must not block.
	GroupState(s GroupState)
}

// Errors an Agent's Deliver wraps.
var (
	// ErrAgentGone marks failures of the tunnel rather than of the target.
	ErrAgentGone = errors.New("agent disconnected during the delivery")
	// ErrAgentStopping marks a delivery the agent refused to start because
	// it is shutting down: not an attempt, and the agent gets no more.
	ErrAgentStopping = errors.New("agent is stopping")
	// ErrUndeliverable marks an event the protocol cannot carry.
	ErrUndeliverable = errors.New("event cannot be delivered")
)
