package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/client"
	"github.com/hookrelay/hookrelay/server"
	"github.com/hookrelay/hookrelay/server/cluster"
	"github.com/hookrelay/hookrelay/server/store"
	"github.com/hookrelay/hookrelay/server/store/postgres"
	"github.com/hookrelay/hookrelay/server/store/postgres/pgtest"
)

// The cluster harness: N relay nodes in this process sharing one
// PostgreSQL schema, as N processes behind a load balancer would.
//
//	c := startCluster(t, 3)            // skips without HOOKRELAY_TEST_POSTGRES
//	n1, n2 := c.Nodes[0], c.Nodes[1]   // each a relayEnv: channel, startAgent, ingress, ...
//	c.LB.URL                           // any node, round robin: for agents that must move on
//	n1.Kill()                          // cut off: its database, tunnels and listener, no goodbye
//	pgtest.Terminate(t, n2.App)        // kill n2's database connections (store and cluster)
//
// Each node reaches the database through a proxy of its own (Node.DB), so
// that one node can lose it alone; its connections carry the application
// name Node.App, and its listening connection App+"-listen".

// clusterEnv is relay nodes on one database, and a balancer before them.
type clusterEnv struct {
	t     testing.TB
	dbURL string // the schema's
	opts  []relayOption
	Nodes []*nodeEnv
	LB    *balancer
}

// nodeEnv is one relay node of a clusterEnv.
type nodeEnv struct {
	*relayEnv
	ID      string            // its cluster node id
	App     string            // application_name of its database connections
	DB      *pgtest.Proxy     // its way to the database
	Cluster *cluster.Postgres // its cluster.Node
	lb      *balancer
}

// startCluster starts n nodes on a fresh schema, each with opts, and a
// balancer before them. Everything stops at cleanup.
func startCluster(t testing.TB, n int, opts ...relayOption) *clusterEnv {
	t.Helper()
	c := &clusterEnv{t: t, dbURL: pgtest.Schema(t), opts: opts, LB: newBalancer(t)}
	for range n {
		c.AddNode()
	}
	return c
}

// AddNode starts one more node and puts it behind the balancer.
func (c *clusterEnv) AddNode() *nodeEnv {
	t := c.t
	t.Helper()
	proxy, viaProxy := pgtest.NewProxy(t, c.dbURL)
	app := pgtest.AppName()
	url := pgtest.WithParam(t, viaProxy, "application_name", app)
	id := fmt.Sprintf("node%d", len(c.Nodes)+1)
	node, err := cluster.NewPostgres(t.Context(), cluster.PostgresConfig{
		URL: url, NodeID: id, QueryTimeout: 2 * time.Second, MaxListenBackoff: 500 * time.Millisecond,
	})
	if err != nil {
		t.Fatalf("cluster node %s: %v", id, err)
	}
	t.Cleanup(func() { node.Close() }) // after the relay's Stop, registered below
	opts := append([]relayOption{func(cfg *server.Config) { cfg.NodeID, cfg.Cluster = id, node }}, c.opts...)
	env := startRelayOn(t, func() (store.Store, error) {
		return postgres.Open(context.Background(), url, postgres.Options{ConnectTimeout: time.Second, QueryTimeout: 2 * time.Second})
	}, opts...)
	nd := &nodeEnv{relayEnv: env, ID: id, App: app, DB: proxy, Cluster: node, lb: c.LB}
	c.LB.add(nd.addr)
	c.Nodes = append(c.Nodes, nd)
	return nd
}

// Kill cuts the node off as a crash would, with no graceful step: it loses
// the database first (nothing it does from now on reaches the others), then
// the balancer drops it and cuts the connections it passed to it. The
// relay's goroutines end at cleanup. Clients that must survive a kill
// connect through the balancer.
func (nd *nodeEnv) Kill() {
	nd.DB.Down()
	nd.lb.remove(nd.addr)
}

// balancer is a TCP load balancer on 127.0.0.1: each new connection goes
// to the next live node, round robin.
type balancer struct {
	t   testing.TB
	ln  net.Listener
	URL string

	mu       sync.Mutex // guards the fields below
	backends []string
	next     int
	conns    map[string]map[net.Conn]struct{} // backend → connections to and from it
	wg       sync.WaitGroup
}

