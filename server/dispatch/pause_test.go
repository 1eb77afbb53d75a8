package dispatch

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/protocol"
)

// TestPausedGroupProbes: a target that refuses connections pauses the
// group: one probe at a time, the oldest event, with a growing wait; the
// other events wait and are not attempted, probes are not recorded nor
// counted toward giving up. When a probe gets through, the backlog flows
// oldest first, each event once.
func TestPausedGroupProbes(t *testing.T) {
	t.Parallel()
	const probeMin, probeMax = 20 * time.Millisecond, 80 * time.Millisecond
	e := newEnv(t, Config{MaxAttempts: 2, ProbeMin: probeMin, ProbeMax: probeMax})
	ids := e.post(50)
	a := newFakeAgent("ses_a", 1)
	var down atomic.Bool
	down.Store(true)
	var mu sync.Mutex
	var starts []time.Time // of each delivery while the target is down
	a.answer = func(*protocol.DeliveryRequest) (*protocol.DeliveryResponse, error) {
		if down.Load() {
			mu.Lock()
			starts = append(starts, time.Now())
			mu.Unlock()
			return refused()
		}
		return &protocol.DeliveryResponse{Status: 200}, nil
	}
	e.connect(a, "g")
	const probes = 6
	eventually(t, "the first attempt and six probes", func() bool { return a.count() >= 1+probes })
	eventually(t, "the group shows paused", func() bool {
		ms := e.hub.Sessions(e.channel)
		return len(ms) == 1 && ms[0].State.Paused
	})
	if e.hub.HasAgents(e.channel) {
		t.Error("HasAgents with the only group paused: sync senders would wait for nothing")
	}
	st := e.hub.Sessions(e.channel)[0].State
	if st.Reason == "" || st.NextTry.IsZero() {
		t.Errorf("paused state without a reason or next try: %+v", st)
	}
	down.Store(false)
	eventually(t, "all 50 delivered", func() bool { return a.count() >= 50+countOf(a.got(), ids[0])-1 })
	eventually(t, "the watermark passes the last", func() bool { return e.doneThrough("g") >= e.seq(ids[49]) })

	got := a.got()
	// While down, only the oldest event went out.
	probed := countOf(got, ids[0])
	if probed < 1+probes {
		t.Errorf("event 0 went out %d times, want its attempt and %d probes", probed, probes)
	}
	for i, id := range got[:probed] {
		if id != ids[0] {
			t.Fatalf("delivery %d was %s, not the oldest event: more than the probe went out while paused", i, id)
		}
	}
	// Then the backlog, oldest first, each once.
	exactlyOnce(t, got[probed-1:], ids)
	for i, id := range got[probed-1:] {
		if id != ids[i] {
			t.Fatalf("after the target came back, delivery %d was %s, want %s (oldest first)", i, id, ids[i])
		}
	}
	// The waits between probes grow from probeMin to probeMax.
	mu.Lock()
	defer mu.Unlock()
	wait := probeMin
	for i := 1; i < len(starts); i++ {
		if gap := starts[i].Sub(starts[i-1]); gap < wait {
			t.Errorf("probe %d came %s after the one before, under the wait of %s", i, gap, wait)
		}
		wait = min(2*wait, probeMax)
	}
	// Only the first refused attempt and the successful one are recorded;
	// probes are not, and did not make the relay give up.
	ds := e.deliveries(ids[0])
	if len(ds) != 2 || ds[0].Status != 0 || ds[1].Status != 200 || !ds[1].Done {
		t.Errorf("event 0 records: %+v; want the refused attempt, then the delivery", ds)
	}
	// The agent was told: paused with a next try, then flowing.
	a.mu.Lock()
	states := append([]GroupState(nil), a.states...)
	a.mu.Unlock()
	if len(states) < 2 || !states[0].Paused || states[0].NextTry.IsZero() || states[len(states)-1].Paused {
		t.Errorf("agent states: %+v; want paused first, flowing last", states)
	}
}

