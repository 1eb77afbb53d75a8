package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hookrelay/hookrelay/protocol"
)

// Subscription asks the relay for the events of one channel, as one group.
type Subscription = protocol.Subscription

// Defaults applied by New to zero Config fields.
const (
	defaultConcurrency    = 32
	defaultRequestTimeout = 30 * time.Second
	defaultMaxBackoff     = 30 * time.Second
	defaultInitialBackoff = 500 * time.Millisecond
	defaultShutdownGrace  = 5 * time.Second
	handshakeTimeout      = 15 * time.Second
	maxHostLength         = 255 // Hello.Host, SPEC.md 5.2
	handlerTarget         = "http://handler.invalid/"
)

// Config configures an Agent. Zero values take the defaults noted.
type Config struct {
	// ServerURL is the relay's base URL, http(s)://host:port[/prefix]. The
	// agent dials ws(s)://host:port[/prefix]/tunnel.
	ServerURL string
	// Token is sent as "Authorization: Bearer TOKEN"; empty sends none.
	Token string
	// Subscriptions lists the channels to receive; at least one.
	Subscriptions []Subscription
	// Target is the absolute http(s) URL deliveries are forwarded to, for
	// example http://localhost:3000/webhooks. The event's sub-path is joined
	// under its path and its query is appended. With Routes it is the
	// fallback for deliveries no route matches. It is required unless
	// Handler or Routes is set, and must be empty with Handler.
	Target string
	// Routes send deliveries to several targets: the first route that
	// matches a delivery picks its target, else Target does. A delivery
	// that matches none, without Target, is answered no_route (502 to a
	// waiting sender). The agent sends to these targets and no others.
	Routes []Route
	// Handler, when set, answers each delivery in place of a target: it gets
	// the event and its whole body and returns the response the relay hands
	// to the sender (a status from 100 to 999; hop-by-hop headers, headers
	// that are not valid and Content-Length are dropped). Status 0 declines
	// the delivery: the agent answers agent_stopping, so the relay keeps the
	// event for the group and sends this session nothing more; decline only
	// when the agent is about to stop. Handler is called from up to
	// Concurrency goroutines at once; ctx ends when the session does.
	Handler func(ctx context.Context, req *protocol.DeliveryRequest, body []byte) (status int, headers []protocol.Header, respBody []byte)
	// PreserveHost keeps the sender's Host header instead of the target's.
	PreserveHost bool
	// TargetTLS is used for an https target (default: the system's roots).
	TargetTLS *tls.Config
	// Concurrency bounds the deliveries forwarded at once (default 32). It
	// is sent to the relay in Hello.Concurrency.
	Concurrency int
	// RequestTimeout bounds one request to the target, from sending it to
	// reading the whole response (default 30s).
	RequestTimeout time.Duration
	// Out receives one line per delivery and a line per state change
	// (default os.Stdout).
	Out io.Writer
	// JSON prints JSON objects, one per line, instead of text lines.
	JSON bool
	// SaveDir, when set, receives each delivered event as a JSON file
	// (see SavedEvent). Events are then read whole into memory before they
	// are forwarded.
	SaveDir string
	// Logger receives diagnostics (default slog.Default()).
	Logger *slog.Logger
	// AgentVersion is sent in Hello.
	AgentVersion string
	// Host is the host name sent in Hello (default os.Hostname()).
	Host string
	// InitialBackoff is the first reconnect delay cap (default 500ms); the
	// cap doubles per failed attempt up to MaxBackoff and the delay is drawn
	// uniformly below it (full jitter).
	InitialBackoff time.Duration
	// MaxBackoff caps the reconnect delay (default 30s).
	MaxBackoff time.Duration
	// ShutdownGrace is how long deliveries in flight may still run once
	// Run's context is done (default 5s).
	ShutdownGrace time.Duration
	// Dialer dials the relay (default: a websocket.Dialer with a 15s
	// handshake timeout, RelayTLS, Proxy, and buffers that hold a whole
	// tunnel message, so that each is one system call).
	Dialer *websocket.Dialer
	// RelayTLS configures TLS to the relay (default: the system's roots);
	// see RelayTLSConfig. Used when Dialer is not set.
	RelayTLS *tls.Config
	// Proxy picks the proxy to the relay (default: ProxyFromEnvironment,
	// read when New runs). Used when Dialer is not set.
	Proxy ProxyFunc
	// OnState, when set, is called with every state change, from Run's
	// goroutine; it must not block.
	OnState func(State)
	// OnDelivery, when set, is called when a delivery starts and when it
	// is answered, from the goroutine that delivers it; it must not block.
	OnDelivery func(DeliveryEvent)
	// OnTarget, when set, is called when a target's health changes: after
	// the check at start (a TCP connection to each target), after a
	// delivery that reached it or failed to, and when a target that was
	// down accepts connections again (checked every 5s). It must not block.
	OnTarget func(TargetStatus)
	// OnGroupState, when set, is called when the relay says that one of
	// the agent's groups paused because its target refuses connections,
	// after each probe that found it still down, and when the group flows
	// again (SPEC.md 5.8). It must not block.
	OnGroupState func(GroupStatus)
	// TargetCheckInterval is how often a target that is down is checked
	// again (default 5s).
	TargetCheckInterval time.Duration
	// Metrics, when set, gets the agent's Prometheus metrics registered
	// (hookrelay_agent_*; see README.md).
	Metrics prometheus.Registerer
}