func newBalancer(t testing.TB) *balancer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &balancer{t: t, ln: ln, URL: "http://" + ln.Addr().String(), conns: make(map[string]map[net.Conn]struct{})}
	b.wg.Add(1)
	go b.serve()
	t.Cleanup(b.close)
	return b
}

func (b *balancer) add(addr string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.backends = append(b.backends, addr)
	b.conns[addr] = make(map[net.Conn]struct{})
}

// remove takes addr out of the rotation and cuts its connections.
func (b *balancer) remove(addr string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, a := range b.backends {
		if a == addr {
			b.backends = append(b.backends[:i], b.backends[i+1:]...)
		}
	}
	for c := range b.conns[addr] {
		c.Close()
	}
	delete(b.conns, addr)
}

func (b *balancer) serve() {
	defer b.wg.Done()
	for {
		in, err := b.ln.Accept()
		if err != nil {
			return
		}
		b.mu.Lock()
		if len(b.backends) == 0 {
			b.mu.Unlock()
			in.Close()
			continue
		}
		addr := b.backends[b.next%len(b.backends)]
		b.next++
		b.mu.Unlock()
		out, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			in.Close()
			continue
		}
		b.mu.Lock()
		live := b.conns[addr] != nil
		if live {
			b.conns[addr][in], b.conns[addr][out] = struct{}{}, struct{}{}
		}
		b.mu.Unlock()
		if !live {
			in.Close()
			out.Close()
			continue
		}
		b.wg.Add(2)
		go b.pipe(addr, in, out)
		go b.pipe(addr, out, in)
	}
}

// pipe copies src to dst until either ends, then closes both.
func (b *balancer) pipe(addr string, dst, src net.Conn) {
	defer b.wg.Done()
	_, _ = io.Copy(dst, src) // the end of either side ends the pair
	dst.Close()
	src.Close()
	b.mu.Lock()
	delete(b.conns[addr], dst)
	delete(b.conns[addr], src)
	b.mu.Unlock()
}

func (b *balancer) close() {
	b.ln.Close()
	b.mu.Lock()
	for _, cs := range b.conns {
		for c := range cs {
			c.Close()
		}
	}
	b.mu.Unlock()
	b.wg.Wait()
}

// liveStream is an open inspector stream (GET /api/v1/channels/:id/stream).
type liveStream struct {
	resp   *http.Response
	events chan sseMessage // closed when the stream ends
}

// sseMessage is one server-sent event.
type sseMessage struct{ name, data string }

// openStream opens a channel's live stream on a node with the admin token
// and waits for its "ready".
func openStream(t *testing.T, baseURL, channel string) *liveStream {
	t.Helper()
	s := openSSE(t, baseURL+"/api/v1/channels/"+channel+"/stream")
	if m := s.next(t); m.name != "ready" {
		t.Fatalf("stream's first message: %+v, want ready", m)
	}
	return s
}

// openSSE opens a server-sent event stream with the admin token; it is
// closed at cleanup.
func openSSE(t *testing.T, url string) *liveStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("open stream: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		cancel()
		resp.Body.Close()
		t.Fatalf("open stream %s: %d", url, resp.StatusCode)
	}
	s := &liveStream{resp: resp, events: make(chan sseMessage, 256)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(s.events)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<20)
		var m sseMessage
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				m.name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				m.data = strings.TrimPrefix(line, "data: ")
			case line == "" && (m.name != "" || m.data != ""):
				s.events <- m
				m = sseMessage{}
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		resp.Body.Close()
		<-done
	})
	return s
}

// next returns the stream's next message.
func (s *liveStream) next(t *testing.T) sseMessage {
	t.Helper()
	select {
	case m, ok := <-s.events:
		if !ok {
			t.Fatal("the stream ended")
		}
		return m
	case <-time.After(20 * time.Second):
		t.Fatal("no stream message within 20s")
	}
	return sseMessage{}
}

