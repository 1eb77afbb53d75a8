package loadtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/hashicorp/yamux"

	"github.com/hookrelay/hookrelay/client"
	"github.com/hookrelay/hookrelay/protocol"
)

// AgentsConfig describes an idle-agents run.
type AgentsConfig struct {
	// Server is the relay's base URL (http://host:port).
	Server string
	// Token is an API token that may read Channel.
	Token string
	// Channel the agents subscribe to. Empty: a channel is created for the
	// run (with a one-hour TTL) and deleted at its end.
	Channel string
	// Group, when set, puts every agent in this one group (agents sharing
	// the load, one dispatcher for all). Empty: each agent is in a group of
	// its own (the relay's default group for its host name), as N
	// developers each running "hookrelay connect" would be.
	Group string
	// Count is the number of agents (default 1000).
	Count int
	// DialConcurrency bounds the handshakes in progress at once (default 64).
	DialConcurrency int
	// Settle is how long the agents sit idle, once the relay lists them all,
	// before the relay's metrics are read again (default 3s): time for the
	// handshakes' garbage to be collected and stacks to shrink.
	Settle time.Duration
	// WaitGC, after Settle, waits (up to 150s) for the relay's next garbage
	// collection before each reading, so that the heap figures hold live
	// memory only. An idle Go process collects at least every two minutes.
	WaitGC bool
	// Hold keeps the agents connected this much longer after the
	// measurement, for looking at the relay by hand (default 0).
	Hold time.Duration
	// Timeout bounds connecting all agents and the relay listing them
	// (default 2m).
	Timeout time.Duration
	// Progress, when set, receives a line per step.
	Progress io.Writer
}

