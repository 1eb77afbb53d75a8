package cluster

import (
	"bytes"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/protocol"
	"github.com/hookrelay/hookrelay/server/store/postgres/pgtest"
)

// newNodes starts n nodes on one fresh schema; node i's connections carry
// the application name apps[i], for pg_terminate_backend. cfg's URL and
// NodeID are filled in per node.
func newNodes(t *testing.T, n int, cfg PostgresConfig) (nodes []*Postgres, recs []*recorder, apps []string) {
	t.Helper()
	url := pgtest.Schema(t)
	for i := range n {
		app := pgtest.AppName()
		c := cfg
		c.URL = pgtest.WithParam(t, url, "application_name", app)
		c.NodeID = string(rune('a'+i)) + "-node"
		node, err := NewPostgres(t.Context(), c)
		if err != nil {
			t.Fatalf("NewPostgres %d: %v", i, err)
		}
		t.Cleanup(func() { node.Close() })
		rec := newRecorder()
		node.Subscribe(rec)
		nodes, recs, apps = append(nodes, node), append(recs, rec), append(apps, app)
	}
	return nodes, recs, apps
}

// TestClaimRace: two nodes claim the same events at once, in batches that
// overlap in different orders; each event is won by exactly one of them.
func TestClaimRace(t *testing.T) {
	t.Parallel()
	nodes, _, _ := newNodes(t, 2, PostgresConfig{})
	const events, batch = 2000, 50
	var mu sync.Mutex
	won := make(map[int64][]string)
	var wg sync.WaitGroup
	for i, node := range nodes {
		wg.Go(func() {
			for lo := int64(1); lo <= events; lo += batch {
				seqs := make([]int64, 0, batch)
				for s := lo; s < lo+batch; s++ {
					seqs = append(seqs, s)
				}
				if i == 1 {
					slices.Reverse(seqs)
				}
				claims, err := node.Claim(t.Context(), 7, seqs, time.Minute)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for k, c := range claims {
					if c.Seq != seqs[k] {
						t.Errorf("claim %d is of seq %d, want %d (the order asked)", k, c.Seq, seqs[k])
					}
					if c.State == ClaimWon {
						won[c.Seq] = append(won[c.Seq], node.ID())
					} else if c.State != ClaimHeld || !c.Until.After(time.Now()) {
						t.Errorf("seq %d: %+v, want won or held for a while", c.Seq, c)
					}
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for s := int64(1); s <= events; s++ {
		if len(won[s]) != 1 {
			t.Fatalf("seq %d won by %v, want exactly one node", s, won[s])
		}
	}
	// Claiming again, each node wins back only its own.
	claims, err := nodes[0].Claim(t.Context(), 7, []int64{1, 2, 3, 4}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range claims {
		if mine := won[c.Seq][0] == nodes[0].ID(); mine != (c.State == ClaimWon) {
			t.Errorf("seq %d claimed again by its holder %v: %v", c.Seq, mine, c.State)
		}
	}
}

// TestLeaseExpiry: a claim whose lease ended (its node died) is taken by
// another node, whose renewals then hold; the first node's renewal fails
// with ErrClaimLost. A released claim is taken at once.
func TestLeaseExpiry(t *testing.T) {
	t.Parallel()
	nodes, _, _ := newNodes(t, 2, PostgresConfig{})
	a, b := nodes[0], nodes[1]
	ctx := t.Context()
	const lease = 300 * time.Millisecond
	claims, err := a.Claim(ctx, 1, []int64{10, 11}, lease)
	if err != nil || claims[0].State != ClaimWon {
		t.Fatalf("a claims: %+v %v", claims, err)
	}
	claims, err = b.Claim(ctx, 1, []int64{10}, time.Minute)
	if err != nil || claims[0].State != ClaimHeld {
		t.Fatalf("b claims a live lease: %+v %v, want held", claims, err)
	}
	// Ask again until the lease is over: Until says when.
	deadline := time.Now().Add(waitLimit)
	for claims[0].State != ClaimWon {
		if time.Now().After(deadline) {
			t.Fatalf("b never took the expired claim: %+v", claims)
		}
		time.Sleep(time.Until(claims[0].Until) + 10*time.Millisecond)
		if claims, err = b.Claim(ctx, 1, []int64{10}, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	err = a.Renew(ctx, 1, []int64{10, 11}, time.Minute)
	var lost *LostError
	if !errors.Is(err, ErrClaimLost) || !errors.As(err, &lost) || !slices.Equal(lost.Seqs, []int64{10}) {
		t.Fatalf("a renews a claim b took: %v, want ErrClaimLost for seq 10 only", err)
	}
	if err := b.Renew(ctx, 1, []int64{10}, time.Minute); err != nil {
		t.Fatalf("b renews: %v", err)
	}
	// A claim a finished itself is not lost: a worker renews the claims
	// of the events it delivered until Finish is known to have worked.
	if err := a.Finish(ctx, 1, []int64{11}); err != nil {
		t.Fatal(err)
	}
	if err := a.Renew(ctx, 1, []int64{11}, time.Minute); err != nil {
		t.Fatalf("a renews a claim it finished: %v, want no error", err)
	}
	if claims, _ := a.Claim(ctx, 1, []int64{10}, time.Minute); claims[0].State != ClaimHeld {
		t.Fatalf("a claims b's renewed claim: %+v, want held", claims)
	}
	// Released: claimable at once.
	if err := b.Release(ctx, 1, []int64{10}); err != nil {
		t.Fatal(err)
	}
	if claims, _ := a.Claim(ctx, 1, []int64{10}, time.Minute); claims[0].State != ClaimWon {
		t.Fatalf("a claims a released claim: %+v, want won", claims)
	}
}

// TestCloseHandsBackClaims: the claims a node still holds when it closes
// are taken by another node at once; finished ones stay done.
func TestCloseHandsBackClaims(t *testing.T) {
	t.Parallel()
	nodes, _, _ := newNodes(t, 2, PostgresConfig{})
	a, b := nodes[0], nodes[1]
	ctx := t.Context()
	if _, err := a.Claim(ctx, 3, []int64{1, 2}, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := a.Finish(ctx, 3, []int64{2}); err != nil {
		t.Fatal(err)
	}
	a.Close()
	claims, err := b.Claim(ctx, 3, []int64{1, 2}, time.Minute)
	if err != nil || claims[0].State != ClaimWon || claims[1].State != ClaimDone {
		t.Fatalf("b claims after a closed: %+v %v, want won and done", claims, err)
	}
}

// TestDoneStaysDone: a finished claim is done for every node, after any
// lease and whoever claims; Finish marks claims nobody made, too.
func TestDoneStaysDone(t *testing.T) {
	t.Parallel()
	nodes, _, _ := newNodes(t, 2, PostgresConfig{})
	a, b := nodes[0], nodes[1]
	ctx := t.Context()
	if _, err := a.Claim(ctx, 2, []int64{1}, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := a.Finish(ctx, 2, []int64{1, 2}); err != nil {
		t.Fatal(err)
	}
	for _, node := range nodes {
		claims, err := node.Claim(ctx, 2, []int64{1, 2, 3}, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if claims[0].State != ClaimDone || claims[1].State != ClaimDone {
			t.Errorf("%s claims finished events: %+v, want done", node.ID(), claims)
		}
		if node == a && claims[2].State != ClaimWon {
			t.Errorf("a claims a new event: %+v", claims[2])
		}
	}
	// Finishing a claim another node holds marks it done too: it was delivered.
	if err := b.Finish(ctx, 2, []int64{3}); err != nil {
		t.Fatal(err)
	}
	if claims, _ := a.Claim(ctx, 2, []int64{3}, time.Minute); claims[0].State != ClaimDone {
		t.Errorf("after b finished a's claim: %+v, want done", claims)
	}
	if err := a.Release(ctx, 2, []int64{3}); err != nil {
		t.Fatal(err)
	}
	if claims, _ := b.Claim(ctx, 2, []int64{3}, time.Minute); claims[0].State != ClaimDone {
		t.Errorf("a released a done claim and b claims it: %+v, want still done", claims)
	}
}

// TestAnswerRoundTrip: an answer of 2 MiB with headers that are not UTF-8
// goes from one node to another whole; the first answer wins, and it is
// taken once.
func TestAnswerRoundTrip(t *testing.T) {
	t.Parallel()
	nodes, recs, _ := newNodes(t, 2, PostgresConfig{})
	a, b := nodes[0], nodes[1]
	ctx := t.Context()
	body := make([]byte, 2<<20)
	for i := range body {
		body[i] = byte(i * 7)
	}
	want := Answer{Status: 418, Headers: []protocol.Header{{Name: "X-Raw", Value: "\xff\xfe"}, {Name: "x-dup", Value: "1"}, {Name: "x-dup", Value: "2"}}, Body: body}
	if err := b.PostAnswer(ctx, a.ID(), "evt_big", want); err != nil {
		t.Fatal(err)
	}
	if err := b.PostAnswer(ctx, a.ID(), "evt_big", Answer{Status: 500}); err != nil {
		t.Fatal(err)
	}
	if id := recs[0].nextAnswer(t); id != "evt_big" {
		t.Fatalf("a was told of %q", id)
	}
	got, ok, err := a.TakeAnswer(ctx, "evt_big")
	if err != nil || !ok {
		t.Fatalf("TakeAnswer: %v %v", ok, err)
	}
	if got.Status != want.Status || !slices.Equal(got.Headers, want.Headers) || !bytes.Equal(got.Body, want.Body) {
		t.Fatalf("answer: status %d headers %q body %d bytes (equal %v), want the first answer whole",
			got.Status, got.Headers, len(got.Body), bytes.Equal(got.Body, want.Body))
	}
	if _, ok, _ := a.TakeAnswer(ctx, "evt_big"); ok {
		t.Fatal("the answer was taken twice")
	}
	// An agent's error travels too.
	if err := a.PostAnswer(ctx, b.ID(), "evt_err", Answer{ErrCode: "target_unreachable", ErrMsg: "connection refused"}); err != nil {
		t.Fatal(err)
	}
	recs[1].nextAnswer(t)
	if got, ok, _ := b.TakeAnswer(ctx, "evt_err"); !ok || got.ErrCode != "target_unreachable" || got.ErrMsg != "connection refused" || len(got.Body) != 0 {
		t.Fatalf("error answer: %+v %v", got, ok)
	}
	select {
	case id := <-recs[1].answers:
		t.Fatalf("b was told of %q, an answer for a", id)
	default:
	}
}

// TestEventsAndReplays: an event published on one node reaches every other
// node, not its origin; a replay request reaches the node it names.
func TestEventsAndReplays(t *testing.T) {
	t.Parallel()
	nodes, recs, _ := newNodes(t, 3, PostgresConfig{})
	ctx := t.Context()
	for i := range 10 {
		if err := nodes[0].PublishEvent(ctx, Event{ChannelID: "ch", EventID: "evt", Seq: int64(i + 1), Waiting: i == 3}); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range recs[1:] {
		for i := range 10 {
			ev := r.nextEvent(t)
			if ev.Seq != int64(i+1) || ev.ChannelID != "ch" || ev.Origin != nodes[0].ID() || ev.Waiting != (i == 3) {
				t.Fatalf("event %d: %+v", i, ev)
			}
		}
	}
	if err := nodes[1].RequestReplay(ctx, nodes[2].ID(), Replay{ChannelID: "ch", EventID: "evt_1", Group: "g"}); err != nil {
		t.Fatal(err)
	}
	select {
	case rp := <-recs[2].replays:
		if rp != (Replay{ChannelID: "ch", EventID: "evt_1", Group: "g"}) {
			t.Fatalf("replay %+v", rp)
		}
	case <-time.After(waitLimit):
		t.Fatal("no replay")
	}
	// The origin hears nothing of its own, and node 1 no replay: a marker
	// published after them arrives first.
	if err := nodes[2].PublishEvent(ctx, Event{ChannelID: "marker"}); err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{0, 1} {
		if ev := recs[i].nextEvent(t); ev.ChannelID != "marker" {
			t.Fatalf("node %d heard %+v before the marker", i, ev)
		}
	}
	if len(recs[1].replays) != 0 {
		t.Fatal("node 1 heard a replay meant for node 2")
	}
	// Stream messages reach every other node; one too large is not sent.
	nodes[0].PublishStream(StreamMessage{ChannelID: "ch", Name: "big", Data: make([]byte, MaxStreamData+1)})
	nodes[0].PublishStream(StreamMessage{ChannelID: "ch", Name: "delivery", Data: []byte(`{"status":201}`)})
	for _, r := range recs[1:] {
		select {
		case m := <-r.streams:
			if m.ChannelID != "ch" || m.Name != "delivery" || string(m.Data) != `{"status":201}` {
				t.Fatalf("stream message %+v", m)
			}
		case <-time.After(waitLimit):
			t.Fatal("no stream message")
		}
	}
}

// TestRelistenAfterTerminate: the listening connection killed with
// pg_terminate_backend comes back by itself; Resync is called, and
// notifications flow again.
func TestRelistenAfterTerminate(t *testing.T) {
	t.Parallel()
	nodes, recs, apps := newNodes(t, 2, PostgresConfig{MaxListenBackoff: 200 * time.Millisecond})
	ctx := t.Context()
	if n := pgtest.Terminate(t, apps[1]+"-listen"); n != 1 {
		t.Fatalf("terminated %d listening connections, want 1", n)
	}
	select {
	case <-recs[1].resyncs:
	case <-time.After(waitLimit):
		t.Fatal("no Resync after the listening connection was killed")
	}
	if err := nodes[0].PublishEvent(ctx, Event{ChannelID: "after", Seq: 1}); err != nil {
		t.Fatal(err)
	}
	if ev := recs[1].nextEvent(t); ev.ChannelID != "after" {
		t.Fatalf("after re-listening: %+v", ev)
	}
	// Every connection of node 0 killed: its pool reconnects as well.
	pgtest.Terminate(t, apps[0])
	pgtest.Terminate(t, apps[0]+"-listen")
	<-recs[0].resyncs
	deadline := time.Now().Add(waitLimit)
	for {
		err := nodes[0].PublishEvent(ctx, Event{ChannelID: "again", Seq: 2})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("publish after the pool's connections were killed: %v", err)
		}
	}
	if ev := recs[1].nextEvent(t); ev.ChannelID != "again" {
		t.Fatalf("after the pool reconnected: %+v", ev)
	}
}

// TestAgentsOfEveryNode: each node lists the agents of all live nodes; a
// closed node's agents leave the list.
func TestAgentsOfEveryNode(t *testing.T) {
	t.Parallel()
	nodes, _, _ := newNodes(t, 2, PostgresConfig{})
	ctx := t.Context()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(nodes[0].RegisterAgent(ctx, AgentRecord{SessionID: "s1", ChannelID: "ch", Group: "g", Info: []byte(`{"host":"laptop"}`)}))
	must(nodes[1].RegisterAgent(ctx, AgentRecord{SessionID: "s2", ChannelID: "ch", Group: "g"}))
	must(nodes[1].RegisterAgent(ctx, AgentRecord{SessionID: "s2", ChannelID: "other", Group: "g"}))
	for _, node := range nodes {
		agents, err := node.Agents(ctx, "ch")
		must(err)
		if len(agents) != 2 || agents[0].Node != nodes[0].ID() || agents[1].Node != nodes[1].ID() ||
			string(agents[0].Info) != `{"host": "laptop"}` || agents[0].LastSeen.IsZero() {
			t.Fatalf("%s lists %+v", node.ID(), agents)
		}
	}
	counts, err := nodes[0].AgentCounts(ctx, []string{"ch", "other", "none"})
	must(err)
	want := []AgentCount{{"ch", nodes[0].ID(), 1}, {"ch", nodes[1].ID(), 1}, {"other", nodes[1].ID(), 1}}
	if !slices.Equal(counts, want) {
		t.Fatalf("counts %+v, want %+v", counts, want)
	}
	must(nodes[1].UnregisterAgent(ctx, "s2"))
	if agents, _ := nodes[0].Agents(ctx, "other"); len(agents) != 0 {
		t.Fatalf("after unregister: %+v", agents)
	}
	must(nodes[1].RegisterAgent(ctx, AgentRecord{SessionID: "s3", ChannelID: "ch", Group: "g"}))
	nodes[1].Close()
	agents, err := nodes[0].Agents(ctx, "ch")
	must(err)
	if len(agents) != 1 || agents[0].SessionID != "s1" {
		t.Fatalf("after node b closed: %+v, want s1 only", agents)
	}
}

// TestSessionsShared: a session stored by one node is found by the other
// until it is deleted there or expires.
func TestSessionsShared(t *testing.T) {
	t.Parallel()
	nodes, _, _ := newNodes(t, 2, PostgresConfig{})
	ctx := t.Context()
	want := Session{TokenHash: "abc", ReadKey: true, Channel: "ch", Expires: time.Now().Add(time.Hour).Truncate(time.Microsecond).UTC()}
	if err := nodes[0].CreateSession(ctx, "k1", want); err != nil {
		t.Fatal(err)
	}
	if err := nodes[0].CreateSession(ctx, "old", Session{TokenHash: "x", Expires: time.Now().Add(-time.Second)}); err != nil {
		t.Fatal(err)
	}
	got, ok, err := nodes[1].LookupSession(ctx, "k1")
	if err != nil || !ok || got != want {
		t.Fatalf("lookup on the other node: %+v %v %v, want %+v", got, ok, err, want)
	}
	if _, ok, _ := nodes[1].LookupSession(ctx, "old"); ok {
		t.Fatal("an expired session was found")
	}
	if err := nodes[1].DeleteSession(ctx, "k1"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := nodes[0].LookupSession(ctx, "k1"); ok {
		t.Fatal("a session deleted on one node lives on on the other")
	}
}

// TestCallsSurviveKilledConnections: with its connections killed by
// pg_terminate_backend between calls, a node's calls still succeed: a
// call whose connection broke runs again on a new one.
func TestCallsSurviveKilledConnections(t *testing.T) {
	t.Parallel()
	nodes, _, apps := newNodes(t, 1, PostgresConfig{})
	a := nodes[0]
	ctx := t.Context()
	for i := range 5 {
		// Fill the pool with idle connections, then kill them all.
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				if _, err := a.Agents(ctx, "warm"); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if pgtest.Terminate(t, apps[0]) == 0 {
			t.Fatal("no connection to kill")
		}
		seq := int64(i + 1)
		claims, err := a.Claim(ctx, 9, []int64{seq}, time.Minute)
		if err != nil || claims[0].State != ClaimWon {
			t.Fatalf("claim %d after the connections were killed: %+v %v", i, claims, err)
		}
		if err := a.Finish(ctx, 9, []int64{seq}); err != nil {
			t.Fatalf("finish %d after a kill: %v", i, err)
		}
	}
}