// withDefaults checks cfg and fills in its zero fields.
func (cfg Config) withDefaults() (Config, error) {
	if len(cfg.Subscriptions) == 0 {
		return cfg, errors.New("client: at least one channel subscription is needed")
	}
	seen := make(map[Subscription]bool, len(cfg.Subscriptions))
	for _, s := range cfg.Subscriptions {
		if err := s.Validate(); err != nil {
			return cfg, fmt.Errorf("client: channel %q: %w", s.Channel, err)
		}
		if seen[s] {
			return cfg, fmt.Errorf("client: channel %q (group %q) is listed twice", s.Channel, s.Group)
		}
		seen[s] = true
	}
	if cfg.Handler != nil {
		if cfg.Target != "" || len(cfg.Routes) > 0 {
			return cfg, errors.New("client: set Target (or Routes) or Handler, not both")
		}
		// New builds a forwarder for Target, which a Handler never uses. A
		// name under .invalid (RFC 2606) cannot resolve, should anything
		// ever try.
		cfg.Target = handlerTarget
	}
	if cfg.Target == "" && len(cfg.Routes) == 0 {
		return cfg, errors.New("client: no target: set Target or Routes")
	}
	for _, r := range cfg.Routes {
		if r.Channel != "" && !slices.ContainsFunc(cfg.Subscriptions, func(s Subscription) bool { return s.Channel == r.Channel }) {
			return cfg, fmt.Errorf("client: route %q names channel %q, which the agent does not subscribe to", r, r.Channel)
		}
	}
	if cfg.Concurrency < 0 || cfg.RequestTimeout < 0 || cfg.MaxBackoff < 0 ||
		cfg.InitialBackoff < 0 || cfg.ShutdownGrace < 0 {
		return cfg, errors.New("client: concurrency, timeouts and backoffs must not be negative")
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = defaultConcurrency
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = defaultRequestTimeout
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = defaultMaxBackoff
	}
	if cfg.InitialBackoff == 0 {
		cfg.InitialBackoff = min(defaultInitialBackoff, cfg.MaxBackoff)
	}
	if cfg.TargetCheckInterval <= 0 {
		cfg.TargetCheckInterval = probeInterval
	}
	if cfg.ShutdownGrace == 0 {
		cfg.ShutdownGrace = defaultShutdownGrace
	}
	if cfg.Out == nil {
		cfg.Out = os.Stdout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Host == "" {
		cfg.Host, _ = os.Hostname() // best effort: "" lets the relay do without
		cfg.Host = cfg.Host[:min(len(cfg.Host), maxHostLength)]
	}
	if len(cfg.Host) > maxHostLength {
		return cfg, fmt.Errorf("client: host name longer than %d bytes", maxHostLength)
	}
	if cfg.Proxy == nil {
		cfg.Proxy = ProxyFromEnvironment()
	}
	if cfg.Dialer == nil {
		d := *websocket.DefaultDialer
		d.HandshakeTimeout = handshakeTimeout
		d.Proxy = cfg.Proxy
		d.TLSClientConfig = cfg.RelayTLS
		d.ReadBufferSize, d.WriteBufferSize = protocol.MaxMessage, protocol.MaxMessage
		cfg.Dialer = &d
	}
	return cfg, nil
}

// tunnelURL turns the relay's base URL into the WebSocket URL of /tunnel.
func tunnelURL(server string) (string, error) {
	u, err := url.Parse(server)
	if err != nil {
		return "", fmt.Errorf("client: relay URL %q: %w", server, err)
	}
	switch u.Scheme {
	case "http", "ws":
		u.Scheme = "ws"
	case "https", "wss":
		u.Scheme = "wss"
	default:
		return "", fmt.Errorf("client: relay URL %q must start with http:// or https://", server)
	}
	if u.Host == "" {
		return "", fmt.Errorf("client: relay URL %q has no host", server)
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + "/tunnel"
	u.RawPath = ""
	u.RawQuery, u.Fragment, u.User = "", "", nil
	return u.String(), nil
}

// parseTarget checks a target URL: absolute http(s) with a host and no
// credentials. Its fragment is dropped.
func parseTarget(target string) (*url.URL, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, fmt.Errorf("client: target %q: %w", target, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "" {
		return nil, fmt.Errorf("client: target %q must be an absolute http:// or https:// URL, like http://localhost:3000/webhooks", target)
	}
	if u.User != nil {
		return nil, fmt.Errorf("client: target %q must not hold credentials", target)
	}
	u.Fragment, u.RawFragment = "", ""
	return u, nil
}