func (c AgentsConfig) withDefaults() (AgentsConfig, error) {
	if c.Server == "" {
		return c, errors.New("loadtest: no relay URL (--server)")
	}
	if _, err := wsURL(c.Server); err != nil {
		return c, err
	}
	if c.Count < 0 || c.DialConcurrency < 0 || c.Settle < 0 || c.Hold < 0 || c.Timeout < 0 {
		return c, errors.New("loadtest: count, dial concurrency, settle, hold and timeout must not be negative")
	}
	if c.Count == 0 {
		c.Count = 1000
	}
	if c.DialConcurrency == 0 {
		c.DialConcurrency = 64
	}
	if c.Settle == 0 {
		c.Settle = 3 * time.Second
	}
	if c.Timeout == 0 {
		c.Timeout = 2 * time.Minute
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	return c, nil
}

// AgentsResult is what an idle-agents run measured.
type AgentsResult struct {
	Server  string
	Channel string
	Group   string
	Count   int
	// ConnectTime is from the first dial until the relay listed every agent.
	ConnectTime time.Duration
	// Before is the relay's metrics before the first dial, With after Count
	// agents sat idle for Settle, After once they had disconnected and the
	// relay no longer listed them.
	Before, With, After Metrics
}

// PerAgent is the growth of a metric per connected agent: (With − Before) ÷ Count.
func (r *AgentsResult) PerAgent(name string) float64 {
	return (r.With[name] - r.Before[name]) / float64(r.Count)
}

// WriteReport prints the metrics before, with the agents, after, and per agent.
func (r *AgentsResult) WriteReport(w io.Writer) error {
	var b strings.Builder
	groups := "a group each"
	if r.Group != "" {
		groups = "all in group " + r.Group
	}
	fmt.Fprintf(&b, "%d idle agents on %s (channel %s, %s), connected and listed in %s\n",
		r.Count, r.Server, r.Channel, groups, r.ConnectTime.Round(time.Millisecond))
	fmt.Fprintf(&b, "  %-32s %12s %12s %12s %14s\n", "metric", "before", "with agents", "after", "per agent")
	row := func(name string, format func(float64) string) {
		cell := func(m Metrics) string {
			v, ok := m[name]
			if !ok {
				return "-"
			}
			return format(v)
		}
		per := "-"
		if _, ok := r.With[name]; ok {
			per = format(r.PerAgent(name))
		}
		fmt.Fprintf(&b, "  %-32s %12s %12s %12s %14s\n", name, cell(r.Before), cell(r.With), cell(r.After), per)
	}
	for _, name := range MemoryMetrics {
		if name == "go_goroutines" {
			row(name, func(v float64) string { return fmt.Sprintf("%.1f", v) })
		} else {
			row(name, FormatBytes)
		}
	}
	heapStack := func(m Metrics) float64 {
		return m["go_memstats_heap_inuse_bytes"] + m["go_memstats_stack_inuse_bytes"]
	}
	fmt.Fprintf(&b, "  %-32s %12s %12s %12s %14s\n", "heap+stack", FormatBytes(heapStack(r.Before)),
		FormatBytes(heapStack(r.With)), FormatBytes(heapStack(r.After)),
		FormatBytes((heapStack(r.With)-heapStack(r.Before))/float64(r.Count)))
	if r.PerAgent("process_resident_memory_bytes") <= 0 && r.With["process_resident_memory_bytes"] > 0 {
		b.WriteString("  note: resident memory did not grow, so the relay held memory from earlier work;\n" +
			"  measure a freshly started relay for the RSS figure\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// Agents connects cfg.Count idle agents to the relay, waits until the relay
// lists them, and reads the relay's metrics before and after. It
// disconnects them before it returns, also on error.
func Agents(ctx context.Context, cfg AgentsConfig) (*AgentsResult, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := raiseFileLimit(uint64(cfg.Count) + 256); err != nil {
		return nil, err
	}
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: nil}}
	api := &apiClient{API: client.NewAPI(cfg.Server, cfg.Token), hc: hc}
	api.HTTP = hc
	defer api.hc.CloseIdleConnections()
	res := &AgentsResult{Server: cfg.Server, Channel: cfg.Channel, Group: cfg.Group, Count: cfg.Count}
	if res.Channel == "" {
		id, err := api.createChannel(ctx)
		if err != nil {
			return nil, err
		}
		res.Channel = id
		fmt.Fprintf(cfg.Progress, "created channel %s for the run\n", id)
		defer func() {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			if err := api.deleteChannel(dctx, id); err != nil {
				fmt.Fprintf(cfg.Progress, "could not delete channel %s: %v\n", id, err)
			}
		}()
	}
	// Also checks that the channel exists and the token may read it.
	if _, err := api.agentCount(ctx, res.Channel, ""); err != nil {
		return nil, err
	}
	if res.Before, err = ReadMetrics(ctx, api.hc, cfg.Server, cfg.Token); err != nil {
		return nil, err
	}

	var suffix [4]byte
	_, _ = rand.Read(suffix[:])
	hostPrefix := "hookrelay-load-" + hex.EncodeToString(suffix[:]) + "-"
	fmt.Fprintf(cfg.Progress, "connecting %d idle agents to %s, %d at a time\n", cfg.Count, cfg.Server, cfg.DialConcurrency)
	start := time.Now()
	connectCtx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	sub := protocol.Subscription{Channel: res.Channel, Group: cfg.Group, From: protocol.FromNow}
	agents, err := dialAll(connectCtx, cfg, sub, hostPrefix)
	defer func() { closeAll(agents) }() // on the error paths; nil once closed below
	if err != nil {
		return nil, err
	}
	if err := api.waitAgents(connectCtx, res.Channel, hostPrefix, cfg.Count); err != nil {
		return nil, err
	}
	res.ConnectTime = time.Since(start)
	fmt.Fprintf(cfg.Progress, "the relay lists all %d agents after %s; idle for %s before measuring\n",
		cfg.Count, res.ConnectTime.Round(time.Millisecond), cfg.Settle)
	if res.With, err = settled(ctx, cfg, api); err != nil {
		return nil, err
	}
	if cfg.Hold > 0 {
		fmt.Fprintf(cfg.Progress, "holding the agents for %s\n", cfg.Hold)
		if err := wait(ctx, cfg.Hold); err != nil {
			return nil, err
		}
	}

	closeAll(agents)
	agents = nil
	fmt.Fprintf(cfg.Progress, "disconnected; waiting for the relay to let them go\n")
	leaveCtx, cancelLeave := context.WithTimeout(ctx, cfg.Timeout)
	defer cancelLeave()
	if err := api.waitAgents(leaveCtx, res.Channel, hostPrefix, 0); err != nil {
		return nil, err
	}
	if res.After, err = settled(ctx, cfg, api); err != nil {
		return nil, err
	}
	return res, nil
}

// gcCount is the relay's number of completed GC cycles.
const gcCount = "go_gc_duration_seconds_count"

// settled waits cfg.Settle and, with cfg.WaitGC, for the relay's next
// garbage collection, then reads the relay's metrics.
func settled(ctx context.Context, cfg AgentsConfig, api *apiClient) (Metrics, error) {
	if err := wait(ctx, cfg.Settle); err != nil {
		return nil, err
	}
	m, err := ReadMetrics(ctx, api.hc, cfg.Server, cfg.Token)
	if err != nil || !cfg.WaitGC {
		return m, err
	}
	// Count collections from after the settle time, when the agents are
	// idle (or gone), so that the one waited for ran on the quiet heap.
	if _, ok := m[gcCount]; !ok {
		return nil, fmt.Errorf("the relay's /metrics has no %s to wait for a collection", gcCount)
	}
	fmt.Fprintf(cfg.Progress, "waiting for the relay's next garbage collection (at most 150s)\n")
	deadline := time.Now().Add(150 * time.Second)
	for {
		now, err := ReadMetrics(ctx, api.hc, cfg.Server, cfg.Token)
		if err != nil {
			return nil, err
		}
		if now[gcCount] > m[gcCount] {
			return now, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the relay ran no garbage collection in 150s")
		}
		if err := wait(ctx, time.Second); err != nil {
			return nil, err
		}
	}
}

// wait waits for d or until ctx ends. It paces a measurement; nothing
// waits on it for a condition.
func wait(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// dialAll connects cfg.Count agents, at most cfg.DialConcurrency at a
// time. On error it returns the agents connected so far with the first
// error.
func dialAll(ctx context.Context, cfg AgentsConfig, sub protocol.Subscription, hostPrefix string) ([]*idleAgent, error) {
	u, _ := wsURL(cfg.Server) // checked by withDefaults
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	agents := make([]*idleAgent, cfg.Count)
	errs := make(chan error, 1)
	sem := make(chan struct{}, cfg.DialConcurrency)
	var wg sync.WaitGroup
dial:
	for i := range cfg.Count {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			break dial
		}
		wg.Go(func() {
			defer func() { <-sem }()
			a, err := dialAgent(ctx, u, cfg.Token, sub, fmt.Sprintf("%s%d", hostPrefix, i))
			if err != nil {
				select {
				case errs <- fmt.Errorf("agent %d of %d: %w", i+1, cfg.Count, err):
				default:
				}
				cancel()
				return
			}
			agents[i] = a
		})
	}
	wg.Wait()
	connected := agents[:0]
	for _, a := range agents {
		if a != nil {
			connected = append(connected, a)
		}
	}
	select {
	case err := <-errs:
		return connected, err
	default:
	}
	if err := ctx.Err(); err != nil && len(connected) < cfg.Count {
		return connected, fmt.Errorf("connected %d of %d agents: %w", len(connected), cfg.Count, err)
	}
	return connected, nil
}

// closeAll disconnects agents, 64 at a time.
func closeAll(agents []*idleAgent) {
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	for _, a := range agents {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			a.close()
		})
	}
	wg.Wait()
}