// TestClusterStreamShowsEventOfOtherNode: the inspector's live stream on
// node 2 shows an event posted on node 1, and a long-poll on node 2 wakes
// for it; after node 2's LISTEN connection is killed, the stream resyncs
// and shows node 1's events again.
func TestClusterStreamShowsEventOfOtherNode(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 2)
	n1, n2 := c.Nodes[0], c.Nodes[1]
	ch := n1.channel(t, client.CreateChannel{})
	stream := openStream(t, n2.URL, ch)

	type page struct {
		Events []struct {
			ID   string `json:"id"`
			Path string `json:"path"`
		} `json:"events"`
	}
	polled := make(chan page, 1)
	go func() {
		var p page
		err := n2.api().Do(context.Background(), http.MethodGet, "/api/v1/channels/"+ch+"/events?wait=30s", nil, &p)
		if err != nil {
			t.Errorf("long-poll on node 2: %v", err)
		}
		polled <- p
	}()
	// The long-poll is registered once node 2 counts it.
	waitFor(t, 10*time.Second, "the long-poll on node 2", func() bool {
		return strings.Contains(metricsText(t, n2.relayEnv), "hookrelay_long_polls_waiting 1")
	})

	resp, body := post(t, n1.ingress(ch)+"/from-node-1", "application/json", []byte(`{"hello":"cluster"}`))
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("webhook to node 1: %d %s", resp.StatusCode, body)
	}
	id := resp.Header.Get("Hookrelay-Event-Id")
	m := stream.next(t)
	var ev struct {
		ID, Path, Channel string
		Size              int
	}
	if err := json.Unmarshal([]byte(m.data), &ev); m.name != "event" || err != nil {
		t.Fatalf("stream on node 2: %+v (%v), want the event", m, err)
	}
	if ev.ID != id || ev.Path != "/from-node-1" || ev.Channel != ch || ev.Size != len(`{"hello":"cluster"}`) {
		t.Fatalf("stream on node 2 shows %+v, want event %s at /from-node-1", ev, id)
	}
	p := <-polled
	if len(p.Events) != 1 || p.Events[0].ID != id {
		t.Fatalf("long-poll on node 2 answered %+v, want event %s", p, id)
	}

	// Node 2 loses its LISTEN connection: once it listens again its
	// stream is told to resync (what was notified meanwhile is lost), and
	// events of node 1 show again.
	if n := pgtest.Terminate(t, n2.App+"-listen"); n != 1 {
		t.Fatalf("terminated %d listening connections of node 2, want 1", n)
	}
	if m := stream.next(t); m.name != "resync" {
		t.Fatalf("stream on node 2 after its LISTEN connection was killed: %+v, want resync", m)
	}
	resp, body = post(t, n1.ingress(ch)+"/after", "text/plain", []byte("after"))
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("webhook to node 1: %d %s", resp.StatusCode, body)
	}
	if m := stream.next(t); m.name != "event" || !strings.Contains(m.data, resp.Header.Get("Hookrelay-Event-Id")) {
		t.Fatalf("stream on node 2 after re-listening: %+v, want the new event", m)
	}
}

// TestClusterSmeeFeedShowsEventOfOtherNode: a smee-compatible event stream
// on node 2 carries a webhook posted on node 1.
func TestClusterSmeeFeedShowsEventOfOtherNode(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 2)
	n1, n2 := c.Nodes[0], c.Nodes[1]
	ch := n1.channel(t, client.CreateChannel{})
	feed := openSSE(t, n2.ingress(ch))
	// The feed joins its channel once it has caught up from the store:
	// post until the stream carries one (those before may be skipped as
	// older than the stream, never later ones).
	marker := "smee-across-nodes"
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; ; i++ {
		resp, body := post(t, n1.ingress(ch), "application/json", fmt.Appendf(nil, `{"marker":%q,"n":%d}`, marker, i))
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("webhook to node 1: %d %s", resp.StatusCode, body)
		}
		select {
		case m, ok := <-feed.events:
			if !ok {
				t.Fatal("the smee stream ended")
			}
			if strings.Contains(m.data, marker) {
				return
			}
		case <-time.After(time.Second):
		}
		if time.Now().After(deadline) {
			t.Fatal("node 2's smee stream never carried a webhook posted on node 1")
		}
	}
}

