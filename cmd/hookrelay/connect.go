package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"github.com/spf13/viper"
	"golang.org/x/term"

	"github.com/hookrelay/hookrelay/client"
	"github.com/hookrelay/hookrelay/client/liveview"
	"github.com/hookrelay/hookrelay/protocol"
)

const connectLong = `Connect to the relay and forward every webhook of the channels to your app,
byte for byte, returning the app's answer to the sender. Reconnects forever
with backoff; Ctrl-C lets deliveries in flight finish (up to 5 seconds).

Where a webhook goes: the first --route whose conditions all hold, else --to.
A route is its conditions, then its URL, separated by spaces:

  --route 'header:X-GitHub-Event=push http://localhost:3000/push'
  --route 'channel=stripe-dev path=/v1/* http://localhost:4000'

Conditions: channel=ID, method=M, path=PATTERN (the sub-path after the channel
URL), header:NAME=PATTERN, header:NAME (present). In a PATTERN * stands for
anything; /v1/* also matches /v1. A webhook no route matches, without --to, is
answered 502 no_route and retried later, so a restart with the right route
still gets it. The agent sends nowhere but these URLs.

On a terminal the agent shows a live view (connection, targets, counts per
route, the last deliveries); --plain prints one line per delivery instead, as
it does when standard output is not a terminal; --json prints JSON lines.

Configuration keys (flag, HOOKRELAY_<KEY> environment variable, or the YAML
file --config, default ~/.config/hookrelay/config.yaml): server, token,
ca_file, insecure, to, routes (a list), group, from, preserve_host,
concurrency, timeout, json, plain, save, metrics_listen, and channels: a list
of {id, group, from, to, routes} used when no CHANNEL is named (and for a
named channel it lists). A channel's own routes come first, then the shared
routes, then the channel's to, then --to.`

const connectExample = `  hookrelay connect my-app --to http://localhost:3000/webhooks
  hookrelay connect gh stripe --route 'channel=gh header:X-GitHub-Event=push http://localhost:3000/push' \
    --route 'channel=stripe path=/v1/* http://localhost:4000' --to http://localhost:3000
  hookrelay connect my-app --to http://localhost:3000 --group ci --from now --json
  hookrelay connect            # the channels of the config file`

func newConnectCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "connect [CHANNEL...] [--to URL] [--route 'CONDITIONS URL']...",
		Short:   "Forward channels' webhooks to local URLs",
		Long:    connectLong,
		Example: connectExample,
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := newAgentViper(cmd)
			if err != nil {
				return err
			}
			return runAgent(cmd, v, args)
		},
	}
	addClientFlags(cmd)
	addAgentFlags(cmd)
	return cmd
}

// addAgentFlags adds the flags of the commands that run an agent.
func addAgentFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.String("to", "", "local URL to forward to: the fallback of --route, or the only target")
	f.StringArray("route", nil, "send matching webhooks elsewhere: 'CONDITIONS URL', e.g. 'path=/stripe/* http://localhost:4000' (repeatable; first match wins)")
	f.String("group", "", "delivery group: agents of one group share events (default: one per token and host)")
	f.String("from", "resume", "where a new group starts: resume (events still queued) or now")
	f.Bool("preserve-host", false, "send the sender's Host header instead of the target's")
	f.Int("concurrency", 32, "deliveries forwarded at once")
	f.Duration("timeout", 30*time.Second, "per-request timeout to the target")
	f.Bool("json", false, "print JSON lines instead of text")
	f.Bool("plain", false, "print one line per delivery even on a terminal, instead of the live view")
	f.String("save", "", "directory to save each event to (replay with 'hookrelay replay FILE')")
	f.String("metrics-listen", "", "serve Prometheus metrics of the agent on this address, e.g. 127.0.0.1:9091 (off by default)")
}

// newAgentViper is newViper for a command with addAgentFlags: the --route
// flag fills the key routes.
func newAgentViper(cmd *cobra.Command) (*viper.Viper, error) {
	v, err := newViper(cmd)
	if err != nil {
		return nil, err
	}
	if err := v.BindPFlag("routes", cmd.Flags().Lookup("route")); err != nil {
		return nil, err
	}
	return v, nil
}

// channelConfig is one entry of the config file's channels list.
type channelConfig struct {
	ID     string   `mapstructure:"id"`
	Group  string   `mapstructure:"group"`
	From   string   `mapstructure:"from"`
	To     string   `mapstructure:"to"`
	Routes []string `mapstructure:"routes"`
}

