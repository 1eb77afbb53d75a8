// Package dispatch is the relay's dispatcher: the Hub of connected agents
// and one worker per group that has an agent connected, which hands the
// group's events to its agents oldest first, retries failed attempts with
// backoff, and records each attempt with the group's progress in the store
// (the store is the queue; see worker).
//
// It talks to agents through the Agent interface (the relay's tunnel
// sessions, or fakes in tests) and to the other relay nodes sharing the
// store through the Cluster interface: Single for one node, MemCluster as
// an in-memory fake of several, server/cluster on PostgreSQL.
//
// The relay (package server) owns the agents' sessions and what follows a
// channel without delivering (watchers, smee feeds); it tells the Hub of
// each committed event (Publish) and hears of other nodes' events through
// Config.OnRemoteEvent.
package dispatch
