package dispatch

import (
	"sync"
	"testing"
	"time"
)

// parked reports whether the group's worker has no goroutine.
func (e *env) parked(group string) bool {
	e.t.Helper()
	id := e.group(group).ID
	e.hub.mu.Lock()
	w := e.hub.workers[id]
	e.hub.mu.Unlock()
	if w == nil {
		e.t.Fatalf("no worker for group %q", group)
	}
	w.runMu.Lock()
	defer w.runMu.Unlock()
	return !w.running
}

// TestIdleWorkerParks: a worker whose group is caught up holds no
// goroutine; an event handed over wakes it, is delivered, and the worker
// parks again with its progress written.
func TestIdleWorkerParks(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	a := newFakeAgent("ses_a", 4)
	backlog := e.post(3) // read from the store when the worker starts
	e.connect(a, "g")
	eventually(t, "the backlog delivered and the worker parked", func() bool {
		return a.count() == 3 && e.parked("g")
	})
	for round := range 5 {
		ids := e.post(2)
		eventually(t, "the new events delivered", func() bool { return a.count() == 3+2*(round+1) })
		eventually(t, "the worker parked again", func() bool { return e.parked("g") })
		backlog = append(backlog, ids...)
	}
	exactlyOnce(t, a.got(), backlog)
	// Progress is written before the worker parks (a parked worker has no
	// watermark left to save until its next periodic rescan).
	if p := e.pending("g"); len(p) != 0 {
		t.Errorf("pending after parking: %v", p)
	}
}

// TestParkingRacesHandOver: events handed over from many goroutines while
// the worker keeps parking and waking are each delivered exactly once, and
// a replay to a parked worker is delivered too.
func TestParkingRacesHandOver(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	a := newFakeAgent("ses_a", 8)
	e.connect(a, "g")
	eventually(t, "the worker parked", func() bool { return e.parked("g") })
	const senders, each = 8, 25
	var mu sync.Mutex
	var ids []string
	var wg sync.WaitGroup
	for range senders {
		wg.Go(func() {
			for range each {
				id := e.post(1)
				mu.Lock()
				ids = append(ids, id...)
				mu.Unlock()
				time.Sleep(100 * time.Microsecond) // not a wait: gaps in which the worker may park
			}
		})
	}
	wg.Wait()
	eventually(t, "every event delivered", func() bool { return a.count() >= senders*each })
	eventually(t, "the worker parked", func() bool { return e.parked("g") })
	exactlyOnce(t, a.got(), ids)

	ev, err := e.mem.GetEvent(t.Context(), ids[0])
	if err != nil {
		t.Fatal(err)
	}
	if names := e.hub.Replay(e.channel, "", ev); len(names) != 1 {
		t.Fatalf("replay taken by %v, want the one group", names)
	}
	eventually(t, "the replay delivered", func() bool { return a.count() == senders*each+1 })
	eventually(t, "the worker parked", func() bool { return e.parked("g") })
}

// TestParkedWorkerStops: a parked worker stops when its last agent leaves,
// and the hub's Close waits for it (goleak checks nothing is left).
func TestParkedWorkerStops(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	a := newFakeAgent("ses_a", 4)
	e.connect(a, "g")
	e.post(1)
	eventually(t, "delivered and parked", func() bool { return a.count() == 1 && e.parked("g") })
	id := e.group("g").ID
	e.hub.mu.Lock()
	w := e.hub.workers[id]
	e.hub.mu.Unlock()
	e.hub.Unregister(a)
	select {
	case <-w.done:
	case <-time.After(20 * time.Second):
		t.Fatal("the parked worker did not finish after its last agent left")
	}
}
