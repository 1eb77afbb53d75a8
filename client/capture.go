package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/hookrelay/hookrelay/protocol"
)

// ErrCaptureTimeout is wrapped by the error Capture returns when its
// Timeout passed before Count webhooks matched.
var ErrCaptureTimeout = errors.New("timed out")

// CaptureGroupPrefix starts the name of the group a capture runs as when
// CaptureConfig.Group is empty.
const CaptureGroupPrefix = "capture:"

// captureStopGrace bounds, once a capture is over, the wait for the
// answers to the last webhooks to be sent and for the session to end.
const captureStopGrace = 5 * time.Second

// CaptureConfig configures Capture.
type CaptureConfig struct {
	// Agent configures the connection to the relay: ServerURL, Token,
	// Logger, backoffs and so on. Capture sets its Subscriptions, Target,
	// Handler, Out and Concurrency, and chains its OnState.
	Agent Config
	// Channel is the channel to capture from.
	Channel string
	// Group is the delivery group the capture runs as (default
	// CaptureGroupPrefix and a random suffix: a group of its own, which
	// takes no event from other agents). Webhooks it answers count as
	// delivered to the group, matching or not, so another capture with the
	// same group does not see them again.
	Group string
	// From is where a new group starts (default protocol.FromResume: with
	// the events the channel still holds, so webhooks that arrived before
	// the capture started are captured too).
	From string
	// Count is the number of matching webhooks to wait for; at least 1.
	Count int
	// Timeout bounds the wait; 0 waits until Count webhooks matched or ctx
	// is done.
	Timeout time.Duration
	// Match lists conditions a webhook must meet, all of them, to be
	// captured; none captures every webhook.
	Match []Match
	// RespondStatus is the status every sender gets, matching or not
	// (default 200); RespondHeaders and RespondBody go with it.
	RespondStatus  int
	RespondHeaders []protocol.Header
	RespondBody    []byte
	// Out receives each captured webhook as one JSON line (CapturedEvent),
	// in one Write, before its sender is answered.
	Out io.Writer
	// Progress, when set, receives a line that is rewritten in place
	// ("\r", erase to the end of the line) once a second, and when a
	// webhook matched or the connection changed, with what the capture
	// waits for: meant for a terminal. It is erased at the end.
	Progress io.Writer
}

// CaptureResult says what a capture did.
type CaptureResult struct {
	Group string // the group the capture ran as
	Got   int    // matching webhooks written to Out
	Seen  int    // webhooks answered, matching or not
}

// Match is one condition on a webhook: a header, by name (any case) and
// exact value, or for the keys "method" and "path" (any case) the request's
// method or its escaped sub-path after the channel, like "/github".
type Match struct {
	Key   string
	Value string
}

// ParseMatch reads a condition written KEY=VALUE, as in "X-Kind=yes",
// "method=POST" or "path=/github". The value may be empty or hold "=".
func ParseMatch(s string) (Match, error) {
	key, value, ok := strings.Cut(s, "=")
	if !ok || key == "" {
		return Match{}, fmt.Errorf("match %q: want header=value, method=VALUE or path=VALUE", s)
	}
	if !validHeaderName(key) {
		return Match{}, fmt.Errorf("match %q: %q is not a header name", s, key)
	}
	return Match{Key: key, Value: value}, nil
}

// String writes the condition as ParseMatch reads it.
func (m Match) String() string { return m.Key + "=" + m.Value }

func (m Match) matches(req *protocol.DeliveryRequest) bool {
	switch strings.ToLower(m.Key) {
	case "method":
		return req.Method == m.Value
	case "path":
		return req.Path == m.Value
	}
	for _, h := range req.Headers {
		if strings.EqualFold(h.Name, m.Key) && h.Value == m.Value {
			return true
		}
	}
	return false
}