// idleAgent is a tunnel session that subscribes and then does nothing: the
// least an agent costs the relay. It is lighter than client.Agent (no
// target transport, no output, no reconnects), so one process can hold
// thousands.
type idleAgent struct {
	conn     *protocol.Conn
	sess     *yamux.Session
	accepted chan struct{} // closed when the accept loop has ended
}

// dialAgent opens a tunnel to the relay and sends hello with sub and host.
func dialAgent(ctx context.Context, tunnelURL, token string, sub protocol.Subscription, host string) (*idleAgent, error) {
	d := websocket.Dialer{
		HandshakeTimeout: 15 * time.Second,
		Subprotocols:     []string{protocol.Subprotocol},
		ReadBufferSize:   4096,
		WriteBufferSize:  4096,
	}
	header := http.Header{"User-Agent": {"hookrelay-load"}}
	if token != "" {
		header.Set("Authorization", "Bearer "+token)
	}
	ws, resp, err := d.DialContext(ctx, tunnelURL, header)
	if err != nil {
		if resp != nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
			resp.Body.Close()
			if resp.StatusCode == http.StatusUnauthorized {
				return nil, fmt.Errorf("relay answered 401: the token was rejected; check --token")
			}
			return nil, fmt.Errorf("relay answered %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
		}
		if strings.Contains(err.Error(), "too many open files") {
			return nil, fmt.Errorf("dial %s: %w (raise the open-file limit: ulimit -n)", tunnelURL, err)
		}
		return nil, fmt.Errorf("dial %s: %w", tunnelURL, err)
	}
	conn := protocol.NewConn(ws, protocol.ConnConfig{})
	sess, err := protocol.Client(conn, nil)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("start session: %w", err)
	}
	a := &idleAgent{conn: conn, sess: sess, accepted: make(chan struct{})}
	if err := a.hello(ctx, sub, host); err != nil {
		sess.Close()
		conn.Close()
		return nil, err
	}
	go a.acceptLoop()
	return a, nil
}

