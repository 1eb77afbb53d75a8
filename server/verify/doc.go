// Package verify checks that a webhook really comes from its sender before
// the relay stores it: the provider signature schemes a channel can require
// (GitHub, Stripe, Slack, Standard Webhooks and a generic HMAC header) and
// the per-channel list of allowed source address ranges.
//
// A channel's verification is one [Config]. [Config.Validate] checks it when
// the channel is configured; [Config.Verify] checks one received request.
// Every verification failure wraps [ErrSignature] and its message says what
// to fix ("missing header X-Hub-Signature-256", "signature does not match
// (check the secret)", "timestamp 1700000000 is 3h12m too old (tolerance
// 5m0s)"), so the ingress can answer the sender with it as it is. An error
// that does not wrap ErrSignature means the Config itself is unusable: the
// fault is the channel owner's, not the sender's.
//
// The other side of each scheme, the headers a provider would send, is
// the webhook package's Signer; the recipe of each scheme (header names,
// what its HMAC covers, how a secret becomes a key) is written once, there,
// and Verify uses it.
//
// The package does not read the clock or the network by itself beyond
// [Request.Now] defaulting to time.Now, and holds no state.
package verify