// TestPausedGroupInFlight: attempts in flight when the target goes down
// come back refused, are recorded, and wait in line; after that only the
// probe goes out, and is not recorded. An agent that joins a paused group
// is told.
func TestPausedGroupInFlight(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{ProbeMin: 10 * time.Millisecond, ProbeMax: 40 * time.Millisecond})
	ids := e.post(20)
	var down atomic.Bool
	down.Store(true)
	var mu sync.Mutex
	var refusedIDs []string
	answer := func(req *protocol.DeliveryRequest) (*protocol.DeliveryResponse, error) {
		if down.Load() {
			mu.Lock()
			refusedIDs = append(refusedIDs, req.EventID)
			mu.Unlock()
			return refused()
		}
		return &protocol.DeliveryResponse{Status: 200}, nil
	}
	a := newFakeAgent("ses_a", 8)
	a.answer = answer
	e.connect(a, "g")
	eventually(t, "paused", func() bool {
		ms := e.hub.Sessions(e.channel)
		return len(ms) == 1 && ms[0].State.Paused
	})
	first := a.count()
	eventually(t, "three probes", func() bool { return a.count() >= first+3 })
	b := newFakeAgent("ses_b", 8)
	b.answer = answer
	e.connect(b, "g")
	b.mu.Lock()
	told := len(b.states) > 0 && b.states[0].Paused
	b.mu.Unlock()
	if !told {
		t.Error("an agent joining a paused group was not told")
	}
	down.Store(false)
	eventually(t, "the watermark passes the last", func() bool { return e.doneThrough("g") >= e.seq(ids[19]) })

	mu.Lock()
	defer mu.Unlock()
	probes := countOf(refusedIDs, ids[0]) - 1
	if probes < 3 {
		t.Errorf("%d probes of the oldest event, want at least 3", probes)
	}
	for _, id := range ids[1:] {
		if n := countOf(refusedIDs, id); n > 1 {
			t.Errorf("event %s was refused %d times: only the oldest may be probed", id, n)
		}
	}
	var recorded int
	for _, id := range ids {
		for _, d := range e.deliveries(id) {
			if d.Status == 0 {
				recorded++
			}
		}
	}
	if want := len(refusedIDs) - probes; recorded != want {
		t.Errorf("%d refused attempts recorded, want %d: those in flight when the pause began, not the probes", recorded, want)
	}
	exactlyOnce(t, successes(append(a.got(), b.got()...), refusedIDs), ids)
}

// successes removes the refused deliveries from got.
func successes(got, refused []string) []string {
	left := map[string]int{}
	for _, id := range refused {
		left[id]++
	}
	var out []string
	for _, id := range got {
		if left[id] > 0 {
			left[id]--
			continue
		}
		out = append(out, id)
	}
	return out
}

func countOf(ids []string, id string) int {
	n := 0
	for _, x := range ids {
		if x == id {
			n++
		}
	}
	return n
}

// TestTargetUpProbesAtOnce: when an agent says its target is back, its
// paused group probes at once instead of at the end of a long wait.
func TestTargetUpProbesAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{ProbeMin: time.Hour, ProbeMax: time.Hour})
	ids := e.post(3)
	a := newFakeAgent("ses_a", 1)
	var down atomic.Bool
	down.Store(true)
	a.answer = func(*protocol.DeliveryRequest) (*protocol.DeliveryResponse, error) {
		if down.Load() {
			return refused()
		}
		return &protocol.DeliveryResponse{Status: 200}, nil
	}
	e.connect(a, "g")
	eventually(t, "paused", func() bool {
		ms := e.hub.Sessions(e.channel)
		return len(ms) == 1 && ms[0].State.Paused
	})
	down.Store(false)
	e.hub.TargetUp(a)
	eventually(t, "all delivered well before the hour's wait", func() bool { return len(successes(a.got(), ids[:1])) == 3 })
}
