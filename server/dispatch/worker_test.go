package dispatch

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/protocol"
	"github.com/hookrelay/hookrelay/server/store"
)

func TestBackoffBounds(t *testing.T) {
	t.Parallel()
	for attempt := 1; attempt <= 30; attempt++ {
		want := time.Second << min(attempt-1, 20)
		want = min(want, 5*time.Minute)
		for range 20 {
			d := backoff(attempt, 5*time.Minute)
			if d < want/2 || d > want {
				t.Fatalf("backoff(%d) = %s, want in [%s, %s]", attempt, d, want/2, want)
			}
		}
	}
}

// TestRetriesWithBackoff: failed attempts are retried after a backoff,
// numbered, each recorded, until the app answers.
func TestRetriesWithBackoff(t *testing.T) {
	t.Parallel()
	const maxBackoff = 40 * time.Millisecond
	e := newEnv(t, Config{RetryMaxBackoff: maxBackoff})
	a := newFakeAgent("ses_a", 4)
	var calls atomic.Int32
	a.answer = func(*protocol.DeliveryRequest) (*protocol.DeliveryResponse, error) {
		if calls.Add(1) <= 2 {
			return &protocol.DeliveryResponse{ErrorCode: protocol.ErrCodeTimeout, Error: "the target did not answer"}, nil
		}
		return &protocol.DeliveryResponse{Status: 204}, nil
	}
	id := e.post(1)[0] // before the agent: read from the backlog, so the watermark covers it
	e.connect(a, "g")
	eventually(t, "three attempts recorded", func() bool { return len(e.deliveries(id)) == 3 })
	ds := e.deliveries(id)
	for i, d := range ds {
		if d.Attempt != i+1 {
			t.Errorf("record %d: attempt %d", i, d.Attempt)
		}
		if done := i == 2; d.Done != done {
			t.Errorf("attempt %d: done %v, want %v", d.Attempt, d.Done, done)
		}
		if i > 0 {
			// The wait before attempt n+1 is at least half the capped backoff.
			if gap := d.StartedAt.Sub(ds[i-1].StartedAt); gap < maxBackoff/2 {
				t.Errorf("attempt %d came %s after the one before, under the backoff's %s", d.Attempt, gap, maxBackoff/2)
			}
		}
	}
	if ds[2].Status != 204 {
		t.Errorf("last attempt: status %d", ds[2].Status)
	}
	a.mu.Lock()
	got := append([]*protocol.DeliveryRequest(nil), a.delivered...)
	a.mu.Unlock()
	for i, r := range got {
		if r.Attempt != i+1 {
			t.Errorf("delivery %d carried attempt %d", i, r.Attempt)
		}
	}
	eventually(t, "the watermark passes the event", func() bool { return e.doneThrough("g") >= e.seq(id) })
}

// TestGiveUpAfterMaxAttempts: after MaxAttempts failures the event is done
// (recorded so), is not tried again, and no longer holds the watermark.
func TestGiveUpAfterMaxAttempts(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{MaxAttempts: 3, RetryMaxBackoff: 10 * time.Millisecond})
	a := newFakeAgent("ses_a", 4)
	a.answer = func(*protocol.DeliveryRequest) (*protocol.DeliveryResponse, error) {
		return &protocol.DeliveryResponse{ErrorCode: protocol.ErrCodeTarget, Error: "502 from the proxy"}, nil
	}
	ids := e.post(2) // before the agent: read from the backlog, so the watermark covers them
	e.connect(a, "g")
	for _, id := range ids {
		eventually(t, "three attempts recorded", func() bool { return len(e.deliveries(id)) == 3 })
	}
	eventually(t, "the watermark passes both", func() bool { return e.doneThrough("g") >= e.seq(ids[1]) })
	for _, id := range ids {
		ds := e.deliveries(id)
		last := ds[len(ds)-1]
		if !last.Done || !strings.Contains(last.Error, "gave up") {
			t.Errorf("last attempt of %s: done %v, error %q; want done, gave up", id, last.Done, last.Error)
		}
	}
	if n := a.count(); n != 6 {
		t.Errorf("%d attempts, want 3 per event", n)
	}
	if p := e.pending("g"); len(p) != 0 {
		t.Errorf("still pending: %v", p)
	}
}