// CapturedEvent is a captured webhook as Capture writes it, one JSON object
// per line. In JSON the body is "body", as text when it is valid UTF-8 and
// in standard base64 otherwise, with "body_encoding" BodyUTF8 or
// BodyBase64. Headers keep the sender's order, case and repeats. Query and
// header values are JSON strings, where bytes that are not UTF-8 read as
// U+FFFD; such a value also carries its exact bytes in base64
// ("query_base64", and see Header).
type CapturedEvent struct {
	ID         string        `json:"id"`
	Channel    string        `json:"channel"`
	Method     string        `json:"method"`
	Path       string        `json:"path"`
	Query      string        `json:"query"`
	Headers    []SavedHeader `json:"headers"`
	Body       []byte        `json:"-"`
	ReceivedAt time.Time     `json:"received_at"`
	RemoteAddr string        `json:"remote_addr"`
}

// MarshalJSON writes the form described on CapturedEvent, with <, > and &
// as they are (json.Marshal escapes them again; an Encoder with
// SetEscapeHTML(false) keeps them).
func (e CapturedEvent) MarshalJSON() ([]byte, error) {
	type plain CapturedEvent // without the methods, to avoid recursion
	if e.Headers == nil {
		e.Headers = []SavedHeader{}
	}
	return marshalLine(struct {
		plain
		QueryBase64 string `json:"query_base64,omitempty"`
		jsonBody
	}{plain(e), base64IfNotUTF8(e.Query), newJSONBody(e.Body)})
}

// UnmarshalJSON reads the form MarshalJSON writes.
func (e *CapturedEvent) UnmarshalJSON(data []byte) error {
	type plain CapturedEvent
	var f struct {
		plain
		QueryBase64 string `json:"query_base64"`
		jsonBody
	}
	if err := json.Unmarshal(data, &f); err != nil {
		return err
	}
	*e = CapturedEvent(f.plain)
	var err error
	if e.Query, err = exact(e.Query, f.QueryBase64); err != nil {
		return fmt.Errorf("query_base64: %w", err)
	}
	e.Body, err = f.jsonBody.bytes()
	return err
}

func capturedEvent(req *protocol.DeliveryRequest, body []byte) CapturedEvent {
	ev := CapturedEvent{
		ID:         req.EventID,
		Channel:    req.Channel,
		Method:     req.Method,
		Path:       req.Path,
		Query:      req.RawQuery,
		Headers:    make([]SavedHeader, len(req.Headers)),
		Body:       body,
		ReceivedAt: req.ReceivedAt,
		RemoteAddr: req.RemoteAddr,
	}
	for i, h := range req.Headers {
		ev.Headers[i] = SavedHeader{Name: h.Name, Value: h.Value}
	}
	return ev
}

// withDefaults checks cfg and fills in its zero fields.
func (cfg CaptureConfig) withDefaults() (CaptureConfig, error) {
	switch {
	case cfg.Count < 1:
		return cfg, fmt.Errorf("client: capture count %d, want 1 or more", cfg.Count)
	case cfg.Timeout < 0:
		return cfg, errors.New("client: capture timeout must not be negative")
	case cfg.Out == nil:
		return cfg, errors.New("client: capture needs an Out for the webhooks")
	case cfg.RespondStatus != 0 && (cfg.RespondStatus < 100 || cfg.RespondStatus > 999):
		return cfg, fmt.Errorf("client: capture respond status %d, want 100 to 999", cfg.RespondStatus)
	}
	if cfg.Group == "" {
		cfg.Group = CaptureGroupPrefix + randomSuffix()
	}
	if cfg.From == "" {
		cfg.From = protocol.FromResume
	}
	if cfg.RespondStatus == 0 {
		cfg.RespondStatus = 200
	}
	if cfg.Agent.Logger == nil {
		cfg.Agent.Logger = slog.Default()
	}
	return cfg, nil
}

// randomSuffix returns 12 random hex digits.
func randomSuffix() string {
	var b [6]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}

