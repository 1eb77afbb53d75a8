package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// The tests in this file kill hookrelay processes with SIGKILL, as a crash
// or the OOM killer would, and check that no accepted webhook is lost.

const killTestToken = "hr_kill_test_admin_token"

// startRelayProc runs "hookrelay server" on addr with dataDir and a fixed
// admin token and waits until it listens; the proc's addr is the address it
// bound. Tests start on 127.0.0.1:0 and restart on the address the first
// start got. After a SIGKILL the old process's port can take a moment to be
// free again, so a start that fails with "address already in use" is
// retried until the deadline.
func startRelayProc(t *testing.T, addr, dataDir string, extra ...string) *proc {
	t.Helper()
	args := append([]string{"server", "--listen", addr, "--data-dir", dataDir,
		"--admin-token", killTestToken, "--log-level", "warn"}, extra...)
	// Build first: the first test to need the binary pays for compiling it,
	// which must not eat into the time the relay gets to start.
	if _, err := buildBinary(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		p := start(t, nil, args...)
		bound, exited := p.waitListening(time.Until(deadline))
		switch {
		case bound != "":
			p.addr = bound
			return p
		case exited && strings.Contains(p.output(), "address already in use") && time.Now().Before(deadline):
			continue
		}
		t.Fatalf("relay did not start on %s:\n%s", addr, p.output())
	}
}

// waitListening waits up to d for the relay's "listening on" line and
// returns the address it names; exited says whether the process ended
// first.
func (p *proc) waitListening(d time.Duration) (addr string, exited bool) {
	timeout := time.NewTimer(d)
	defer timeout.Stop()
	for {
		select {
		case l := <-p.lines:
			if m := listeningOn.FindStringSubmatch(l); m != nil {
				return m[1], false
			}
		case <-p.done:
			if m := listeningOn.FindStringSubmatch(p.output()); m != nil {
				return m[1], true
			}
			return "", true
		case <-timeout.C:
			return "", false
		}
	}
}

// kill sends SIGKILL and waits until the process is gone.
func (p *proc) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill pid %d: %v", p.cmd.Process.Pid, err)
	}
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("pid %d still running 10s after SIGKILL", p.cmd.Process.Pid)
	}
}

// startAgentProc runs "hookrelay connect" and waits for it to connect.
func startAgentProc(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	p := start(t, env, append([]string{"connect"}, args...)...)
	p.waitLine(t, "connected to", 15*time.Second)
	return p
}

// createChannelProc creates a channel with "hookrelay channel create --json".
func createChannelProc(t *testing.T, env []string) string {
	t.Helper()
	out, code := run(t, env, "channel", "create", "--json")
	if code != 0 {
		t.Fatalf("channel create: exit %d: %s", code, out)
	}
	var ch struct{ ID string }
	if err := json.Unmarshal([]byte(out), &ch); err != nil || ch.ID == "" {
		t.Fatalf("channel create --json printed %q (%v)", out, err)
	}
	return ch.ID
}

// hit is one request the target received.
type hit struct {
	attempt int
	at      time.Time
}

// countingTarget is a webhook target that records every request by its
// Hookrelay-Event-Id, answering 200 after a random delay below maxDelay so
// that deliveries are in flight when an agent dies.
type countingTarget struct {
	*httptest.Server
	mu   sync.Mutex
	hits map[string][]hit
}

func newCountingTarget(t *testing.T, maxDelay time.Duration) *countingTarget {
	ct := &countingTarget{hits: make(map[string][]hit)}
	ct.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		id := r.Header.Get("Hookrelay-Event-Id")
		attempt, _ := strconv.Atoi(r.Header.Get("Hookrelay-Delivery-Attempt"))
		ct.mu.Lock()
		ct.hits[id] = append(ct.hits[id], hit{attempt: attempt, at: time.Now()})
		ct.mu.Unlock()
		if maxDelay > 0 {
			timer := time.NewTimer(rand.N(maxDelay))
			defer timer.Stop()
			select {
			case <-timer.C:
			case <-r.Context().Done():
				return
			}
		}
		fmt.Fprint(w, "ok")
	}))
	t.Cleanup(ct.Close) // registered before the processes: runs after they stop
	return ct
}

// missing returns how many of ids the target has not received yet.
func (ct *countingTarget) missing(ids []string) int {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	n := 0
	for _, id := range ids {
		if len(ct.hits[id]) == 0 {
			n++
		}
	}
	return n
}

func (ct *countingTarget) snapshot() map[string][]hit {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	out := make(map[string][]hit, len(ct.hits))
	for id, hs := range ct.hits {
		out[id] = append([]hit(nil), hs...)
	}
	return out
}

// senderResult is the relay's answer to one webhook.
type senderResult struct {
	status  int
	eventID string
	body    string
}

