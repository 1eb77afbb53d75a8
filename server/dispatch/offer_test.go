package dispatch

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/server/store"
)

// startAppend appends a new event through StartAppend and returns it with
// its commit (memstore commits at once). With fail, the append is made to a
// channel that does not exist: the store gives it a seq and fails it, and
// the event returned carries that seq and the real channel, as an event
// handed over before its commit failed.
func (e *env) startAppend(path string, fail bool) (*store.Event, *store.Commit) {
	e.t.Helper()
	ev := &store.Event{
		ID: newID("evt_"), ChannelID: e.channel, Method: "POST", Path: path,
		Body: []byte(`{"path":"` + path + `"}`), ReceivedAt: time.Now().UTC(), State: store.EventAccepted,
	}
	target := ev
	if fail {
		shadow := *ev
		shadow.ChannelID = "missing"
		target = &shadow
	}
	commit, err := e.mem.StartAppend(context.Background(), target)
	if err != nil {
		e.t.Fatal(err)
	}
	ev.Seq = target.Seq
	return ev, commit
}

// TestOfferedEventWhoseCommitFails: an event handed over before its commit
// and whose commit then fails is delivered at most that once and leaves
// nothing behind: no delivery record, nothing pending, and the group's
// watermark passes its seq.
func TestOfferedEventWhoseCommitFails(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	a := newFakeAgent("ses_a", 4)
	e.connect(a, "g")
	before := e.post(1)
	eventually(t, "the first event delivered", func() bool { return a.count() == 1 })

	failed, commit := e.startAppend("/failed", true)
	e.hub.Offer(failed)
	if err := commit.Err(); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the failing append: %v, want ErrNotFound", err)
	}
	eventually(t, "the offered event delivered", func() bool { return a.count() == 2 })
	after := e.post(2)
	eventually(t, "the later events delivered", func() bool { return a.count() == 4 })
	e.hub.Resync() // a rescan moves the live horizon, so the watermark can pass the gap
	last := e.seq(after[1])
	eventually(t, "the watermark past the failed seq", func() bool { return e.doneThrough("g") >= last })
	exactlyOnce(t, a.got(), []string{before[0], failed.ID, after[0], after[1]})
	if ds := e.deliveries(failed.ID); len(ds) != 0 {
		t.Errorf("records of the event whose commit failed: %+v", ds)
	}
	if p := e.pending("g"); len(p) != 0 {
		t.Errorf("pending: %v", p)
	}
}

// TestOfferThenCommittedHandsOverOnce: Offer hands an event to the groups
// live at that moment and Committed to the groups that started since, each
// once.
func TestOfferThenCommittedHandsOverOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	a := newFakeAgent("ses_a", 4)
	e.connect(a, "early")
	ev, commit := e.startAppend("/x", false)
	o := e.hub.Offer(ev)
	b := newFakeAgent("ses_b", 4)
	e.connect(b, "late") // after Offer, before Committed
	if err := commit.Err(); err != nil {
		t.Fatal(err)
	}
	e.hub.Committed(o, false)
	next := e.post(1)
	eventually(t, "both groups got both events", func() bool { return a.count() >= 2 && b.count() >= 2 })
	eventually(t, "recorded", func() bool { return len(e.deliveries(next[0])) == 2 && len(e.deliveries(ev.ID)) == 2 })
	exactlyOnce(t, a.got(), []string{ev.ID, next[0]})
	exactlyOnce(t, b.got(), []string{ev.ID, next[0]})
}

// TestOfferKeepsLargeBodiesForCommitted: an event whose body the workers
// would reload from the store is handed over only by Committed (before the
// commit the store has no such event to reload), and then once.
func TestOfferKeepsLargeBodiesForCommitted(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	a := newFakeAgent("ses_a", 4)
	e.connect(a, "g")
	ev := &store.Event{
		ID: newID("evt_"), ChannelID: e.channel, Method: "POST", Path: "/large",
		Body: make([]byte, inlineBodyLimit+1), ReceivedAt: time.Now().UTC(), State: store.EventAccepted,
	}
	commit, err := e.mem.StartAppend(context.Background(), ev)
	if err != nil {
		t.Fatal(err)
	}
	o := e.hub.Offer(ev)
	if len(o.workers) != 0 {
		t.Fatalf("a %d-byte event was handed to %d workers before its commit", len(ev.Body), len(o.workers))
	}
	if err := commit.Err(); err != nil {
		t.Fatal(err)
	}
	e.hub.Committed(o, false)
	next := e.post(1)
	eventually(t, "both delivered", func() bool { return a.count() >= 2 })
	eventually(t, "recorded", func() bool { return len(e.deliveries(next[0])) == 1 })
	exactlyOnce(t, a.got(), []string{ev.ID, next[0]})
}