// TestClusterAgentsListAndReplayFromOtherNode: an agent on node 1 is listed
// by node 2 with its node; node 2's stream shows a delivery made on node
// 1; a plain replay asked of node 2 reaches the agent.
func TestClusterAgentsListAndReplayFromOtherNode(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 2)
	n1, n2 := c.Nodes[0], c.Nodes[1]
	ch := n1.channel(t, client.CreateChannel{})
	var mu sync.Mutex
	got := make(map[string]int) // event id → deliveries
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got[r.Header.Get("Hookrelay-Event-Id")]++
		mu.Unlock()
		w.WriteHeader(http.StatusCreated)
	}))
	t.Cleanup(app.Close)
	n1.startAgent(t, ch, app.URL)

	type agentsPage struct {
		Agents []struct {
			SessionID string `json:"session_id"`
			Group     string `json:"group"`
			Host      string `json:"host"`
			Node      string `json:"node"`
		} `json:"agents"`
	}
	var listed agentsPage
	waitFor(t, 20*time.Second, "node 2 to list the agent of node 1", func() bool {
		listed = agentsPage{}
		err := n2.api().Do(context.Background(), http.MethodGet, "/api/v1/channels/"+ch+"/agents", nil, &listed)
		return err == nil && len(listed.Agents) == 1
	})
	if a := listed.Agents[0]; a.Node != n1.ID || a.Host != "test-host" || a.SessionID == "" {
		t.Fatalf("node 2 lists %+v, want the agent of test-host on %s", a, n1.ID)
	}
	// The channel as node 2 shows it, alone and in the list, counts it.
	var one struct {
		Agents int `json:"agents"`
	}
	if err := n2.api().Do(context.Background(), http.MethodGet, "/api/v1/channels/"+ch, nil, &one); err != nil || one.Agents != 1 {
		t.Fatalf("node 2 shows the channel with %d agents (%v), want 1", one.Agents, err)
	}
	var all struct {
		Channels []struct {
			ID     string `json:"id"`
			Agents int    `json:"agents"`
		} `json:"channels"`
	}
	if err := n2.api().Do(context.Background(), http.MethodGet, "/api/v1/channels", nil, &all); err != nil {
		t.Fatal(err)
	}
	for _, c := range all.Channels {
		if c.ID == ch && c.Agents != 1 {
			t.Fatalf("node 2 lists the channel with %d agents, want 1", c.Agents)
		}
	}

	stream := openStream(t, n2.URL, ch)
	resp, body := post(t, n1.ingress(ch), "text/plain", []byte("replay me"))
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("webhook to node 1: %d %s", resp.StatusCode, body)
	}
	id := resp.Header.Get("Hookrelay-Event-Id")
	// Node 2's stream shows the event and then its delivery on node 1.
	var delivery struct {
		EventID string `json:"event_id"`
		Status  int    `json:"status"`
		Done    bool   `json:"done"`
	}
	if m := stream.next(t); m.name != "event" || !strings.Contains(m.data, id) {
		t.Fatalf("stream on node 2: %+v, want event %s", m, id)
	}
	m := stream.next(t)
	if err := json.Unmarshal([]byte(m.data), &delivery); m.name != "delivery" || err != nil {
		t.Fatalf("stream on node 2 after the event: %+v (%v), want its delivery", m, err)
	}
	if delivery.EventID != id || delivery.Status != http.StatusCreated || !delivery.Done {
		t.Fatalf("delivery on node 2's stream: %+v, want event %s delivered with 201", delivery, id)
	}
	var replayed struct {
		Groups []string `json:"groups"`
	}
	if err := n2.api().Do(context.Background(), http.MethodPost, "/api/v1/events/"+id+"/replay", nil, &replayed); err != nil {
		t.Fatalf("replay on node 2: %v", err)
	}
	if len(replayed.Groups) != 1 || replayed.Groups[0] != listed.Agents[0].Group {
		t.Fatalf("replay on node 2 went to %v, want [%s]", replayed.Groups, listed.Agents[0].Group)
	}
	waitFor(t, 20*time.Second, "the replay to reach the app", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return got[id] == 2
	})
}

