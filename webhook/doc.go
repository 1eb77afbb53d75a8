// Package webhook holds what both sides of hookrelay know about a webhook
// request as a provider sends it: how each provider signs it (Signer), how
// to make a signing secret of the provider's shape (NewSecret), the
// edits of a replay (Edit), and sample events of each provider, sent as the
// provider sends them (BuildSample, from the files under samples/). The
// relay uses it to re-sign an edited replay with a channel's secret; the
// command line uses it for "hookrelay trigger" and to edit a replay sent
// straight to a local URL. Of hookrelay's packages it imports only
// protocol, for its Header type, so both the relay and the agent may
// import it.
//
// The schemes are those server/verify checks, named the same way:
//
//	github             X-Hub-Signature-256: sha256=HEX(HMAC-SHA256(secret, body))
//	                   (and X-Hub-Signature: sha1=HEX(HMAC-SHA1(secret, body)) when present)
//	stripe             Stripe-Signature: t=TS,v1=HEX(HMAC-SHA256(secret, TS "." body))
//	slack              X-Slack-Request-Timestamp: TS
//	                   X-Slack-Signature: v0=HEX(HMAC-SHA256(secret, "v0:" TS ":" body))
//	standard-webhooks  webhook-id: ID, webhook-timestamp: TS,
//	                   webhook-signature: v1,BASE64(HMAC-SHA256(key, ID "." TS "." body))
//	                   where key is the base64 after "whsec_" (svix-* headers are signed
//	                   in their place when the request has those)
//	hmac               HEADER (default X-Signature): HEX(HMAC-SHA256(secret, body)),
//	                   "sha256=" kept in front when the old value had it
package webhook
