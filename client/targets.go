package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hookrelay/hookrelay/protocol"
)

// Health checks of targets.
const (
	probeTimeout  = 2 * time.Second // one check: a TCP connection to the target
	probeInterval = 5 * time.Second // default Config.TargetCheckInterval
)

// TargetStatus is the health of one target, as Config.OnTarget gets it.
type TargetStatus struct {
	URL   string    // the target URL
	Known bool      // false until the first check or delivery
	Up    bool      // it accepted a connection or answered a request
	Err   string    // why it is down
	Since time.Time // when it entered this state
}

// GroupStatus is how one of the agent's groups is doing on the relay
// (Config.OnGroupState).
type GroupStatus struct {
	Channel string
	Group   string
	// Paused: the target refused connections; the relay sends one event at
	// a time as a probe, the next at NextTry, and holds the rest back.
	Paused  bool
	NextTry time.Time
	Err     string // paused: the target's last error
}

// target is one URL the agent forwards to, with its connection pool and its
// health.
type target struct {
	url *url.URL
	fwd *forwarder

	mu     sync.Mutex   // guards status
	status TargetStatus // current health
}

// targetSet holds every target of an agent, each once however many routes
// name it. It is the only place forwarders are made: the agent sends to
// these URLs and nowhere else.
type targetSet struct {
	list     []*target
	byURL    map[string]*target
	onChange func(TargetStatus) // called outside mu, in order for each target

	mu      sync.Mutex    // guards changed
	changed chan struct{} // closed and replaced at every change
}

func newTargetSet(urls []*url.URL, preserveHost bool, timeout time.Duration, conns int, tlsConfig *tls.Config) *targetSet {
	s := &targetSet{byURL: make(map[string]*target), changed: make(chan struct{})}
	for _, u := range urls {
		key := u.String()
		if s.byURL[key] != nil {
			continue
		}
		t := &target{url: u, fwd: newForwarder(u, preserveHost, timeout, conns, tlsConfig)}
		t.status = TargetStatus{URL: key, Since: time.Now()}
		s.byURL[key] = t
		s.list = append(s.list, t)
	}
	return s
}

func (s *targetSet) get(u *url.URL) *target { return s.byURL[u.String()] }

func (s *targetSet) closeIdle() {
	for _, t := range s.list {
		t.fwd.closeIdle()
	}
}

// set records a target's health and reports whether it changed.
func (s *targetSet) set(t *target, up bool, reason string) bool {
	if up {
		reason = ""
	}
	t.mu.Lock()
	st := t.status
	if st.Known && st.Up == up {
		t.status.Err = reason // the latest reason, without a new report
		t.mu.Unlock()
		return false
	}
	st.Known, st.Up, st.Err, st.Since = true, up, reason, time.Now()
	t.status = st
	t.mu.Unlock()

	s.mu.Lock()
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	if s.onChange != nil {
		s.onChange(st)
	}
	return true
}

// changes returns a channel closed at the next change of any target.
func (s *targetSet) changes() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// statuses lists every target's health.
func (s *targetSet) statuses() []TargetStatus {
	out := make([]TargetStatus, len(s.list))
	for i, t := range s.list {
		t.mu.Lock()
		out[i] = t.status
		t.mu.Unlock()
	}
	return out
}

// health is the message that tells the relay about the targets.
func (s *targetSet) health() *protocol.Health {
	h := &protocol.Health{Targets: []protocol.TargetHealth{}}
	for _, st := range s.statuses() {
		if !st.Known || len(h.Targets) == protocol.MaxHealthTargets {
			continue
		}
		h.Targets = append(h.Targets, protocol.TargetHealth{
			URL: st.URL, Up: st.Up, Error: printable(st.Err, 1024), Since: st.Since.UTC(),
		})
	}
	return h
}

// observe updates a target's health from the outcome of a delivery: any
// answer means it is up; a failure to get one, down.
func (s *targetSet) observe(t *target, err error) {
	if err == nil {
		s.set(t, true, "")
		return
	}
	if te, ok := errors.AsType[*TargetError](err); ok && te.Code == protocol.ErrCodeTooLarge {
		s.set(t, true, "") // the app answered; its answer was too big
		return
	}
	s.set(t, false, err.Error())
}

// check probes every target once, at the same time.
func (s *targetSet) check(ctx context.Context) {
	var wg sync.WaitGroup
	for _, t := range s.list {
		wg.Go(func() {
			err := t.check(ctx)
			if ctx.Err() == nil {
				s.set(t, err == nil, errText(err))
			}
		})
	}
	wg.Wait()
}

// monitor checks every target now and then, every interval, those that
// are down, until ctx ends.
func (s *targetSet) monitor(ctx context.Context, interval time.Duration) {
	s.check(ctx)
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		for _, t := range s.list {
			t.mu.Lock()
			down := t.status.Known && !t.status.Up
			t.mu.Unlock()
			if down {
				if err := t.check(ctx); err == nil && ctx.Err() == nil {
					s.set(t, true, "")
				}
			}
		}
	}
}

// check opens a connection to the target (with TLS for https) and leaves
// it in the pool for the next delivery.
func (t *target) check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	if err := t.fwd.client.warm(ctx); err != nil {
		return describeDialError(err)
	}
	return nil
}

// probe checks that a target accepts TCP connections.
func probe(ctx context.Context, u *url.URL) error {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", targetAddr(u))
	if err != nil {
		return describeDialError(err)
	}
	return conn.Close()
}

// ProbeTarget checks that a target URL accepts TCP connections, as the
// agent does at start; the error says why not.
func ProbeTarget(ctx context.Context, target string) error {
	u, err := parseTarget(target)
	if err != nil {
		return err
	}
	return probe(ctx, u)
}

// targetAddr is host:port of a target URL.
func targetAddr(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	if u.Scheme == "https" {
		return net.JoinHostPort(u.Hostname(), "443")
	}
	return net.JoinHostPort(u.Hostname(), "80")
}

func describeDialError(err error) error {
	var op *net.OpError
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		if errors.As(err, &op) && op.Addr != nil {
			return fmt.Errorf("connection refused: nothing listens on %s", op.Addr)
		}
		return errors.New("connection refused")
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("no answer within %s", probeTimeout)
	}
	return err
}

// printable replaces control characters with spaces and cuts s to at most
// limit bytes, for text that goes on the wire to the relay.
func printable(s string, limit int) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > limit {
		s = strings.ToValidUTF8(s[:limit], "")
	}
	return s
}
