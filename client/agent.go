package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hookrelay/hookrelay/protocol"
)

// ErrUnauthorized is returned by Run when the relay rejected the token.
var ErrUnauthorized = errors.New("the token was rejected; check --token or HOOKRELAY_TOKEN")

// stableSession is how long a session must have lasted for the reconnect
// backoff to start over; a relay that welcomes and then drops the agent at
// once still sees growing delays.
const stableSession = 10 * time.Second

// maxDrainJitter bounds the delay of a reconnect the relay asked for
// (drain, draining): enough to spread agents over the relay's other nodes.
const maxDrainJitter = 250 * time.Millisecond

// Status is the agent's connection status.
type Status int

// The statuses an agent goes through. A fatal error or the end of Run's
// context leads to StatusStopped.
const (
	StatusConnecting   Status = iota // dialing the relay the first time
	StatusConnected                  // welcomed; deliveries flow
	StatusReconnecting               // waiting to retry after a failure
	StatusStopping                   // context done; deliveries in flight finish
	StatusStopped                    // Run has returned or is about to
)

func (s Status) String() string {
	switch s {
	case StatusConnecting:
		return "connecting"
	case StatusConnected:
		return "connected"
	case StatusReconnecting:
		return "reconnecting"
	case StatusStopping:
		return "stopping"
	case StatusStopped:
		return "stopped"
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

// State describes the agent's connection at one moment.
type State struct {
	Status Status
	// Attempt is the number of the coming retry (1 for the first) while
	// reconnecting.
	Attempt int
	// RetryAt is when that retry is made.
	RetryAt time.Time
	// Err is why the last session ended or the last attempt failed
	// (reconnecting), or the fatal error Run returns (stopped).
	Err error
	// SessionID, Node and Channels come from the relay's welcome
	// (connected); Node is "" when the relay names none.
	SessionID string
	Node      string
	Channels  []protocol.ChannelInfo
}

// Agent connects to a relay and forwards deliveries to its targets. Create
// it with New and start it with Run.
type Agent struct {
	cfg       Config
	tunnelURL string
	log       *slog.Logger
	router    *router
	targets   *targetSet
	metrics   *agentMetrics
	out       *printer
	sem       chan struct{} // a token per delivery at the target, across sessions
	running   atomic.Bool

	mu        sync.Mutex    // guards the two fields below
	state     State         // the current state
	connected chan struct{} // closed while state.Status is StatusConnected
}

// New checks cfg and returns an agent ready to Run.
func New(cfg Config) (*Agent, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	wsURL, err := tunnelURL(cfg.ServerURL)
	if err != nil {
		return nil, err
	}
	rt, err := newRouter(cfg.Routes, cfg.Target)
	if err != nil {
		return nil, err
	}
	var urls []*url.URL
	for _, r := range rt.routes {
		urls = append(urls, r.target)
	}
	if rt.fallback != nil {
		urls = append(urls, rt.fallback.target)
	}
	metrics, err := newAgentMetrics(cfg.Metrics)
	if err != nil {
		return nil, fmt.Errorf("client: register metrics: %w", err)
	}
	a := &Agent{
		cfg:       cfg,
		tunnelURL: wsURL,
		log:       cfg.Logger,
		router:    rt,
		targets:   newTargetSet(urls, cfg.PreserveHost, cfg.RequestTimeout, cfg.Concurrency, cfg.TargetTLS),
		metrics:   metrics,
		out:       newPrinter(cfg.Out, cfg.JSON, len(cfg.Subscriptions) > 1, cfg.Logger),
		sem:       make(chan struct{}, cfg.Concurrency),
		state:     State{Status: StatusConnecting},
		connected: make(chan struct{}),
	}
	a.out.routes = len(rt.routes) > 0
	a.targets.onChange = a.targetChanged
	return a, nil
}

// Targets returns the health of every target the agent forwards to.
func (a *Agent) Targets() []TargetStatus {
	if a.cfg.Handler != nil {
		return nil
	}
	return a.targets.statuses()
}

// targetChanged reports a change of a target's health.
func (a *Agent) targetChanged(st TargetStatus) {
	a.metrics.target(st)
	a.out.target(st)
	if a.cfg.OnTarget != nil {
		a.cfg.OnTarget(st)
	}
}

// groupState reports what the relay said about one of the agent's groups.
func (a *Agent) groupState(m *protocol.GroupState) {
	st := GroupStatus{Channel: m.Channel, Group: m.Group, Paused: m.State == protocol.GroupPaused, Err: m.Error}
	if st.Paused {
		st.NextTry = time.Now().Add(time.Duration(m.RetryInMS) * time.Millisecond)
	}
	a.out.groupState(st)
	if a.cfg.OnGroupState != nil {
		a.cfg.OnGroupState(st)
	}
}

// deliveryEvent reports a delivery that starts (resp nil) or ends.
func (a *Agent) deliveryEvent(e DeliveryEvent) {
	a.metrics.delivery(e)
	if e.Response != nil {
		a.out.delivery(e)
	}
	if a.cfg.OnDelivery != nil {
		a.cfg.OnDelivery(e)
	}
}

// State returns the agent's current state.
func (a *Agent) State() State {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.state
}

// Connected returns a channel that is closed while the agent is connected:
// when it is not, the channel returned closes at the next welcome.
func (a *Agent) Connected() <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.connected
}

func (a *Agent) setState(s State) {
	a.mu.Lock()
	was := a.state.Status
	a.state = s
	switch {
	case s.Status == StatusConnected && was != StatusConnected:
		close(a.connected)
	case s.Status != StatusConnected && was == StatusConnected:
		a.connected = make(chan struct{})
	}
	a.mu.Unlock()
	a.metrics.state(s)
	if a.cfg.OnState != nil {
		a.cfg.OnState(s)
	}
}

// Run connects to the relay and serves deliveries, reconnecting after
// failures, until ctx is done; it then stops taking deliveries, lets those
// in flight finish for up to ShutdownGrace, closes the session and returns
// nil. It returns an error at once for failures a retry cannot fix: the
// token rejected (ErrUnauthorized), a channel not found or a protocol
// version mismatch (a *protocol.Error). Run may be called once.
func (a *Agent) Run(ctx context.Context) error {
	if !a.running.CompareAndSwap(false, true) {
		return errors.New("client: Agent.Run called twice")
	}
	var retiring sync.WaitGroup // sessions a draining relay asked us to leave
	var monitor sync.WaitGroup  // the targets' health checks
	a.setState(State{Status: StatusConnecting})
	a.out.connecting(a.cfg.ServerURL)
	monitorCtx, stopMonitor := context.WithCancel(ctx)
	if a.cfg.Handler == nil {
		monitor.Go(func() { a.targets.monitor(monitorCtx, a.cfg.TargetCheckInterval) })
	}
	err := a.loop(ctx, &retiring)
	stopMonitor()
	monitor.Wait()
	retiring.Wait()
	a.targets.closeIdle()
	a.setState(State{Status: StatusStopped, Err: err})
	a.out.stopped(err)
	return err
}

func (a *Agent) loop(ctx context.Context, retiring *sync.WaitGroup) error {
	attempt := 0 // failed attempts or short sessions in a row
	for {
		t, err := a.connect(ctx)
		if ctx.Err() != nil {
			if t != nil {
				t.close()
			}
			return nil
		}
		if err != nil {
			if isFatal(err) {
				return err
			}
			attempt++
			if !a.backoff(ctx, attempt, err, isRetryNow(err)) {
				return nil
			}
			continue
		}

		start := time.Now()
		a.setState(State{Status: StatusConnected, SessionID: t.welcome.SessionID, Node: t.welcome.Node, Channels: t.welcome.Channels})
		a.out.connected(a.cfg.ServerURL, t.welcome.Node, a.targetSummary(), t.welcome.Channels)
		end := t.serve(ctx)
		if ctx.Err() != nil {
			t.stopAccepting() // before the state says so, for those who watch it
			a.setState(State{Status: StatusStopping})
			t.shutdown(ctx, a.cfg.ShutdownGrace, a.cfg.ShutdownGrace)
			return nil
		}
		if time.Since(start) >= stableSession {
			attempt = 0
		}
		if end.drain {
			// The old session finishes its deliveries while a new one starts.
			retiring.Go(func() { t.shutdown(ctx, a.cfg.RequestTimeout+streamMargin, a.cfg.ShutdownGrace) })
			a.out.draining(end.err)
		} else {
			t.close()
		}
		if end.fatal {
			return end.err
		}
		attempt++
		if !a.backoff(ctx, attempt, end.err, end.drain || isRetryNow(end.err)) {
			return nil
		}
	}
}

// targetSummary says where deliveries go, for the connected line.
func (a *Agent) targetSummary() string {
	switch {
	case a.cfg.Handler != nil:
		return "(answered here)" // Target holds only a placeholder then
	case len(a.router.routes) == 0:
		return a.cfg.Target
	case a.router.fallback == nil:
		return fmt.Sprintf("%d routes, no fallback", len(a.router.routes))
	}
	return fmt.Sprintf("%d routes, else %s", len(a.router.routes), a.cfg.Target)
}

// backoff waits before retry number attempt; false when ctx ended first.
// soon asks for a reconnect at once, with a little jitter, as after a
// drain; it is honoured for the first retry in a row only, so a relay that
// keeps draining still sees growing delays.
func (a *Agent) backoff(ctx context.Context, attempt int, reason error, soon bool) bool {
	var wait time.Duration
	if soon && attempt == 1 {
		wait = backoffDelay(min(a.cfg.InitialBackoff, maxDrainJitter), maxDrainJitter, 1)
	} else {
		wait = backoffDelay(a.cfg.InitialBackoff, a.cfg.MaxBackoff, attempt)
	}
	a.setState(State{Status: StatusReconnecting, Attempt: attempt, RetryAt: time.Now().Add(wait), Err: reason})
	a.out.reconnecting(wait, attempt, reason)
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

// backoffDelay draws the delay before retry number attempt (1 for the first)
// uniformly from [0, min(maxDelay, initial·2^(attempt-1))): full jitter.
func backoffDelay(initial, maxDelay time.Duration, attempt int) time.Duration {
	ceiling := initial
	for i := 1; i < attempt && ceiling < maxDelay; i++ {
		ceiling *= 2
	}
	ceiling = min(ceiling, maxDelay)
	if ceiling <= 0 {
		return 0
	}
	return rand.N(ceiling)
}

// fatalError marks an error a reconnect cannot fix.
type fatalError struct{ err error }

func (e fatalError) Error() string { return e.err.Error() }
func (e fatalError) Unwrap() error { return e.err }

func isFatal(err error) bool {
	var f fatalError
	return errors.As(err, &f)
}

// retryNow marks an error after which the agent reconnects at once: the
// relay is draining and another node may take the session.
type retryNow struct{ err error }

func (e retryNow) Error() string { return e.err.Error() }
func (e retryNow) Unwrap() error { return e.err }

func isRetryNow(err error) bool {
	var r retryNow
	return errors.As(err, &r)
}

// relayError turns an Error message from the relay into an error for the
// user, fatal when the code says retrying cannot help (SPEC.md, 5.4). An
// unknown code counts as internal: retried with backoff.
func relayError(e *protocol.Error) error {
	switch e.Code {
	case protocol.CodeUnauthorized, protocol.CodeRevoked:
		return fatalError{fmt.Errorf("relay refused the session (%w): %w", e, ErrUnauthorized)}
	case protocol.CodeChannelNotFound:
		return fatalError{fmt.Errorf("relay refused the subscription: %w; check the channel name", e)}
	case protocol.CodeVersionMismatch:
		return fatalError{fmt.Errorf("relay refused the session: %w", e)}
	case protocol.CodeDraining:
		return retryNow{fmt.Errorf("relay is draining: %w", e)}
	}
	return fmt.Errorf("relay error: %w", e)
}

// httpError explains an HTTP answer to the tunnel dial that was not an
// upgrade (SPEC.md, section 1); body is the relay's JSON error when it sent
// one. 400, 401 and 403 stop the agent; other statuses are retried.
func httpError(resp *http.Response, body []byte) error {
	msg := relayMessage(body)
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return fatalError{fmt.Errorf("relay answered 401: %w", ErrUnauthorized)}
	case resp.StatusCode == http.StatusBadRequest, resp.StatusCode == http.StatusForbidden:
		return fatalError{fmt.Errorf("relay answered %d: %s", resp.StatusCode, msg)}
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		return fmt.Errorf("relay answered %d (redirect to %s): point the agent at the final URL",
			resp.StatusCode, resp.Header.Get("Location"))
	}
	return fmt.Errorf("relay answered %d: %s", resp.StatusCode, msg)
}