// postWebhook sends one webhook and returns the relay's answer.
func postWebhook(hc *http.Client, url string, body []byte) (senderResult, error) {
	resp, err := hc.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return senderResult{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return senderResult{}, err
	}
	res := senderResult{status: resp.StatusCode, eventID: resp.Header.Get("Hookrelay-Event-Id"), body: string(b)}
	if res.eventID == "" && resp.StatusCode == http.StatusAccepted {
		var queued struct {
			EventID string `json:"event_id"`
		}
		_ = json.Unmarshal(b, &queued)
		res.eventID = queued.EventID
	}
	return res, nil
}

// eventStates pages through a channel's events and returns how many the
// relay lists and how many of those it counts as delivered.
func eventStates(base, channel string) (listed, delivered int, err error) {
	hc := &http.Client{Timeout: 10 * time.Second}
	before := ""
	for range 1000 { // bounded: 500 events a page
		q := url.Values{"limit": {"500"}}
		if before != "" {
			q.Set("before", before)
		}
		req, err := http.NewRequest(http.MethodGet, base+"/api/v1/channels/"+channel+"/events?"+q.Encode(), nil)
		if err != nil {
			return 0, 0, err
		}
		req.Header.Set("Authorization", "Bearer "+killTestToken)
		resp, err := hc.Do(req)
		if err != nil {
			return 0, 0, err
		}
		var page struct {
			Events []struct {
				Delivered bool `json:"delivered"`
			} `json:"events"`
			NextCursor string `json:"next_cursor"`
		}
		err = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		if err != nil {
			return 0, 0, fmt.Errorf("events page: %d: %w", resp.StatusCode, err)
		}
		for _, ev := range page.Events {
			listed++
			if ev.Delivered {
				delivered++
			}
		}
		if page.NextCursor == "" || len(page.Events) == 0 {
			return listed, delivered, nil
		}
		before = page.NextCursor
	}
	return listed, delivered, fmt.Errorf("more than 1000 pages of events")
}

// pollUntil calls cond every 20ms until it holds or d has passed.
func pollUntil(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		<-tick.C
	}
	return true
}

// TestAgentKilledThreeTimesNothingLost posts 2,000 webhooks while the agent
// process is SIGKILLed and restarted three times. Every sender gets 200 or
// 202, every event reaches the target, and an event reaches it twice only
// when an attempt was in flight as the agent died.
func TestAgentKilledThreeTimesNothingLost(t *testing.T) {
	t.Parallel()
	const (
		total            = 2000
		senders          = 16
		agentConcurrency = 8
		kills            = 3
		sendRate         = 250 // webhooks a second: the run spans the kills
	)
	began := time.Now()
	target := newCountingTarget(t, 10*time.Millisecond)
	addr := startRelayProc(t, "127.0.0.1:0", t.TempDir(), "--response-timeout", "2s").addr
	base := "http://" + addr
	env := []string{"HOOKRELAY_SERVER=" + base, "HOOKRELAY_TOKEN=" + killTestToken}
	channel := createChannelProc(t, env)
	agentArgs := []string{channel, "--to", target.URL, "--concurrency", strconv.Itoa(agentConcurrency), "--timeout", "10s"}
	agent := startAgentProc(t, env, agentArgs...)

	// Senders post at a steady rate from 16 goroutines.
	results := make([]senderResult, total)
	sendErrs := make([]error, total)
	var next, answered atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	limiter := rate.NewLimiter(sendRate, 1)
	hc := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: senders}}
	defer hc.CloseIdleConnections()
	var wg sync.WaitGroup
	for range senders {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= total || limiter.Wait(ctx) != nil {
					return
				}
				results[i], sendErrs[i] = postWebhook(hc, base+"/h/"+channel+"/kill", fmt.Appendf(nil, `{"n":%d}`, i))
				answered.Add(1)
			}
		})
	}

	// Kill the agent at a quarter, half and three quarters of the run, each
	// time with deliveries flowing, and start it again at once.
	var killTimes []time.Time
	for k := 1; k <= kills; k++ {
		threshold := int64(k * total / (kills + 1))
		if !pollUntil(30*time.Second, func() bool { return answered.Load() >= threshold }) {
			cancel()
			wg.Wait()
			t.Fatalf("senders stuck at %d of %d answers before kill %d", answered.Load(), total, k)
		}
		agent.kill(t)
		killTimes = append(killTimes, time.Now())
		agent = startAgentProc(t, env, agentArgs...)
	}
	wg.Wait()
	sendDone := time.Now()

	ids := make([]string, 0, total)
	statuses := map[int]int{}
	for i, r := range results {
		if sendErrs[i] != nil {
			t.Errorf("webhook %d: %v", i, sendErrs[i])
			continue
		}
		statuses[r.status]++
		if r.status != http.StatusOK && r.status != http.StatusAccepted {
			t.Errorf("webhook %d: relay answered %d: %s", i, r.status, r.body)
		}
		if r.eventID == "" {
			t.Errorf("webhook %d: answer %d without an event id: %s", i, r.status, r.body)
			continue
		}
		ids = append(ids, r.eventID)
	}
	if t.Failed() {
		t.FailNow()
	}

	// Every event reaches the target, and the relay knows each was delivered
	// (so no retry of an interrupted attempt is still to come).
	var listed, delivered int
	done := pollUntil(40*time.Second, func() bool {
		if target.missing(ids) > 0 {
			return false
		}
		var err error
		listed, delivered, err = eventStates(base, channel)
		return err == nil && delivered == total
	})
	if !done {
		t.Fatalf("%d of %d events never reached the target; the relay lists %d events, %d delivered",
			target.missing(ids), total, listed, delivered)
	}

	hits := target.snapshot()
	duplicates, retried := 0, 0 // retried: duplicates marked attempt >= 2
	for _, id := range ids {
		hs := hits[id]
		for _, h := range hs[1:] {
			duplicates++
			if h.attempt >= 2 {
				retried++
			}
			killedBetween := false
			for _, kt := range killTimes {
				killedBetween = killedBetween || (kt.After(hs[0].at) && !kt.After(h.at))
			}
			if h.attempt < 2 && !killedBetween {
				t.Errorf("event %s delivered again (attempt %d) with no kill since its first delivery", id, h.attempt)
			}
		}
	}
	if extra := len(hits) - len(ids); extra != 0 {
		t.Errorf("the target received %d event ids no sender was given", extra)
	}
	if bound := agentConcurrency * kills; duplicates > bound {
		t.Errorf("%d duplicate deliveries; at most %d attempts can be in flight across %d kills", duplicates, bound, kills)
	}
	t.Logf("%d webhooks (%d answered 200, %d answered 202), %d agent kills: all delivered, %d duplicate deliveries "+
		"(bound %d; %d of them marked attempt >= 2); sending took %s, delivery done %s later, %s in all",
		total, statuses[http.StatusOK], statuses[http.StatusAccepted], kills, duplicates, agentConcurrency*kills, retried,
		sendDone.Sub(began).Round(time.Millisecond), time.Since(sendDone).Round(time.Millisecond),
		time.Since(began).Round(time.Millisecond))
}

