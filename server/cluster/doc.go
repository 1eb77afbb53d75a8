// Package cluster is what relay nodes sharing one PostgreSQL database tell
// each other, and what they share besides the store: which node delivers
// an event to a group (claims with a lease), a sync sender's answer that
// arrived on another node, and the agents connected to every node.
//
// There is no cluster protocol of its own: PostgreSQL is the shared state
// and LISTEN/NOTIFY the signal. A notification carries ids only (an event's
// channel, id, seq and origin; an answer's event id); what is larger is
// read from a table. A node listens on a dedicated connection, on one
// PostgreSQL channel for events (every node hears them) and one of its own
// (answers, replays addressed to it). When that connection is lost, the
// node connects and listens again with backoff and then calls
// Handler.Resync: what was notified meanwhile is lost, so its users rescan
// the store, which is the queue.
//
// Two implementations of Node: Local for a relay alone (every claim is
// won, nothing is published) and Postgres for several nodes.
package cluster
