package dispatch

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/protocol"
	"github.com/hookrelay/hookrelay/server/store"
)

// answerNode is a node of a MemCluster whose TakeAnswer waits at a gate
// (when one is set) and which stops telling its hub of posted answers
// while deaf, as a node whose listening connection is lost.
type answerNode struct {
	Cluster
	gate *gate
	deaf atomic.Bool
}

func (n *answerNode) TakeAnswer(ctx context.Context, eventID string) (Answer, bool, error) {
	if n.gate != nil {
		n.gate.wait()
	}
	return n.Cluster.TakeAnswer(ctx, eventID)
}

func (n *answerNode) Subscribe(h Handler) { n.Cluster.Subscribe(deafHandler{h, n}) }

type deafHandler struct {
	Handler
	n *answerNode
}

func (d deafHandler) RemoteAnswer(eventID string) {
	if !d.n.deaf.Load() {
		d.Handler.RemoteAnswer(eventID)
	}
}

// waitAnswer waits for a waiter's answer and checks its status.
func waitAnswer(t *testing.T, w *Waiter, status int) {
	t.Helper()
	select {
	case a := <-w.C():
		if a.Status != status {
			t.Errorf("answer %d, want %d", a.Status, status)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the sender got no answer")
	}
}

// TestAnswerForLateWaitingNotice: node b delivers an event it found in a
// store scan before the notice that a sender on node a waits for it; when
// the notice comes, b posts the answer it kept.
func TestAnswerForLateWaitingNotice(t *testing.T) {
	t.Parallel()
	mc := NewMemCluster()
	ea := newEnv(t, Config{Cluster: mc.Node("a")})
	hb := New(context.Background(), Config{Store: ea.mem, Cluster: mc.Node("b")})
	t.Cleanup(func() { hb.Close(hb.Unregister) })
	ev := &store.Event{ID: newID("evt_"), ChannelID: ea.channel, Method: "POST", Path: "/", Body: []byte("x"),
		ReceivedAt: time.Now().UTC(), State: store.EventAccepted}
	w := ea.hub.AddWaiter(ev.ID)
	defer ea.hub.RemoveWaiter(ev.ID)
	if err := ea.mem.AppendEvent(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	// Not published yet: b finds it in its first scan.
	agent := newFakeAgent("ses_b", 2)
	agent.answer = func(*protocol.DeliveryRequest) (*protocol.DeliveryResponse, error) {
		return &protocol.DeliveryResponse{Status: 201}, nil
	}
	if !hb.Register(agent, []store.Group{ea.group("g")}) {
		t.Fatal("hub b closed")
	}
	// Recorded: its outcome was handed to answer before.
	eventually(t, "b delivered and recorded the event", func() bool { return len(ea.deliveries(ev.ID)) == 1 })
	hb.RemoteEvent(Event{ChannelID: ev.ChannelID, EventID: ev.ID, Seq: ev.Seq, Origin: "a", Waiting: true})
	waitAnswer(t, w, 201)
	if n := agent.count(); n != 1 {
		t.Errorf("%d deliveries, want 1", n)
	}
}

// TestRemoteAnswerOffTheListener: taking a posted answer from the cluster
// does not hold up the goroutine that hands the cluster's notices over.
func TestRemoteAnswerOffTheListener(t *testing.T) {
	t.Parallel()
	mc := NewMemCluster()
	na := &answerNode{Cluster: mc.Node("a"), gate: newGate()}
	ea := newEnv(t, Config{Cluster: na})
	t.Cleanup(na.gate.release)
	w := ea.hub.AddWaiter("evt_1")
	defer ea.hub.RemoveWaiter("evt_1")
	told := make(chan struct{})
	go func() {
		defer close(told)
		// MemCluster tells a's hub (RemoteAnswer) on this goroutine, as
		// the PostgreSQL node does on its listening one.
		if err := mc.Node("b").PostAnswer(context.Background(), "a", "evt_1", Answer{Status: 202}); err != nil {
			t.Error(err)
		}
	}()
	eventually(t, "a takes the answer", func() bool { return na.gate.held() == 1 })
	select {
	case <-told:
	case <-time.After(15 * time.Second):
		t.Fatal("RemoteAnswer waits for TakeAnswer: the notices behind it wait too")
	}
	na.gate.release()
	waitAnswer(t, w, 202)
}

// TestResyncTakesMissedAnswers: an answer posted while node a did not hear
// the cluster (its listening connection lost) is taken after Resync.
func TestResyncTakesMissedAnswers(t *testing.T) {
	t.Parallel()
	mc := NewMemCluster()
	na := &answerNode{Cluster: mc.Node("a")}
	ea := newEnv(t, Config{Cluster: na})
	w := ea.hub.AddWaiter("evt_1")
	defer ea.hub.RemoveWaiter("evt_1")
	na.deaf.Store(true)
	if err := mc.Node("b").PostAnswer(context.Background(), "a", "evt_1", Answer{Status: 203}); err != nil {
		t.Fatal(err)
	}
	na.deaf.Store(false)
	ea.hub.Resync()
	waitAnswer(t, w, 203)
}

// TestAnswerCacheBounds: the kept outcomes stay within their count and
// bytes, oldest out first, and an outcome past its time is not given.
func TestAnswerCacheBounds(t *testing.T) {
	t.Parallel()
	c := answerCache{byID: make(map[string]recentAnswer)}
	later := time.Now().Add(time.Hour)
	for range 3 * recentAnswers {
		c.keep(newID("evt_"), Answer{Status: 200}, later)
	}
	if len(c.byID) > recentAnswers || len(c.order) > 2*recentAnswers+1 {
		t.Errorf("%d kept, %d in order; want at most %d", len(c.byID), len(c.order), recentAnswers)
	}
	big := make([]byte, recentAnswerBytes/8)
	for i := range 20 {
		c.keep(newID("big"), Answer{Body: big}, later)
		if c.bytes > recentAnswerBytes {
			t.Fatalf("after %d large answers: %d bytes kept, want at most %d", i+1, c.bytes, recentAnswerBytes)
		}
	}
	c.keep("evt_old", Answer{Status: 200}, time.Now().Add(-time.Second))
	if _, ok := c.take("evt_old"); ok {
		t.Error("an outcome past its time was given")
	}
	c.keep("evt_new", Answer{Status: 201}, later)
	if a, ok := c.take("evt_new"); !ok || a.Status != 201 {
		t.Errorf("take: %+v %v, want the 201 kept", a, ok)
	}
	if _, ok := c.take("evt_new"); ok {
		t.Error("an outcome was given twice")
	}
}
