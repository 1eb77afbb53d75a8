// Package protocol is hookrelay's wire: a net.Conn over a WebSocket (Conn),
// the yamux session that runs on it (Client, Server, MuxConfig), and the
// frames exchanged on its streams: the control stream (Hello, Welcome,
// Error, ..., as JSON) and one delivery stream per delivery
// (DeliveryRequest, the body, DeliveryResponse, the response body, as
// binary fields; a Frame carries one with its body in as few writes as
// the WebSocket messages allow). SPEC.md in this directory is the written
// contract; keep it true (spec_test.go checks its numbers and examples).
//
// Every decoder checks a frame's length prefix against its limit before
// reading the body, and the decoded value against the rules of SPEC.md
// before returning it; every encoder runs the same checks before writing,
// so a peer never receives what it would refuse.
//
// The package imports no other hookrelay package, so the agent and the relay
// can only meet here.
package protocol

import "time"

// Subprotocol is the WebSocket subprotocol an agent asks for on /tunnel.
const Subprotocol = "hookrelay.v1"

// Version is the protocol version carried in Hello. A relay answers a Hello
// with another version with an Error of code CodeVersionMismatch.
const Version = 2

// Limits of the wire. A frame over its limit is an error that closes the
// stream (delivery) or the session (control).
const (
	// MaxControlFrame bounds one control message.
	MaxControlFrame = 64 << 10
	// MaxHeaderFrame bounds a delivery request or response header frame
	// (the webhook's header list travels in it).
	MaxHeaderFrame = 2 << 20
	// MaxBodyLength bounds the body length a frame may announce. The relay
	// enforces its own, usually smaller, max_body before anything is sent.
	MaxBodyLength = 1 << 30
	// MaxMessage bounds one WebSocket message carrying mux bytes. Conn splits
	// larger writes, so the reader's limit stays small.
	MaxMessage = 64 << 10
)

// Defaults for liveness checks.
const (
	DefaultPingInterval = 20 * time.Second
	DefaultPongTimeout  = 15 * time.Second
)