// capture is the state of one Capture call.
type capture struct {
	cfg      CaptureConfig
	complete chan struct{} // closed when Count webhooks matched or Out failed
	changed  chan struct{} // capacity 1: redraw the progress line

	mu        sync.Mutex // guards the fields below
	got, seen int
	over      bool  // the capture ended: decline what still comes
	writeErr  error // Out failed
	connected bool  // the agent is connected now
	ever      bool  // the agent was connected at some point
	lastErr   error // why the last attempt or session failed
}

// Capture connects to the relay as an agent of its own group, answers every
// webhook of the channel with the configured response, and writes those
// that match to Out until Count matched. It reconnects as an agent does. It
// returns once the answers are sent: with a nil error when Count webhooks
// matched; an error wrapping ErrCaptureTimeout when Timeout passed first
// (after writing those that matched); another error when the relay refused
// the capture (token, channel), when the relay could not be reached
// before Timeout passed, when Out failed, or when ctx ended first.
// Webhooks that come once the capture is over are declined and stay queued
// for the group.
func Capture(ctx context.Context, cfg CaptureConfig) (CaptureResult, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return CaptureResult{}, err
	}
	c := &capture{cfg: cfg, complete: make(chan struct{}), changed: make(chan struct{}, 1)}
	agentCfg := cfg.Agent
	agentCfg.Subscriptions = []Subscription{{Channel: cfg.Channel, Group: cfg.Group, From: cfg.From}}
	agentCfg.Target = ""
	agentCfg.Handler = c.handle
	agentCfg.Out = io.Discard // Out holds the webhooks; the agent's lines would only mix in
	// One delivery at a time: lines come in the relay's order, oldest
	// first, and no delivery is answered after the Count-th.
	agentCfg.Concurrency = 1
	agentCfg.ShutdownGrace = captureStopGrace
	userOnState := agentCfg.OnState
	agentCfg.OnState = func(s State) {
		c.onState(s)
		if userOnState != nil {
			userOnState(s)
		}
	}
	agent, err := New(agentCfg)
	if err != nil {
		return CaptureResult{Group: cfg.Group}, err
	}

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	runDone := make(chan error, 1)
	go func() { runDone <- agent.Run(runCtx) }()

	var deadline time.Time
	var timeout <-chan time.Time
	if cfg.Timeout > 0 {
		deadline = time.Now().Add(cfg.Timeout)
		timer := time.NewTimer(cfg.Timeout)
		defer timer.Stop()
		timeout = timer.C
	}
	var tick <-chan time.Time
	if cfg.Progress != nil {
		ticker := time.NewTicker(time.Second)
		defer ticker.Stop()
		tick = ticker.C
		c.render(deadline)
	}

	var runErr error
	ran := false // runErr is Run's result
	timedOut := false
wait:
	for {
		select {
		case <-c.complete:
			break wait
		case <-timeout:
			timedOut = true
			break wait
		case <-ctx.Done():
			break wait
		case runErr = <-runDone:
			ran = true
			break wait
		case <-tick:
			c.render(deadline)
		case <-c.changed:
			if cfg.Progress != nil {
				c.render(deadline)
			}
		}
	}
	c.end()
	if !ran {
		stop()
		runErr = <-runDone // bounded: Run waits captureStopGrace at most for deliveries
	}
	if cfg.Progress != nil {
		fmt.Fprint(cfg.Progress, "\r\x1b[K")
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	res := CaptureResult{Group: cfg.Group, Got: c.got, Seen: c.seen}
	switch {
	case c.writeErr != nil:
		return res, fmt.Errorf("write a captured webhook: %w", c.writeErr)
	case c.got >= cfg.Count:
		return res, nil
	case timedOut && !c.ever:
		return res, fmt.Errorf("could not connect to the relay at %s within %s: %s",
			cfg.Agent.ServerURL, cfg.Timeout, lastFailure(c.lastErr))
	case timedOut:
		err := fmt.Errorf("%w after %s: got %d of %d webhooks", ErrCaptureTimeout, cfg.Timeout, c.got, cfg.Count)
		if !c.connected {
			err = fmt.Errorf("%w (not connected to the relay at the end: %s)", err, lastFailure(c.lastErr))
		}
		return res, err
	case ctx.Err() != nil:
		return res, fmt.Errorf("capture stopped: got %d of %d webhooks: %w", c.got, cfg.Count, ctx.Err())
	case runErr != nil:
		return res, runErr // the relay refused the session or the subscription
	}
	// Run returns nil only once its context is done, which is covered above.
	return res, fmt.Errorf("capture stopped: got %d of %d webhooks", c.got, cfg.Count)
}

