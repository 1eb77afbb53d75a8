// Package server is the hookrelay relay: the public ingress, the tunnel
// endpoint agents connect to, the hub that dispatches events to groups of
// agents, and the JSON API. Its durable state lives behind store.Store.
package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/hookrelay/hookrelay/server/cluster"
	"github.com/hookrelay/hookrelay/server/store"
	"github.com/hookrelay/hookrelay/server/wireheader"
)

// Defaults for Config fields left zero.
const (
	DefaultResponseTimeout  = 10 * time.Second
	DefaultMaxBody          = 25 << 20
	DefaultDeliveryTimeout  = 2 * time.Minute
	DefaultMaxAttempts      = 20
	DefaultRetryMaxBackoff  = 5 * time.Minute
	DefaultRetention        = 168 * time.Hour
	DefaultMaxConcurrency   = 64
	DefaultMaxSSEPerChannel = 100
	DefaultMaxSSEPerAddress = 20
	DefaultSSEBuffer        = 4 << 20
	DefaultSSEKeepAlive     = 15 * time.Second
	maxStoredResponse       = 64 << 10 // response bodies kept in the store per delivery
	maxHeaderBytes          = 64 << 10 // per request; larger header blocks get 431
)

// Defaults for the channels anyone may create where AllowAnonymous is on.
const (
	// DefaultAnonymousChannelTTL is how long an anonymous channel lives.
	DefaultAnonymousChannelTTL = 24 * time.Hour
	// DefaultAnonymousChannelsPerMinute is how many anonymous channels one
	// source address may create a minute (ten at once, then one every 6 s).
	DefaultAnonymousChannelsPerMinute = 10
)

// Config configures a Relay. Store is required; everything else has a
// default.
type Config struct {
	Store store.Store
	// PublicURL is the base of ingress URLs ("https://relay.example.com").
	// Empty: derived from each request's Host.
	PublicURL string
	// AdminToken is the relay-wide admin token (plain; only its hash is kept).
	AdminToken string
	// ResponseTimeout bounds how long a sender waits for the app's answer
	// before it gets 202 Accepted.
	ResponseTimeout time.Duration
	// MaxBody is the largest request body ingress accepts (413 beyond).
	MaxBody int64
	// DeliveryTimeout bounds one delivery attempt on the relay's side.
	DeliveryTimeout time.Duration
	// MaxAttempts caps delivery attempts per event and group.
	MaxAttempts int
	// RetryMaxBackoff caps the wait between attempts.
	RetryMaxBackoff time.Duration
	// ProbeMin and ProbeMax bound the wait between probes of a paused
	// group, one whose target refuses connections: it doubles from
	// ProbeMin (default 1s) to ProbeMax (default 30s).
	ProbeMin, ProbeMax time.Duration
	// MaxConcurrency caps deliveries in flight per agent.
	MaxConcurrency int
	// Retention: events older than this are deleted, and groups idle longer are dropped.
	Retention time.Duration
	// MaxEventsPerChannel caps stored events per channel (0: no cap).
	MaxEventsPerChannel int
	// PruneInterval is how often retention runs (default 1m).
	PruneInterval time.Duration
	// RateLimit is the default per-channel limit in webhooks per second
	// (burst twice that); 0: none. A channel's own limit wins.
	RateLimit float64
	// AllowAnonymous lets anyone create a channel (public relays); such a
	// channel is read with the read key it comes with.
	AllowAnonymous bool
	// AnonymousChannelTTL is how long a channel created without a token
	// (GET /new, or POST /api/v1/channels with none) lives; retention then
	// deletes it with its events. A shorter ttl asked for is kept, a longer
	// one is cut to this (default 24h).
	AnonymousChannelTTL time.Duration
	// AnonymousChannelsPerMinute is how many channels one source address
	// (an IPv6 address counts by its /64) may create without a token a
	// minute, all at once and then evenly; more are answered 429 with
	// Retry-After (default 10).
	AnonymousChannelsPerMinute float64
	// MaxChannelsPerTeam caps channels per team (0: no cap).
	MaxChannelsPerTeam int
	// MaxAgentsPerToken caps the tunnels one token may hold open at once
	// (default 1000).
	MaxAgentsPerToken int
	// MaxAgentsPerReadKey caps the tunnels one channel read key may hold
	// open at once (default 20): anyone may get a read key on a relay that
	// allows anonymous channels.
	MaxAgentsPerReadKey int
	// MaxStreamsPerToken caps the live streams and long-polls one token or
	// read key may hold open at once (default 100).
	MaxStreamsPerToken int
	// TrustedProxies lists the addresses or CIDRs of reverse proxies whose
	// X-Forwarded-For is believed; from any other peer the socket address
	// is the client's.
	TrustedProxies []string
	// InspectorHost, when set, serves the inspector (its page and
	// sign-in) only at this host name ("relay-admin.example.com", or with
	// ":port" to match the port too), and ingress only at other names, so
	// an answer an app relays never shares an origin with the inspector's
	// session. The API answers on every name, but accepts the session
	// cookie only at this one. Empty: one origin for everything.
	InspectorHost string
	// TLS says the listener serves TLS, so public URLs are https.
	TLS bool
	// MaxSSEPerChannel caps the smee-compatible event streams open on one
	// channel at once (default 100); more are answered 429.
	MaxSSEPerChannel int
	// MaxSSEPerAddress caps the smee-compatible event streams open from one
	// client address at once (default 20); more are answered 429.
	MaxSSEPerAddress int
	// SSEBuffer bounds the webhook bytes held in memory for one event
	// stream whose reader has not taken them yet (default 4 MiB). A reader
	// that falls further behind is dropped; it resumes from the store with
	// Last-Event-ID.
	SSEBuffer int64
	// SSEKeepAlive is how often an idle event stream gets a keep-alive
	// comment, and how often it checks that its reader may still read
	// (default 15s).
	SSEKeepAlive time.Duration
	// ReadTimeout is the base time a sender gets to send its body; larger
	// bodies get more at 64 KiB/s (default 30s).
	ReadTimeout time.Duration
	// Secret keys what the relay derives and must recognise later: the
	// event list's cursors (opaque, per channel). At least 32 bytes; nodes
	// that share a store need the same. Empty: random for this process, so
	// cursors do not outlive it (hookrelay server keeps one in its data
	// directory).
	Secret []byte
	// Version is reported to agents and in /healthz.
	Version string
	// NodeName names this relay node to agents (welcome.node), so that a
	// user of a relay of several nodes sees which one holds the session
	// (default: the host name).
	NodeName string
	// NodeID names this node among the relay nodes sharing a database: in
	// claims, answers sent between nodes and the agents list. It must be
	// unique per running process, and Cluster's ID when Cluster is set.
	// Default: cluster.DefaultNodeID(NodeName).
	NodeID string
	// ClaimLease is how long a node's claim on delivering an event to a
	// group lasts unless renewed (default dispatch.DefaultLease): how long
	// the events a dead node was delivering wait before another takes them.
	ClaimLease time.Duration
	// Cluster links the relay nodes that share Store (server/cluster);
	// the caller creates and closes it. Nil: cluster.NewLocal, a relay
	// alone.
	Cluster cluster.Node
	Logger  *slog.Logger
}