// gate holds deliveries until opened; the agent "answers" after that even
// if the relay stopped waiting, as a real agent's answer still arrives.
type gate struct {
	mu      sync.Mutex
	open    bool
	cond    *sync.Cond
	holding int
}

func newGate() *gate {
	g := &gate{}
	g.cond = sync.NewCond(&g.mu)
	return g
}

func (g *gate) wait() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.holding++
	g.cond.Broadcast()
	for !g.open {
		g.cond.Wait()
	}
	g.holding--
}

func (g *gate) held() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.holding
}

func (g *gate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.open = true
	g.cond.Broadcast()
}

// TestWorkerReplacedWhileOldFinishes: the group's only agent leaves with
// deliveries in flight and another joins at once. The new worker waits for
// the old one to record its last attempts: no event twice, none lost.
func TestWorkerReplacedWhileOldFinishes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{RetryMaxBackoff: 10 * time.Millisecond})
	g := newGate()
	old := newFakeAgent("ses_old", 8)
	old.answer = func(*protocol.DeliveryRequest) (*protocol.DeliveryResponse, error) {
		g.wait()
		return &protocol.DeliveryResponse{Status: 200}, nil
	}
	e.connect(old, "g")
	ids := e.post(40)
	eventually(t, "the old agent holds 8 deliveries", func() bool { return g.held() == 8 })
	e.hub.Unregister(old)
	next := newFakeAgent("ses_new", 8)
	e.connect(next, "g")
	g.release()
	eventually(t, "all 40 delivered", func() bool { return old.count()+next.count() >= 40 })
	eventually(t, "the watermark passes the last", func() bool { return e.doneThrough("g") >= e.seq(ids[39]) })
	exactlyOnce(t, append(old.got(), next.got()...), ids)
	if n := old.count(); n != 8 {
		t.Errorf("the old agent got %d, want the 8 it held", n)
	}
}

// TestOutOfOrderCompletions: later events finish before an earlier one;
// their done marks are written, the watermark waits for the earliest, and
// nothing is delivered twice, also across a worker restart.
func TestOutOfOrderCompletions(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	first := newGate()
	a := newFakeAgent("ses_a", 4)
	var calls atomic.Int32
	a.answer = func(req *protocol.DeliveryRequest) (*protocol.DeliveryResponse, error) {
		if calls.Add(1) == 1 { // the first event, posted alone
			first.wait()
		}
		return &protocol.DeliveryResponse{Status: 200}, nil
	}
	e.connect(a, "g")
	ids := e.post(1)
	eventually(t, "the first event in flight", func() bool { return first.held() == 1 })
	ids = append(ids, e.post(3)...)
	eventually(t, "events 2-4 recorded done", func() bool {
		p := e.pending("g")
		return len(p) == 1 && p[0] == ids[0]
	})
	if dt := e.doneThrough("g"); dt >= e.seq(ids[0]) {
		t.Fatalf("watermark %d passed the unfinished event %d", dt, e.seq(ids[0]))
	}
	// A worker restart with the first still out: the new worker must not
	// take 2-4 again (their done marks), and waits for the old one.
	b := newFakeAgent("ses_b", 4)
	e.hub.Unregister(a)
	e.connect(b, "g")
	first.release()
	eventually(t, "the watermark passes the last", func() bool { return e.doneThrough("g") >= e.seq(ids[3]) })
	exactlyOnce(t, append(a.got(), b.got()...), ids)
}

// TestStoreFailsWhileRecording: attempts that cannot be written are kept
// and written later; their events are not delivered again meanwhile.
func TestStoreFailsWhileRecording(t *testing.T) {
	t.Parallel()
	var fs *flakyStore
	e := newEnvWrapped(t, Config{}, func(s store.Store) store.Store {
		fs = &flakyStore{Store: s}
		fs.fail.Store(3)
		return fs
	})
	a := newFakeAgent("ses_a", 4)
	ids := e.post(10) // before the agent: read from the backlog, so the watermark covers them
	e.connect(a, "g")
	eventually(t, "the watermark passes the last", func() bool { return e.doneThrough("g") >= e.seq(ids[9]) })
	exactlyOnce(t, a.got(), ids)
	for _, id := range ids {
		if ds := e.deliveries(id); len(ds) != 1 || !ds[0].Done {
			t.Errorf("event %s: %d records, want one done", id, len(ds))
		}
	}
	if fs.fail.Load() >= 0 {
		t.Errorf("the store never failed")
	}
}

