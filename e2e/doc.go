// Package e2e holds hookrelay's end-to-end tests: a real relay, real agents
// and real target servers in one process, talking HTTP and WebSocket over
// loopback, plus the benchmarks that compare webhooks through the tunnel
// with webhooks sent straight to the target.
package e2e
