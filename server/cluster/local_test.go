package cluster

import (
	"bytes"
	"testing"
	"time"
)

// TestLocalWinsEverything: a relay alone wins every claim, gets its own
// answers back once, and lists the agents it registered.
func TestLocalWinsEverything(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	l := NewLocal("solo")
	h := newRecorder()
	l.Subscribe(h)
	claims, err := l.Claim(ctx, 1, []int64{3, 1, 2}, time.Minute)
	if err != nil || len(claims) != 3 {
		t.Fatalf("Claim: %v, %v", claims, err)
	}
	for i, want := range []int64{3, 1, 2} {
		if claims[i].Seq != want || claims[i].State != ClaimWon {
			t.Errorf("claim %d: %+v, want seq %d won", i, claims[i], want)
		}
	}
	if err := l.PostAnswer(ctx, "solo", "evt_1", Answer{Status: 201, Body: []byte("first")}); err != nil {
		t.Fatal(err)
	}
	if err := l.PostAnswer(ctx, "solo", "evt_1", Answer{Status: 500}); err != nil {
		t.Fatal(err)
	}
	if id := h.nextAnswer(t); id != "evt_1" {
		t.Fatalf("RemoteAnswer(%q), want evt_1", id)
	}
	a, ok, err := l.TakeAnswer(ctx, "evt_1")
	if err != nil || !ok || a.Status != 201 || !bytes.Equal(a.Body, []byte("first")) {
		t.Fatalf("TakeAnswer: %+v %v %v, want the first answer", a, ok, err)
	}
	if _, ok, _ := l.TakeAnswer(ctx, "evt_1"); ok {
		t.Fatal("TakeAnswer found the answer twice")
	}
	for _, rec := range []AgentRecord{{SessionID: "s2", ChannelID: "c", Group: "g"}, {SessionID: "s1", ChannelID: "c", Group: "g"}, {SessionID: "s1", ChannelID: "other"}} {
		if err := l.RegisterAgent(ctx, rec); err != nil {
			t.Fatal(err)
		}
	}
	agents, _ := l.Agents(ctx, "c")
	if len(agents) != 2 || agents[0].SessionID != "s1" || agents[1].SessionID != "s2" || agents[0].Node != "solo" {
		t.Fatalf("Agents: %+v", agents)
	}
	_ = l.UnregisterAgent(ctx, "s1")
	if agents, _ := l.Agents(ctx, "c"); len(agents) != 1 {
		t.Fatalf("after unregister: %+v", agents)
	}
}

// recorder is a Handler that keeps what it is told, in order.
type recorder struct {
	events  chan Event
	answers chan string
	replays chan Replay
	streams chan StreamMessage
	resyncs chan struct{}
}

func newRecorder() *recorder {
	return &recorder{events: make(chan Event, 4096), answers: make(chan string, 64), replays: make(chan Replay, 64), streams: make(chan StreamMessage, 64), resyncs: make(chan struct{}, 64)}
}

func (r *recorder) RemoteEvent(ev Event)         { r.events <- ev }
func (r *recorder) RemoteAnswer(id string)       { r.answers <- id }
func (r *recorder) RemoteReplay(rp Replay)       { r.replays <- rp }
func (r *recorder) RemoteStream(m StreamMessage) { r.streams <- m }
func (r *recorder) Resync()                      { r.resyncs <- struct{}{} }

// waitLimit bounds every wait for a notification: far longer than any
// should take, so that only a lost one fails the test.
const waitLimit = 20 * time.Second

func (r *recorder) nextEvent(t *testing.T) Event {
	t.Helper()
	select {
	case ev := <-r.events:
		return ev
	case <-time.After(waitLimit):
		t.Fatal("no RemoteEvent")
	}
	return Event{}
}

func (r *recorder) nextAnswer(t *testing.T) string {
	t.Helper()
	select {
	case id := <-r.answers:
		return id
	case <-time.After(waitLimit):
		t.Fatal("no RemoteAnswer")
	}
	return ""
}