// agentSettings is an agent's configuration read from flags, the
// environment and the config file, before it becomes a client.Config.
type agentSettings struct {
	channels []channelConfig
	shared   []string // routes of every channel (--route, routes)
	to       string   // the fallback
}

// readAgentSettings reads the channels, routes and fallback: the channels
// named (else those of the file), each with what the file says of it.
func readAgentSettings(v *viper.Viper, names []string) (agentSettings, error) {
	var fromFile []channelConfig
	if err := v.UnmarshalKey("channels", &fromFile); err != nil {
		return agentSettings{}, fmt.Errorf("config key channels: want a list of {id, group, from, to, routes}: %w", err)
	}
	s := agentSettings{to: v.GetString("to"), shared: stringList(v.Get("routes"))}
	if len(names) == 0 {
		s.channels = fromFile
	}
	for _, name := range names {
		c := channelConfig{ID: name}
		for _, f := range fromFile {
			if f.ID == name {
				c = f
			}
		}
		s.channels = append(s.channels, c)
	}
	if len(s.channels) == 0 {
		return s, errors.New("name a channel: hookrelay connect CHANNEL --to URL (or list channels in the config file)")
	}
	for i, c := range s.channels {
		if c.ID == "" {
			return s, fmt.Errorf("config key channels: entry %d has no id", i+1)
		}
	}
	return s, nil
}

// stringList reads a list setting: a list from the file or the flags, or
// one item per line from the environment.
func stringList(v any) []string {
	switch x := v.(type) {
	case []string:
		return x
	case []any:
		out := make([]string, 0, len(x))
		for _, item := range x {
			out = append(out, fmt.Sprint(item))
		}
		return out
	case string:
		var out []string
		for line := range strings.SplitSeq(x, "\n") {
			if line = strings.TrimSpace(line); line != "" {
				out = append(out, line)
			}
		}
		return out
	}
	return nil
}

// agentConfig builds the client.Config of an agent for the channels named
// (none: those of the config file), from flags, environment and file.
func agentConfig(cmd *cobra.Command, v *viper.Viper, names []string) (client.Config, error) {
	s, err := readAgentSettings(v, names)
	if err != nil {
		return client.Config{}, err
	}
	group, from := v.GetString("group"), v.GetString("from")
	var subs []client.Subscription
	var own, fallbacks []client.Route
	for _, c := range s.channels {
		sub := client.Subscription{Channel: c.ID, Group: firstOf(c.Group, group), From: firstOf(c.From, from)}
		if sub.From != protocol.FromResume && sub.From != protocol.FromNow {
			return client.Config{}, fmt.Errorf("--from must be resume or now, not %q (channel %s)", sub.From, c.ID)
		}
		subs = append(subs, sub)
		for _, text := range c.Routes {
			r, err := client.ParseRoute(text)
			if err != nil {
				return client.Config{}, fmt.Errorf("channel %s: %w", c.ID, err)
			}
			if r.Channel != "" && r.Channel != c.ID {
				return client.Config{}, fmt.Errorf("channel %s: route %q names another channel", c.ID, text)
			}
			r.Channel = c.ID
			own = append(own, r)
		}
		if c.To != "" {
			fallbacks = append(fallbacks, client.Route{Channel: c.ID, Target: c.To})
		}
	}
	routes := own
	for _, text := range s.shared {
		r, err := client.ParseRoute(text)
		if err != nil {
			return client.Config{}, err
		}
		routes = append(routes, r)
	}
	routes = append(routes, fallbacks...)
	if s.to == "" && len(routes) == 0 {
		return client.Config{}, errors.New("--to is required: the local URL to forward to, e.g. --to http://localhost:3000/webhooks (or give --route)")
	}
	relayTLS, proxy, err := relayAccess(cmd, v)
	if err != nil {
		return client.Config{}, err
	}
	return client.Config{
		ServerURL:      v.GetString("server"),
		Token:          v.GetString("token"),
		Subscriptions:  subs,
		Target:         s.to,
		Routes:         routes,
		PreserveHost:   v.GetBool("preserve_host"),
		Concurrency:    v.GetInt("concurrency"),
		RequestTimeout: v.GetDuration("timeout"),
		Out:            cmd.OutOrStdout(),
		JSON:           v.GetBool("json"),
		SaveDir:        v.GetString("save"),
		AgentVersion:   version,
		RelayTLS:       relayTLS,
		Proxy:          proxy,
		Logger:         slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelWarn})),
	}, nil
}