// hello runs the handshake on a new control stream.
func (a *idleAgent) hello(ctx context.Context, sub protocol.Subscription, host string) error {
	ctrl, err := a.sess.OpenStream()
	if err != nil {
		return fmt.Errorf("open control stream: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { _ = ctrl.SetDeadline(time.Now()) })
	defer stop()
	_ = ctrl.SetDeadline(time.Now().Add(15 * time.Second))
	err = protocol.WriteControl(ctrl, &protocol.ControlMessage{Type: protocol.TypeHello, Hello: &protocol.Hello{
		Version:       protocol.Version,
		AgentVersion:  "load",
		Host:          host,
		Concurrency:   32, // what "hookrelay connect" asks for
		Subscriptions: []protocol.Subscription{sub},
	}})
	if err != nil {
		return fmt.Errorf("send hello: %w", err)
	}
	m, err := protocol.ReadControl(ctrl)
	if err != nil {
		return fmt.Errorf("read welcome: %w", err)
	}
	switch {
	case m.Type == protocol.TypeError && m.Error != nil:
		return fmt.Errorf("relay refused the agent: %w", m.Error)
	case m.Type != protocol.TypeWelcome:
		return fmt.Errorf("relay answered hello with %q", m.Type)
	}
	_ = ctrl.SetDeadline(time.Time{})
	return nil
}

// acceptLoop refuses every delivery stream (an idle agent gets none unless
// someone posts to the channel) so that the relay is never left waiting.
func (a *idleAgent) acceptLoop() {
	defer close(a.accepted)
	for {
		st, err := a.sess.Accept()
		if err != nil {
			return
		}
		st.Close()
	}
}

func (a *idleAgent) close() {
	a.sess.Close()
	a.conn.Close()
	<-a.accepted
}

// wsURL turns a relay base URL into its /tunnel WebSocket URL.
func wsURL(server string) (string, error) {
	u, err := url.Parse(server)
	if err != nil {
		return "", fmt.Errorf("loadtest: relay URL %q: %w", server, err)
	}
	switch u.Scheme {
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	default:
		return "", fmt.Errorf("loadtest: relay URL %q must start with http:// or https://", server)
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + "/tunnel"
	return u.String(), nil
}

// apiClient calls the few relay API routes the tool needs, through the
// client package's API client.
type apiClient struct {
	*client.API
	hc *http.Client // also reads /metrics
}

func (c *apiClient) do(ctx context.Context, method, path string, in, out any) error {
	if err := c.Do(ctx, method, path, in, out); err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	return nil
}

func (c *apiClient) createChannel(ctx context.Context) (string, error) {
	var ch struct {
		ID string `json:"id"`
	}
	if err := c.do(ctx, http.MethodPost, "/api/v1/channels", map[string]string{"ttl": "1h"}, &ch); err != nil {
		return "", fmt.Errorf("create a channel for the run: %w", err)
	}
	return ch.ID, nil
}

func (c *apiClient) deleteChannel(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/channels/"+url.PathEscape(id), nil, nil)
}

// agentCount counts the channel's agents whose host starts with hostPrefix.
func (c *apiClient) agentCount(ctx context.Context, channel, hostPrefix string) (int, error) {
	var out struct {
		Agents []struct {
			Host string `json:"host"`
		} `json:"agents"`
	}
	if err := c.do(ctx, http.MethodGet, "/api/v1/channels/"+url.PathEscape(channel)+"/agents", nil, &out); err != nil {
		return 0, err
	}
	n := 0
	for _, a := range out.Agents {
		if strings.HasPrefix(a.Host, hostPrefix) {
			n++
		}
	}
	return n, nil
}

// waitAgents polls the relay until it lists want agents of this run.
func (c *apiClient) waitAgents(ctx context.Context, channel, hostPrefix string, want int) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	last := -1
	for {
		n, err := c.agentCount(ctx, channel, hostPrefix)
		if err != nil && ctx.Err() == nil {
			return err
		}
		if err == nil {
			last = n
			if n == want {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the relay lists %d of this run's agents, not %d: %w", last, want, ctx.Err())
		case <-tick.C:
		}
	}
}