// TestClaimsLostToAnotherNode: with the group's events claimed by another
// node, an event it finished counts as done here, and one it holds is
// retried here once its lease ends (never skipped).
func TestClaimsLostToAnotherNode(t *testing.T) {
	t.Parallel()
	mc := NewMemCluster()
	e := newEnv(t, Config{Cluster: mc.Node("a")})
	other := mc.Node("b")
	g := e.group("g")
	a := newFakeAgent("ses_a", 4)
	// Post with no agent here, so the other node can claim first.
	ids := e.post(3)
	ctx := context.Background()
	const lease = 300 * time.Millisecond
	claimedAt := time.Now() // before the claim: its lease ends at least lease after this
	if _, err := other.Claim(ctx, g.ID, []int64{e.seq(ids[1]), e.seq(ids[2])}, lease); err != nil {
		t.Fatal(err)
	}
	if err := other.Finish(ctx, g.ID, []int64{e.seq(ids[2])}); err != nil {
		t.Fatal(err)
	}
	e.connect(a, "g")
	eventually(t, "the held event delivered after the lease", func() bool { return a.count() == 2 })
	got := a.got()
	if got[0] != ids[0] || got[1] != ids[1] {
		t.Errorf("delivered %v, want %v then %v", got, ids[0], ids[1])
	}
	if since := time.Since(claimedAt); since < lease {
		t.Errorf("the held event went out %s after the other node's claim, within its lease of %s", since, lease)
	}
	eventually(t, "the watermark passes the last", func() bool { return e.doneThrough("g") >= e.seq(ids[2]) })
	if n := a.count(); n != 2 {
		t.Errorf("%d deliveries, want 2: the one the other node finished is done", n)
	}
	eventually(t, "this node's claims finished", func() bool {
		n0, d0, _ := mc.ClaimOf(g.ID, e.seq(ids[0]))
		n1, d1, _ := mc.ClaimOf(g.ID, e.seq(ids[1]))
		return n0 == "a" && d0 && n1 == "a" && d1
	})
}

// TestCrossNodeAnswer: a sync sender on node a waits for an event that an
// agent on node b delivers; the answer comes back through the cluster.
func TestCrossNodeAnswer(t *testing.T) {
	t.Parallel()
	mc := NewMemCluster()
	ea := newEnv(t, Config{Cluster: mc.Node("a")})
	hb := New(context.Background(), Config{Store: ea.mem, Cluster: mc.Node("b")})
	t.Cleanup(func() { hb.Close(hb.Unregister) })
	agent := newFakeAgent("ses_b", 2)
	agent.answer = func(*protocol.DeliveryRequest) (*protocol.DeliveryResponse, error) {
		return &protocol.DeliveryResponse{Status: 201, Headers: []protocol.Header{{Name: "X-App", Value: "yes"}}}, nil
	}
	if !hb.Register(agent, []store.Group{ea.group("g")}) {
		t.Fatal("hub b closed")
	}
	ev := &store.Event{ID: newID("evt_"), ChannelID: ea.channel, Method: "POST", Path: "/", Body: []byte("x"),
		ReceivedAt: time.Now().UTC(), State: store.EventAccepted}
	w := ea.hub.AddWaiter(ev.ID)
	defer ea.hub.RemoveWaiter(ev.ID)
	if err := ea.mem.AppendEvent(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	ea.hub.Publish(ev, true)
	select {
	case ans := <-w.C():
		if ans.Status != 201 || len(ans.Headers) != 1 || ans.Headers[0].Value != "yes" {
			t.Errorf("answer %+v", ans)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no answer from the other node")
	}
	if n := agent.count(); n != 1 {
		t.Errorf("%d deliveries, want 1", n)
	}
}