// lastFailure describes why connecting to the relay failed last.
func lastFailure(err error) string {
	if err == nil {
		return "no answer yet"
	}
	return err.Error()
}

// handle is the agent's Handler: it writes a matching webhook to Out and
// answers every one with the configured response.
func (c *capture) handle(_ context.Context, req *protocol.DeliveryRequest, body []byte) (int, []protocol.Header, []byte) {
	match := true
	for _, m := range c.cfg.Match {
		if !m.matches(req) {
			match = false
			break
		}
	}
	var line []byte
	if match {
		var err error
		if line, err = capturedEvent(req, body).MarshalJSON(); err != nil {
			c.cfg.Agent.Logger.Error("encode a captured webhook", "event", req.EventID, "err", err)
			return 0, nil, nil
		}
		line = append(line, '\n')
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.over {
		return 0, nil, nil // the relay keeps it for the group
	}
	if match {
		// Written before the sender is answered, so a webhook whose line
		// could not be written stays queued.
		if _, err := c.cfg.Out.Write(line); err != nil {
			c.writeErr = err
			c.finishLocked()
			return 0, nil, nil
		}
		c.got++
		if c.got >= c.cfg.Count {
			c.finishLocked()
		}
		c.notify()
	}
	c.seen++
	return c.cfg.RespondStatus, c.cfg.RespondHeaders, c.cfg.RespondBody
}

// notify asks for the progress line to be redrawn.
func (c *capture) notify() {
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

// finishLocked marks the capture complete; c.mu is held.
func (c *capture) finishLocked() {
	if !c.over {
		c.over = true
		close(c.complete)
	}
}

// end marks the capture over, whatever ended it.
func (c *capture) end() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.finishLocked()
}

// onState follows the agent's connection for the messages of Capture, and
// logs failures when no progress line shows them.
func (c *capture) onState(s State) {
	c.mu.Lock()
	if c.over {
		// The capture stops the agent itself: keep the state it ended in.
		c.mu.Unlock()
		return
	}
	switch s.Status {
	case StatusConnected:
		c.connected, c.ever = true, true
	case StatusReconnecting:
		c.connected, c.lastErr = false, s.Err
	default:
		c.connected = false
	}
	quiet := c.cfg.Progress != nil
	c.mu.Unlock()
	c.notify()
	if s.Status == StatusReconnecting && !quiet {
		c.cfg.Agent.Logger.Warn("relay connection failed; retrying",
			"attempt", s.Attempt, "in", time.Until(s.RetryAt).Round(time.Millisecond), "err", s.Err)
	}
}

// render rewrites the progress line.
func (c *capture) render(deadline time.Time) {
	c.mu.Lock()
	var line string
	left := c.cfg.Count - c.got
	switch {
	case c.connected:
		noun := "webhooks"
		if left == 1 {
			noun = "webhook"
		}
		line = fmt.Sprintf("waiting for %d more %s on %s", left, noun, c.cfg.Channel)
	case c.lastErr != nil:
		line = fmt.Sprintf("reconnecting to the relay (%v)", c.lastErr)
	default:
		line = "connecting to " + c.cfg.Agent.ServerURL
	}
	c.mu.Unlock()
	if !deadline.IsZero() {
		line += fmt.Sprintf(", %s left", max(time.Until(deadline), 0).Round(time.Second))
	}
	fmt.Fprint(c.cfg.Progress, "\r\x1b[K"+line)
}
