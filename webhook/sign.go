package webhook

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1" //nolint:gosec // GitHub's legacy X-Hub-Signature is HMAC-SHA1; signing it is what GitHub does
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"
	"time"

	"github.com/hookrelay/hookrelay/protocol"
)

// Scheme names, spelled as server/verify and the API spell them.
const (
	GitHub           = "github"
	Stripe           = "stripe"
	Slack            = "slack"
	StandardWebhooks = "standard-webhooks"
	HMAC             = "hmac"
)

// Schemes lists the scheme names a Signer accepts.
func Schemes() []string { return []string{GitHub, Stripe, Slack, StandardWebhooks, HMAC} }

// DefaultHMACHeader carries the signature of the hmac scheme when Signer.Header is empty.
const DefaultHMACHeader = "X-Signature"

// StandardSecretPrefix starts a Standard Webhooks secret (and Stripe's).
const StandardSecretPrefix = "whsec_"

// Header names as the providers send them; server/verify reads the same.
const (
	HeaderGitHub           = "X-Hub-Signature-256"
	HeaderGitHubSHA1       = "X-Hub-Signature" // legacy, signed only where a request has it
	HeaderStripe           = "Stripe-Signature"
	HeaderSlackTimestamp   = "X-Slack-Request-Timestamp"
	HeaderSlackSignature   = "X-Slack-Signature"
	HeaderWebhookID        = "webhook-id"
	HeaderWebhookTimestamp = "webhook-timestamp"
	HeaderWebhookSignature = "webhook-signature"
	HeaderSvixID           = "svix-id" // Svix's names for the webhook-* headers
	HeaderSvixTimestamp    = "svix-timestamp"
	HeaderSvixSignature    = "svix-signature"
)

// ErrNoSecret is returned by Sign when the signer has no secret.
var ErrNoSecret = errors.New("no signing secret")

// Signer signs webhook requests the way one provider does.
type Signer struct {
	Scheme string // one of Schemes()
	Secret string // the signing secret as the provider shows it
	Header string // hmac only: the header carrying the signature (default X-Signature)
}

// Validate reports whether s can sign: a known scheme, a secret, and for
// standard-webhooks a secret that is base64 after an optional "whsec_".
func (s Signer) Validate() error {
	_, err := s.key()
	return err
}

func (s Signer) key() ([]byte, error) {
	switch s.Scheme {
	case GitHub, Stripe, Slack, StandardWebhooks, HMAC:
	default:
		return nil, fmt.Errorf("unknown signature scheme %q (want one of %s)", s.Scheme, strings.Join(Schemes(), ", "))
	}
	if s.Secret == "" {
		return nil, fmt.Errorf("%s: %w", s.Scheme, ErrNoSecret)
	}
	if s.Scheme == HMAC && !ValidHeaderName(s.hmacHeader()) {
		return nil, fmt.Errorf("signature header %q is not a valid header name", s.Header)
	}
	return SigningKey(s.Scheme, s.Secret)
}

// SigningKey returns the HMAC key a provider's secret stands for. For
// standard-webhooks it is the base64 after an optional "whsec_" (standard
// alphabet, padded), as the reference libraries read it; for every other
// scheme the secret's own bytes (Stripe's "whsec_" secret is used as is,
// as Stripe does).
func SigningKey(scheme, secret string) ([]byte, error) {
	if scheme != StandardWebhooks {
		return []byte(secret), nil
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, StandardSecretPrefix))
	if err != nil {
		return nil, fmt.Errorf("standard-webhooks secret must be %s followed by base64: %w", StandardSecretPrefix, err)
	}
	if len(key) == 0 {
		return nil, fmt.Errorf("standard-webhooks secret holds no key after %s", StandardSecretPrefix)
	}
	return key, nil
}

// Digest returns the HMAC-SHA256 that scheme signs, keyed with key (see
// SigningKey): of the body (github, hmac), of TS "." body (stripe), of
// "v0:" TS ":" body (slack), or of ID "." TS "." body (standard-webhooks),
// where TS is the Unix time in seconds as sent and ID the message id.
// Signer writes it; server/verify compares a request's signatures with it.
func Digest(scheme string, key []byte, id, ts string, body []byte) []byte {
	switch scheme {
	case Stripe:
		return mac(sha256.New, key, []byte(ts), []byte("."), body)
	case Slack:
		return mac(sha256.New, key, []byte("v0:"+ts+":"), body)
	case StandardWebhooks:
		return mac(sha256.New, key, []byte(id+"."+ts+"."), body)
	default: // github, hmac
		return mac(sha256.New, key, body)
	}
}