// TestRelayKilledWith500QueuedNothingLost queues 500 webhooks with no agent
// connected, SIGKILLs the relay, starts it again on the same data directory
// and address, and connects an agent: all 500 arrive.
func TestRelayKilledWith500QueuedNothingLost(t *testing.T) {
	t.Parallel()
	const (
		total   = 500
		senders = 16
	)
	began := time.Now()
	target := newCountingTarget(t, 0)
	dataDir := t.TempDir()
	relay := startRelayProc(t, "127.0.0.1:0", dataDir, "--response-timeout", "2s")
	addr := relay.addr
	base := "http://" + addr
	env := []string{"HOOKRELAY_SERVER=" + base, "HOOKRELAY_TOKEN=" + killTestToken}
	channel := createChannelProc(t, env)

	results := make([]senderResult, total)
	sendErrs := make([]error, total)
	hc := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: senders}}
	defer hc.CloseIdleConnections()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range senders {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < total; i = int(next.Add(1) - 1) {
				results[i], sendErrs[i] = postWebhook(hc, base+"/h/"+channel, fmt.Appendf(nil, `{"n":%d}`, i))
			}
		})
	}
	wg.Wait()
	ids := make([]string, 0, total)
	for i, r := range results {
		switch {
		case sendErrs[i] != nil:
			t.Fatalf("webhook %d: %v", i, sendErrs[i])
		case r.status != http.StatusAccepted || r.eventID == "":
			t.Fatalf("webhook %d with no agent: relay answered %d (event %q): %s", i, r.status, r.eventID, r.body)
		}
		ids = append(ids, r.eventID)
	}

	// The 202s promised the events are committed: kill the relay at once.
	relay.kill(t)
	hc.CloseIdleConnections()
	startRelayProc(t, addr, dataDir, "--response-timeout", "2s")
	if listed, _, err := eventStates(base, channel); err != nil || listed != total {
		t.Fatalf("after the restart the relay lists %d events (%v), want %d", listed, err, total)
	}
	startAgentProc(t, env, channel, "--to", target.URL)

	if !pollUntil(30*time.Second, func() bool { return target.missing(ids) == 0 }) {
		t.Fatalf("%d of %d queued events never reached the target after the relay restart", target.missing(ids), total)
	}
	// Let the relay record the last deliveries, so that a redelivery of any
	// of them would have shown up at the target.
	var delivered int
	if !pollUntil(10*time.Second, func() bool {
		_, d, err := eventStates(base, channel)
		delivered = d
		return err == nil && d == total
	}) {
		t.Errorf("the relay counts %d of %d events delivered", delivered, total)
	}
	hits := target.snapshot()
	duplicates := 0
	for _, id := range ids {
		duplicates += len(hits[id]) - 1
	}
	// Nothing was in flight when the relay died, so nothing may come twice.
	if duplicates != 0 {
		t.Errorf("%d duplicate deliveries with nothing in flight at the kill", duplicates)
	}
	t.Logf("%d webhooks queued (all 202), relay SIGKILLed and restarted: all delivered, %d duplicates, %s in all",
		total, duplicates, time.Since(began).Round(time.Millisecond))
}