func firstOf(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// runAgent runs an agent for the channels named (none: those of the config
// file) as "hookrelay connect" does, until cmd's context ends: a live view
// on a terminal (lines elsewhere, or JSON lines), metrics when asked. v must
// come from newAgentViper on a command with addClientFlags and
// addAgentFlags.
func runAgent(cmd *cobra.Command, v *viper.Viper, channels []string) error {
	cfg, err := agentConfig(cmd, v, channels)
	if err != nil {
		return err
	}
	tuneAgentGC()
	if addr := v.GetString("metrics_listen"); addr != "" {
		reg := prometheus.NewRegistry()
		cfg.Metrics = reg
		bound, stop, err := serveMetrics(addr, reg, cfg.Logger)
		if err != nil {
			return err
		}
		defer stop()
		fmt.Fprintf(cmd.ErrOrStderr(), "hookrelay: agent metrics on http://%s/metrics\n", bound)
	}
	tty, ok := terminal(cmd.OutOrStdout())
	if !ok || cfg.JSON || v.GetBool("plain") || os.Getenv("TERM") == "dumb" {
		agent, err := client.New(cfg)
		if err != nil {
			return err
		}
		return agent.Run(cmd.Context())
	}
	return runLive(cmd.Context(), cfg, tty)
}

// runLive runs the agent under the live view on the terminal tty.
func runLive(ctx context.Context, cfg client.Config, tty *os.File) error {
	var routes []string
	for _, r := range cfg.Routes {
		routes = append(routes, r.Label())
	}
	if cfg.Target != "" {
		routes = append(routes, "to")
	}
	var in io.Reader
	if term.IsTerminal(int(os.Stdin.Fd())) {
		in = os.Stdin
	}
	return liveview.Run(ctx, liveview.Config{Relay: cfg.ServerURL, Routes: routes, Out: tty, In: in},
		func(ctx context.Context, view *liveview.View) error {
			cfg.Out = io.Discard // the view shows it all
			cfg.OnState, cfg.OnDelivery, cfg.OnTarget = view.State, view.Delivery, view.Target
			cfg.OnGroupState = view.GroupState
			cfg.Logger = slog.New(slog.NewTextHandler(noteWriter{view}, &slog.HandlerOptions{Level: slog.LevelWarn}))
			agent, err := client.New(cfg)
			if err != nil {
				return err
			}
			return agent.Run(ctx)
		})
}

// noteWriter shows the agent's log lines in the live view.
type noteWriter struct{ view *liveview.View }

func (w noteWriter) Write(p []byte) (int, error) {
	w.view.Note(string(p))
	return len(p), nil
}

// terminal returns w as a terminal when it is one.
func terminal(w io.Writer) (*os.File, bool) {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil, false
	}
	return f, true
}

// serveMetrics serves reg on http://addr/metrics until stop is called. It
// returns the address bound (addr with port 0 gets a free port).
func serveMetrics(addr string, reg *prometheus.Registry, log *slog.Logger) (bound string, stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("--metrics-listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("serve metrics", "err", err)
		}
	}()
	return ln.Addr().String(), func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	}, nil
}

// The agent's garbage collector settings, used when the environment sets
// neither GOGC nor GOMEMLIMIT. An agent's live heap is a few MiB, while
// each delivery of a large body makes yamux allocate a receive buffer
// about the body's size (its stream window bounds it), which is garbage
// once the stream ends: at Go's default GOGC of 100 that starts a
// collection every megabyte or two; these settings take a third off the
// agent's CPU per 1 MiB webhook (docs/performance.md, "1 MiB bodies").
// The memory limit keeps a large live heap (a slow app behind many
// deliveries at once) from growing five-fold before a collection.
const (
	agentGCPercent   = 400
	agentMemoryLimit = 1 << 30
)

// tuneAgentGC applies agentGCPercent and agentMemoryLimit unless the user
// chose the collector's settings through the environment.
func tuneAgentGC() {
	if os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	debug.SetGCPercent(agentGCPercent)
	debug.SetMemoryLimit(agentMemoryLimit)
}
