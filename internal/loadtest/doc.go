// Package loadtest measures a hookrelay relay from the outside: Send posts
// webhooks at a fixed concurrency and reports throughput, latency
// percentiles and status counts (run it against a relay channel and against
// the target directly to see what the relay costs); Agents connects many idle
// agents and reads the relay's /metrics before and after, to give the
// relay's memory per idle agent; TargetHandler is a small, fast, concurrent
// HTTP target to forward to.
//
// It talks to the relay only over HTTP and the tunnel protocol (package
// protocol), like any agent or sender would, so the figures are the relay
// binary's, whatever process runs the tool. "hookrelay load" wires it to the
// command line; docs/load.md has the commands and the figures.
package loadtest