func (c *Config) setDefaults() error {
	if c.Store == nil {
		return errors.New("server: Config.Store is required")
	}
	if c.ResponseTimeout <= 0 {
		c.ResponseTimeout = DefaultResponseTimeout
	}
	if c.MaxBody <= 0 {
		c.MaxBody = DefaultMaxBody
	}
	if c.DeliveryTimeout <= 0 {
		c.DeliveryTimeout = DefaultDeliveryTimeout
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.RetryMaxBackoff <= 0 {
		c.RetryMaxBackoff = DefaultRetryMaxBackoff
	}
	if c.MaxConcurrency <= 0 {
		c.MaxConcurrency = DefaultMaxConcurrency
	}
	if c.Retention <= 0 {
		c.Retention = DefaultRetention
	}
	if c.MaxAgentsPerToken <= 0 {
		c.MaxAgentsPerToken = 1000
	}
	if c.MaxSSEPerChannel <= 0 {
		c.MaxSSEPerChannel = DefaultMaxSSEPerChannel
	}
	if c.MaxSSEPerAddress <= 0 {
		c.MaxSSEPerAddress = DefaultMaxSSEPerAddress
	}
	if c.SSEBuffer <= 0 {
		c.SSEBuffer = DefaultSSEBuffer
	}
	if c.SSEKeepAlive <= 0 {
		c.SSEKeepAlive = DefaultSSEKeepAlive
	}
	if c.AnonymousChannelTTL <= 0 {
		c.AnonymousChannelTTL = DefaultAnonymousChannelTTL
	}
	if c.AnonymousChannelsPerMinute <= 0 {
		c.AnonymousChannelsPerMinute = DefaultAnonymousChannelsPerMinute
	}
	if c.MaxAgentsPerReadKey <= 0 {
		c.MaxAgentsPerReadKey = 20
	}
	if c.MaxStreamsPerToken <= 0 {
		c.MaxStreamsPerToken = 100
	}
	if c.ReadTimeout <= 0 {
		c.ReadTimeout = 30 * time.Second
	}
	if c.PruneInterval <= 0 {
		c.PruneInterval = time.Minute
	}
	if c.Version == "" {
		c.Version = "dev"
	}
	if c.NodeName == "" {
		c.NodeName, _ = os.Hostname() // best effort: "" names none
	}
	switch {
	case c.Cluster != nil && c.NodeID == "":
		c.NodeID = c.Cluster.ID()
	case c.Cluster != nil && c.NodeID != c.Cluster.ID():
		return fmt.Errorf("server: Config.NodeID %q differs from Config.Cluster's id %q", c.NodeID, c.Cluster.ID())
	case c.NodeID == "":
		c.NodeID = cluster.DefaultNodeID(c.NodeName)
	}
	if c.Cluster == nil {
		c.Cluster = cluster.NewLocal(c.NodeID)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	c.PublicURL = strings.TrimRight(c.PublicURL, "/")
	if c.Secret == nil {
		c.Secret = make([]byte, 32)
		_, _ = rand.Read(c.Secret) // crypto/rand.Read never fails on supported platforms
	}
	if len(c.Secret) < 32 {
		return fmt.Errorf("server: Config.Secret has %d bytes, want at least 32", len(c.Secret))
	}
	if c.InspectorHost != "" {
		pub, err := url.Parse(c.PublicURL)
		if c.PublicURL == "" || err != nil || pub.Host == "" {
			return errors.New("server: InspectorHost needs PublicURL, the URL webhooks are sent to, on another host name")
		}
		if strings.EqualFold(pub.Hostname(), strings.Split(c.InspectorHost, ":")[0]) {
			return fmt.Errorf("server: InspectorHost %s must differ from the public URL's host %s", c.InspectorHost, pub.Host)
		}
	}
	return nil
}

// Relay is the relay server. Create it with New, serve it with Serve or
// mount Handler, and end it with Close.
type Relay struct {
	cfg            Config
	store          store.Store
	log            *slog.Logger
	adminTokenHash []byte
	secret         []byte // Config.Secret
	hub            *hub
	failed         *failedWebhooks // commits that failed after delivery started (ingress)
	cluster        cluster.Node    // Config.Cluster
	remote         *remote         // what other nodes tell this one (remote.go)
	metrics        *metrics
	limiters       limiters
	anonLimiters   limiters // anonymous channel creation, by source address
	channels       channelCache
	sseCaps        streamCaps
	engine         *gin.Engine

	ctx    context.Context // ended by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // background jobs (retention)
}

// New builds a Relay from cfg.
func New(cfg Config) (*Relay, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Relay{cfg: cfg, store: cfg.Store, log: cfg.Logger, secret: cfg.Secret, ctx: ctx, cancel: cancel}
	if cfg.AdminToken != "" {
		sum := sha256.Sum256([]byte(cfg.AdminToken))
		r.adminTokenHash = sum[:]
	}
	r.metrics = newMetrics()
	if o, ok := cfg.Store.(store.CommitObserver); ok {
		o.ObserveCommits(r.metrics.observeCommit)
	}
	r.cluster = cfg.Cluster
	r.hub = newHub(r)
	r.failed = newFailedWebhooks()
	r.remote = newRemote(r)
	r.cluster.Subscribe(r.remote)
	engine, err := r.routes()
	if err != nil {
		cancel()
		return nil, err
	}
	r.engine = engine
	r.wg.Add(2)
	go r.retentionLoop()
	go r.remote.loop()
	return r, nil
}

// Handler returns the relay's HTTP handler. Serve it through Serve (or
// with wireheader's listener and ConnContext) to keep header order.
func (r *Relay) Handler() http.Handler { return r.engine }

// Serve answers HTTP on ln until ctx is done, then shuts down gracefully:
// agents are told to reconnect elsewhere and in-flight requests get up to
// 10 seconds. It wraps ln so that ingress sees headers in wire order.
func (r *Relay) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           r.engine,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    maxHeaderBytes,
		ConnContext:       wireheader.ConnContext,
		ErrorLog:          slog.NewLogLogger(r.log.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(wireheader.NewListener(ln, maxHeaderBytes)) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	r.hub.drain("relay shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := srv.Shutdown(shutdownCtx)
	r.hub.closeAll()
	<-errc
	if err != nil {
		return fmt.Errorf("shut down http server: %w", err)
	}
	return nil
}

// Close ends every tunnel and background job and waits for them. It does
// not close the store, which belongs to the caller.
func (r *Relay) Close() error {
	r.cancel()
	r.hub.closeAll()
	r.wg.Wait()
	return nil
}

// ingressURL is the public URL of a channel, for a request that came in on
// req (used when PublicURL is not configured).
func (r *Relay) ingressURL(req *http.Request, channelID string) string {
	base := r.cfg.PublicURL
	if base == "" && req != nil {
		scheme := "http"
		if req.TLS != nil || r.cfg.TLS {
			scheme = "https"
		}
		base = scheme + "://" + req.Host
	}
	return base + "/h/" + channelID
}

func hashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}
