package dispatch

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/protocol"
	"github.com/hookrelay/hookrelay/server/store"
	"github.com/hookrelay/hookrelay/server/store/memstore"
)

// fakeAgent is an Agent whose answers a test decides: answer is called for
// each delivery (nil: the app answers 200).
type fakeAgent struct {
	id     string
	slots  chan struct{}
	answer func(req *protocol.DeliveryRequest) (*protocol.DeliveryResponse, error)

	mu        sync.Mutex
	delivered []*protocol.DeliveryRequest // every delivery it got, in order
	states    []GroupState
	stopping  atomic.Bool
}

func newFakeAgent(id string, concurrency int) *fakeAgent {
	return &fakeAgent{id: id, slots: make(chan struct{}, concurrency)}
}

func (a *fakeAgent) ID() string { return a.id }

func (a *fakeAgent) TryAcquire() bool {
	if a.stopping.Load() {
		return false
	}
	select {
	case a.slots <- struct{}{}:
		return true
	default:
		return false
	}
}

func (a *fakeAgent) Release()       { <-a.slots }
func (a *fakeAgent) FreeSlots() int { return cap(a.slots) - len(a.slots) }

func (a *fakeAgent) Deliver(ctx context.Context, req *protocol.DeliveryRequest, body []byte) (*protocol.DeliveryResponse, []byte, error) {
	a.mu.Lock()
	a.delivered = append(a.delivered, req)
	a.mu.Unlock()
	if a.answer == nil {
		return &protocol.DeliveryResponse{Status: 200}, []byte("ok"), nil
	}
	resp, err := a.answer(req)
	if err != nil {
		return nil, nil, err
	}
	return resp, nil, nil
}

func (a *fakeAgent) GroupState(s GroupState) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.states = append(a.states, s)
}

// got returns the event ids delivered to the agent, in order.
func (a *fakeAgent) got() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	ids := make([]string, len(a.delivered))
	for i, r := range a.delivered {
		ids[i] = r.EventID
	}
	return ids
}

func (a *fakeAgent) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.delivered)
}

// refused is what an agent answers when its target refuses connections.
func refused() (*protocol.DeliveryResponse, error) {
	return &protocol.DeliveryResponse{ErrorCode: protocol.ErrCodeConnectionRefused,
		Error: "dial tcp 127.0.0.1:1: connect: connection refused"}, nil
}

// flakyStore fails RecordProgress while fail is above zero, counting down.
type flakyStore struct {
	store.Store
	fail atomic.Int32
}

func (s *flakyStore) RecordProgress(ctx context.Context, p store.Progress) error {
	if s.fail.Add(-1) >= 0 {
		return errors.New("injected: the store is down")
	}
	return s.Store.RecordProgress(ctx, p)
}

// env is a hub on a memstore with one channel.
type env struct {
	t       *testing.T
	mem     *memstore.Store
	st      store.Store
	hub     *Hub
	channel string
}

func newEnv(t *testing.T, cfg Config) *env { return newEnvWrapped(t, cfg, nil) }

// newEnvWrapped builds an env whose hub uses wrap(mem) as its store (wrap
// nil: mem itself).
func newEnvWrapped(t *testing.T, cfg Config, wrap func(store.Store) store.Store) *env {
	t.Helper()
	mem := memstore.New(store.Limits{})
	if err := mem.CreateChannel(context.Background(), store.Channel{ID: "ch", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, mem: mem, st: mem, channel: "ch"}
	if wrap != nil {
		e.st = wrap(mem)
	}
	cfg.Store = e.st
	e.hub = New(context.Background(), cfg)
	t.Cleanup(func() { e.hub.Close(e.hub.Unregister) })
	return e
}

func (e *env) group(name string) store.Group {
	e.t.Helper()
	g, err := e.mem.EnsureGroup(context.Background(), e.channel, name, store.FromResume)
	if err != nil {
		e.t.Fatal(err)
	}
	return g
}

// connect registers a with the group (its current state from the store).
func (e *env) connect(a Agent, group string) {
	e.t.Helper()
	if !e.hub.Register(a, []store.Group{e.group(group)}) {
		e.t.Fatal("the hub is closed")
	}
}

// post commits n events and publishes them; it returns their ids in order.
func (e *env) post(n int) []string {
	e.t.Helper()
	ids := make([]string, n)
	for i := range ids {
		ev := &store.Event{
			ID: newID("evt_"), ChannelID: e.channel, Method: "POST", Path: fmt.Sprintf("/%d", i),
			Body: []byte(fmt.Sprintf(`{"n":%d}`, i)), ReceivedAt: time.Now().UTC(), State: store.EventAccepted,
		}
		if err := e.mem.AppendEvent(context.Background(), ev); err != nil {
			e.t.Fatal(err)
		}
		e.hub.Publish(ev, false)
		ids[i] = ev.ID
	}
	return ids
}

// doneThrough is the group's saved watermark.
func (e *env) doneThrough(name string) int64 {
	e.t.Helper()
	gs, err := e.mem.ListGroups(context.Background(), e.channel)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, g := range gs {
		if g.Name == name {
			return g.DoneThrough
		}
	}
	e.t.Fatalf("no group %q", name)
	return 0
}

// pending lists the ids of the group's events not done, per the store.
func (e *env) pending(name string) []string {
	e.t.Helper()
	page, err := e.mem.Pending(context.Background(), store.PendingQuery{GroupID: e.group(name).ID, Limit: 1000})
	if err != nil {
		e.t.Fatal(err)
	}
	var ids []string
	for _, ev := range page.Events {
		ids = append(ids, ev.ID)
	}
	return ids
}

func (e *env) seq(id string) int64 {
	e.t.Helper()
	ev, err := e.mem.GetEvent(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return ev.Seq
}

func (e *env) deliveries(id string) []store.Delivery {
	e.t.Helper()
	ds, err := e.mem.Deliveries(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return ds
}

// eventually polls cond until it holds, failing after a generous deadline.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// exactlyOnce fails unless got holds each of want once.
func exactlyOnce(t *testing.T, got, want []string) {
	t.Helper()
	seen := map[string]int{}
	for _, id := range got {
		seen[id]++
	}
	for _, id := range want {
		if seen[id] != 1 {
			t.Errorf("event %s delivered %d times, want once", id, seen[id])
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d deliveries, want %d", len(got), len(want))
	}
}
