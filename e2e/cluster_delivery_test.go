package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/client"
	"github.com/hookrelay/hookrelay/server"
	"github.com/hookrelay/hookrelay/server/store/postgres/pgtest"
)

// Delivery across the nodes of a cluster (issue 10, items 2 and 4).

// loadResult is what a spread load got back.
type loadResult struct {
	accepted    []string // bodies answered 2xx: stored, must be delivered
	unavailable int      // 503 with Retry-After
	failed      int      // no answer (the node was cut off)
}

// sendLoad posts n webhooks with bodies "NAME-i" from senders goroutines,
// the i-th to urls[i % len(urls)], and calls mid once (on a goroutine of
// its own, waited for) when a third of them were sent. A 2xx answer means
// stored; 503 must come with Retry-After; no answer is counted, anything
// else fails the test.
func sendLoad(t *testing.T, name string, urls []string, n, senders int, mid func()) loadResult {
	t.Helper()
	tr := &http.Transport{MaxIdleConnsPerHost: senders}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	var (
		mu       sync.Mutex
		res      loadResult
		next     atomic.Int64
		wg       sync.WaitGroup
		midOnce  sync.Once
		midDone  = make(chan struct{})
		midStart = int64(n / 3)
	)
	if mid == nil {
		close(midDone)
	}
	for range senders {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				if i == midStart && mid != nil {
					midOnce.Do(func() {
						go func() {
							defer close(midDone)
							mid()
						}()
					})
				}
				body := fmt.Sprintf("%s-%d", name, i)
				resp, err := hc.Post(urls[int(i)%len(urls)], "text/plain", bytes.NewReader([]byte(body)))
				if err != nil {
					mu.Lock()
					res.failed++
					mu.Unlock()
					continue
				}
				msg, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				mu.Lock()
				switch {
				case resp.StatusCode >= 200 && resp.StatusCode < 300:
					res.accepted = append(res.accepted, body)
				case resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") != "":
					res.unavailable++
				default:
					t.Errorf("webhook %s: %d %s", body, resp.StatusCode, msg)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	<-midDone
	return res
}

// waitDelivered waits until the app got every accepted body at least once
// and returns how many deliveries were duplicates.
func waitDelivered(t *testing.T, bc *bodyCounter, accepted []string, within time.Duration) (dups int) {
	t.Helper()
	waitFor(t, within, fmt.Sprintf("%d accepted webhooks delivered", len(accepted)), func() bool {
		for _, b := range accepted {
			if bc.count(b) == 0 {
				return false
			}
		}
		return true
	})
	for _, b := range accepted {
		if c := bc.count(b); c > 1 {
			dups += c - 1
		}
	}
	return dups
}

// waitListed waits until node lists n agents of the channel, on any node.
func waitListed(t *testing.T, node *nodeEnv, channel string, n int) {
	t.Helper()
	waitFor(t, 20*time.Second, fmt.Sprintf("%s to list %d agents", node.ID, n), func() bool {
		return len(node.agentsOn(t, channel)) == n
	})
}

// TestClusterSyncAnswerAcrossNodes: three nodes; an agent on node 1; a
// sync webhook posted to node 2 (and one to node 3) gets the app's answer,
// status, headers and body, from the agent on node 1.
func TestClusterSyncAnswerAcrossNodes(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-App", "answered")
		w.WriteHeader(http.StatusTeapot)
		w.Write(append([]byte("app got: "), b...))
	}))
	t.Cleanup(app.Close)
	ch := c.Nodes[0].channel(t, client.CreateChannel{})
	c.Nodes[0].startAgent(t, ch, app.URL)
	for _, nd := range c.Nodes[1:] {
		waitListed(t, nd, ch, 1)
		// The node reads other nodes' agents at most once a second.
		var resp *http.Response
		var body []byte
		waitFor(t, 10*time.Second, "a sync answer through "+nd.ID, func() bool {
			resp, body = post(t, nd.ingress(ch), "text/plain", []byte("from "+nd.ID))
			return resp.StatusCode != http.StatusAccepted
		})
		if resp.StatusCode != http.StatusTeapot || resp.Header.Get("X-App") != "answered" || string(body) != "app got: from "+nd.ID {
			t.Fatalf("webhook to %s: %d X-App %q %q, want the app's 418 and body", nd.ID, resp.StatusCode, resp.Header.Get("X-App"), body)
		}
	}
}

// TestClusterGroupOnTwoNodesGetsEachEventOnce: one group with an agent on
// each of two nodes; 2,000 webhooks spread over both nodes are each
// delivered exactly once.
func TestClusterGroupOnTwoNodesGetsEachEventOnce(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 2)
	bc, app := newBodyCounter(t)
	ch := c.Nodes[0].channel(t, client.CreateChannel{Async: true})
	c.Nodes[0].startAgent(t, ch, app.URL, group("shared"))
	c.Nodes[1].startAgent(t, ch, app.URL, group("shared"))
	waitListed(t, c.Nodes[0], ch, 2)
	res := sendLoad(t, "once", []string{c.Nodes[0].ingress(ch), c.Nodes[1].ingress(ch)}, 2000, 32, nil)
	if len(res.accepted) != 2000 {
		t.Fatalf("%d of 2000 webhooks accepted (%d unavailable, %d failed)", len(res.accepted), res.unavailable, res.failed)
	}
	if dups := waitDelivered(t, bc, res.accepted, 60*time.Second); dups != 0 {
		t.Fatalf("%d duplicate deliveries, want each event exactly once", dups)
	}
}

