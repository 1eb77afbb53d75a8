// Package client is the hookrelay agent: it connects to a relay over the
// tunnel (package protocol), subscribes to channels, forwards every delivery
// byte for byte to a local target URL (one, or several picked by Routes,
// first match wins) and sends the target's response back. It checks its
// targets' health and tells the relay (SPEC.md 5.7), and reports what it
// does through hooks (Config.OnState, OnDelivery, OnTarget: the live view in
// client/liveview) and Prometheus metrics (Config.Metrics).
// It also saves delivered events to a directory and replays saved ones,
// answers deliveries itself when Config.Handler is set (Capture, for CI
// jobs waiting for webhooks), and holds a small client of the relay's JSON
// API (API) for the command line.
//
// An Agent owns one tunnel at a time. Run dials the relay, says hello, and
// then serves two loops on the session: the control stream (drain, errors)
// and the delivery streams the relay opens, one per delivery. When the
// session ends it reconnects with exponential backoff and full jitter; when
// its context ends it stops taking deliveries, lets the ones in flight finish
// for up to Config.ShutdownGrace, and returns once every goroutine it started
// has ended.
//
// Forwarding rules (forward.go) are shared by live deliveries and Replay:
// the request goes to the target's scheme and host only, the event's sub-path
// is cleaned and joined under the target's path, the body is sent unchanged,
// the header lines keep their order, names, values and repeats, hop-by-hop
// headers are dropped, Host becomes the target's (unless PreserveHost), and
// Hookrelay-Event-Id and Hookrelay-Delivery-Attempt are added (and
// Hookrelay-Repeat-Of when the relay marks a repeat). Redirects are
// never followed. The request head is written by a small HTTP/1.1 client
// (h1.go), since net/http's writes header names in sorted order.
package client