func (s Signer) hmacHeader() string {
	if s.Header == "" {
		return DefaultHMACHeader
	}
	return s.Header
}

// Sign returns a copy of headers with the scheme's signature headers set
// for body, signed at now: a header already there keeps its place (later
// lines of the same name are dropped), a missing one is added at the end.
// A Standard Webhooks request without a webhook-id gets a new one.
func (s Signer) Sign(headers []protocol.Header, body []byte, now time.Time) ([]protocol.Header, error) {
	key, err := s.key()
	if err != nil {
		return nil, err
	}
	if now.Unix() < 0 && (s.Scheme == Stripe || s.Scheme == Slack || s.Scheme == StandardWebhooks) {
		return nil, fmt.Errorf("cannot sign at %s: %s timestamps start at 1970", now.UTC().Format(time.RFC3339), s.Scheme)
	}
	out := append([]protocol.Header(nil), headers...)
	ts := strconv.FormatInt(now.Unix(), 10)
	switch s.Scheme {
	case GitHub:
		if _, ok := Get(out, HeaderGitHubSHA1); ok {
			out = Set(out, HeaderGitHubSHA1, "sha1="+hex.EncodeToString(mac(sha1.New, key, body)))
		}
		out = Set(out, HeaderGitHub, "sha256="+hex.EncodeToString(Digest(GitHub, key, "", "", body)))
	case Stripe:
		out = Set(out, HeaderStripe, "t="+ts+",v1="+hex.EncodeToString(Digest(Stripe, key, "", ts, body)))
	case Slack:
		out = Set(out, HeaderSlackTimestamp, ts)
		out = Set(out, HeaderSlackSignature, "v0="+hex.EncodeToString(Digest(Slack, key, "", ts, body)))
	case StandardWebhooks:
		idName, tsName, sigName := HeaderWebhookID, HeaderWebhookTimestamp, HeaderWebhookSignature
		if _, ok := Get(out, HeaderWebhookID); !ok {
			if _, ok := Get(out, HeaderSvixID); ok {
				idName, tsName, sigName = HeaderSvixID, HeaderSvixTimestamp, HeaderSvixSignature
			}
		}
		id, ok := Get(out, idName)
		if !ok || id == "" {
			id = NewMessageID()
			out = Set(out, idName, id)
		}
		out = Set(out, tsName, ts)
		out = Set(out, sigName, "v1,"+base64.StdEncoding.EncodeToString(Digest(StandardWebhooks, key, id, ts, body)))
	case HMAC:
		name := s.hmacHeader()
		prefix := ""
		if old, ok := Get(out, name); ok && len(old) >= 7 && strings.EqualFold(old[:7], "sha256=") {
			prefix = old[:7]
		}
		out = Set(out, name, prefix+hex.EncodeToString(Digest(HMAC, key, "", "", body)))
	}
	return out, nil
}

func mac(h func() hash.Hash, key []byte, parts ...[]byte) []byte {
	m := hmac.New(h, key)
	for _, p := range parts {
		m.Write(p)
	}
	return m.Sum(nil)
}

// NewMessageID returns a Standard Webhooks message id: "msg_" and 128
// random bits.
func NewMessageID() string { return "msg_" + randomHex(16) }

// NewSecret returns a new random signing secret in the shape the
// provider's own secrets have: GitHub and hmac 32 bytes in hex, Stripe
// "whsec_" and 24 bytes in hex, Slack 16 bytes in hex, Standard Webhooks
// "whsec_" and 24 bytes in base64.
func NewSecret(scheme string) (string, error) {
	switch scheme {
	case GitHub, HMAC:
		return randomHex(32), nil
	case Stripe:
		return StandardSecretPrefix + randomHex(24), nil
	case Slack:
		return randomHex(16), nil
	case StandardWebhooks:
		var b [24]byte
		_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
		return StandardSecretPrefix + base64.StdEncoding.EncodeToString(b[:]), nil
	}
	return "", fmt.Errorf("unknown signature scheme %q (want one of %s)", scheme, strings.Join(Schemes(), ", "))
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b)
}