// TestClusterNodeKilledMidLoadLosesNothing: three nodes behind a balancer,
// two agents of one group connected through it; a third of the way into
// 1,500 webhooks one node is killed (its database, tunnels and listener
// cut, no graceful step). Every webhook answered 2xx is delivered; its
// agents move to the other nodes, and the events it held claims on are
// taken over when the leases end. Duplicates are counted and bounded.
func TestClusterNodeKilledMidLoadLosesNothing(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3, func(cfg *server.Config) { cfg.ClaimLease = 2 * time.Second })
	bc, app := newBodyCounter(t)
	ch := c.Nodes[0].channel(t, client.CreateChannel{Async: true})
	const concurrency = 8
	limited := func(cfg *client.Config) { cfg.Concurrency = concurrency }
	c.Nodes[0].startAgent(t, ch, app.URL, group("g"), c.through(), limited)
	c.Nodes[0].startAgent(t, ch, app.URL, group("g"), c.through(), limited)
	waitListed(t, c.Nodes[0], ch, 2)
	victim := c.Nodes[0]
	agentsOf := func(nd *nodeEnv) (n int) {
		for _, node := range c.Nodes[2].agentsOn(t, ch) {
			if node == nd.ID {
				n++
			}
		}
		return n
	}
	for _, nd := range c.Nodes { // kill a node that holds an agent
		if agentsOf(nd) > 0 {
			victim = nd
		}
	}
	const n = 1500
	res := sendLoad(t, "kill", []string{c.LB.URL + "/h/" + ch}, n, 16, victim.Kill)
	dups := waitDelivered(t, bc, res.accepted, 90*time.Second)
	t.Logf("killed %s: %d accepted, %d unanswered, %d unavailable; %d duplicate deliveries",
		victim.ID, len(res.accepted), res.failed, res.unavailable, dups)
	if len(res.accepted) < n/2 {
		t.Fatalf("only %d of %d webhooks accepted", len(res.accepted), n)
	}
	// What may come twice: what the killed node delivered but could not
	// record any more: the deliveries in flight to its agents (at most
	// their concurrency) and those finished while its last write to the
	// database was under way (a few round trips' worth; under -race on a
	// busy machine, tens). Not a share of the load: it does not grow with
	// the number of webhooks.
	if limit := 100; dups > limit {
		t.Fatalf("%d duplicate deliveries, want at most %d (the killed node's deliveries in flight)", dups, limit)
	}
}

// TestClusterPostgresConnectionsKilledMidLoad: two nodes, an agent of one
// group on each; in the middle of 1,500 webhooks every database connection
// of both nodes is killed with pg_terminate_backend, five times. Webhooks
// meanwhile get 2xx or 503 with Retry-After, never anything else; every
// 2xx is delivered, and nothing needs a restart. Duplicates are counted
// and bounded.
func TestClusterPostgresConnectionsKilledMidLoad(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 2, func(cfg *server.Config) { cfg.ClaimLease = 2 * time.Second })
	bc, app := newBodyCounter(t)
	ch := c.Nodes[0].channel(t, client.CreateChannel{Async: true})
	const concurrency = 8
	limited := func(cfg *client.Config) { cfg.Concurrency = concurrency }
	c.Nodes[0].startAgent(t, ch, app.URL, group("g"), limited)
	c.Nodes[1].startAgent(t, ch, app.URL, group("g"), limited)
	waitListed(t, c.Nodes[0], ch, 2)
	killed := 0
	res := sendLoad(t, "pgkill", []string{c.Nodes[0].ingress(ch), c.Nodes[1].ingress(ch)}, 1500, 16, func() {
		for range 5 {
			for _, nd := range c.Nodes {
				killed += pgtest.Terminate(t, nd.App) + pgtest.Terminate(t, nd.App+"-listen")
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
	if killed == 0 {
		t.Fatal("no database connection was killed")
	}
	if res.failed > 0 {
		t.Errorf("%d webhooks got no answer; want 2xx or 503", res.failed)
	}
	dups := waitDelivered(t, bc, res.accepted, 90*time.Second)
	t.Logf("killed %d connections: %d accepted, %d answered 503; %d duplicate deliveries", killed, len(res.accepted), res.unavailable, dups)
	// A node keeps the claims of the events it delivered until their
	// records are written and the claims finished (renewed on a goroutine
	// of their own), and a node that takes a lapsed claim first checks the
	// store. What may still come twice: the events a node delivered and
	// could not record while every one of its renewals failed for a whole
	// lease; it claims no more meanwhile, so at most what its agent had
	// in hand. (Before those fixes: 0-137 duplicates in 6 runs under
	// -race; after: 0 in 14.)
	if limit := 2 * concurrency; dups > limit {
		t.Fatalf("%d duplicate deliveries, want at most %d (what the agents had in hand when a node's renewals failed for a lease)", dups, limit)
	}
	// Afterwards both nodes take webhooks and deliver them.
	after := sendLoad(t, "after", []string{c.Nodes[0].ingress(ch), c.Nodes[1].ingress(ch)}, 20, 2, nil)
	if len(after.accepted) != 20 {
		t.Fatalf("after the kills: %d of 20 accepted", len(after.accepted))
	}
	waitDelivered(t, bc, after.accepted, 30*time.Second)
}