// TestClusterInspectorSessionOnEveryNode: a session signed in on node 1
// works on node 2; signed out on node 2, it is over on node 1 too.
func TestClusterInspectorSessionOnEveryNode(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 2)
	n1, n2 := c.Nodes[0], c.Nodes[1]
	resp, body := do(t, http.MethodPost, n1.URL+"/ui/login", map[string]string{"Content-Type": "application/json"},
		[]byte(`{"token":"`+adminToken+`"}`))
	var cookie string
	for _, ck := range resp.Cookies() {
		if ck.Name == "hookrelay_session" {
			cookie = ck.Name + "=" + ck.Value
		}
	}
	if resp.StatusCode != http.StatusOK || cookie == "" {
		t.Fatalf("sign in on node 1: %d %s, cookie %q", resp.StatusCode, body, cookie)
	}
	withCookie := map[string]string{"Cookie": cookie}
	resp, body = do(t, http.MethodGet, n2.URL+"/ui/session", withCookie, nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"signed_in":true`) {
		t.Fatalf("session on node 2: %d %s", resp.StatusCode, body)
	}
	if resp, body := do(t, http.MethodGet, n2.URL+"/api/v1/channels", withCookie, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("API on node 2 with node 1's session: %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, http.MethodPost, n2.URL+"/ui/logout", map[string]string{"Cookie": cookie, "Origin": n2.URL}, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("sign out on node 2: %d %s", resp.StatusCode, body)
	}
	if resp, body := do(t, http.MethodGet, n1.URL+"/api/v1/channels", withCookie, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("API on node 1 after signing out on node 2: %d %s, want 401", resp.StatusCode, body)
	}
}

// agentsOn lists a channel's agents as a node sees them: node id by
// session.
func (nd *nodeEnv) agentsOn(t *testing.T, channel string) map[string]string {
	t.Helper()
	var out struct {
		Agents []struct {
			SessionID string `json:"session_id"`
			Node      string `json:"node"`
		} `json:"agents"`
	}
	if err := nd.api().Do(context.Background(), http.MethodGet, "/api/v1/channels/"+channel+"/agents", nil, &out); err != nil {
		return nil
	}
	m := make(map[string]string)
	for _, a := range out.Agents {
		m[a.SessionID] = a.Node
	}
	return m
}

// through makes an agent connect through the cluster's balancer.
func (c *clusterEnv) through() agentOption {
	return func(cfg *client.Config) { cfg.ServerURL = c.LB.URL }
}

// TestClusterGracefulStopMovesAgents: a node that stops gracefully tells
// its agent to reconnect elsewhere; the agent reaches the other node
// through the balancer, the agents list shows it there and no longer on
// the stopped node, and webhooks to the other node get the app's answer.
func TestClusterGracefulStopMovesAgents(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 2)
	ch := c.Nodes[0].channel(t, client.CreateChannel{})
	c.Nodes[0].startAgent(t, ch, echoApp(t).URL, c.through())
	var on *nodeEnv
	waitFor(t, 20*time.Second, "the agent in the list", func() bool {
		for _, node := range c.Nodes[0].agentsOn(t, ch) {
			for _, nd := range c.Nodes {
				if nd.ID == node {
					on = nd
				}
			}
		}
		return on != nil
	})
	other := c.Nodes[0]
	if on == c.Nodes[0] {
		other = c.Nodes[1]
	}
	c.LB.remove(on.addr) // as a load balancer does once the node stops answering /readyz
	on.Stop()
	waitFor(t, 20*time.Second, "the agent on the other node only", func() bool {
		agents := other.agentsOn(t, ch)
		if len(agents) != 1 {
			return false
		}
		for _, node := range agents {
			return node == other.ID
		}
		return false
	})
	resp, body := post(t, other.ingress(ch), "text/plain", []byte("after the move"))
	if resp.StatusCode != http.StatusOK || string(body) != "after the move" {
		t.Fatalf("webhook to the remaining node: %d %s, want the app's answer", resp.StatusCode, body)
	}
}
