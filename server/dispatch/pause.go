package dispatch

import (
	"container/heap"
	"time"
)

// GroupState is how a group's deliveries go, for the agents list and the
// agents themselves.
type GroupState struct {
	ChannelID string
	Group     string
	// Paused: the group's target refuses connections; the relay sends one
	// probe at a time and the other events wait, in order.
	Paused bool
	// NextTry is when the next probe goes out (Paused only).
	NextTry time.Time
	// Reason is the target's last error (Paused only).
	Reason string
	// Waiting counts the events not yet done that the worker holds.
	Waiting int
}

// state returns the group's state; any goroutine may call it.
func (w *worker) state() GroupState {
	w.stateMu.Lock()
	defer w.stateMu.Unlock()
	st := w.shown
	st.ChannelID, st.Group = w.group.ChannelID, w.group.Name
	return st
}

// parkReady moves the ready list to parked (paused).
func (w *worker) parkReady() {
	for _, it := range w.ready {
		heap.Push(&w.parked, it)
	}
	clear(w.ready)
	w.ready = w.ready[:0]
}

// probe sends the oldest parked event, when its time has come and no probe
// is out.
func (w *worker) probe() {
	for !w.probing && len(w.parked) > 0 && !time.Now().Before(w.nextProbe) {
		w.ready = append(w.ready, heap.Pop(&w.parked).(readyItem))
		n, ok := w.claim(1)
		if !ok {
			w.parkReady()
			return
		}
		if n == 0 {
			continue // held or done by another node: the next one
		}
		a := w.pick()
		if a == nil {
			w.parkReady()
			return
		}
		item := w.ready[0]
		w.ready = w.ready[:0]
		item.probe = true
		w.probing = true
		w.start(a, item)
	}
}

// pause stops the flow: the target refused a connection.
func (w *worker) pause(reason string) {
	w.paused, w.pauseErr = true, reason
	w.probeWait = w.hub.cfg.ProbeMin
	w.nextProbe = time.Now().Add(w.probeWait)
	w.hub.log.Info("target down: group paused", "group", w.group.Name, "channel", w.group.ChannelID, "err", reason)
	w.showState()
}

// resume lets the backlog flow again, oldest first: the target answered.
func (w *worker) resume() {
	w.paused, w.pauseErr = false, ""
	w.parkReady()
	for len(w.parked) > 0 {
		w.ready = append(w.ready, heap.Pop(&w.parked).(readyItem))
	}
	w.hub.log.Info("target back: group resumed", "group", w.group.Name, "channel", w.group.ChannelID)
	w.showState()
}

// showState publishes the group's state to state() and to its agents.
func (w *worker) showState() {
	st := GroupState{ChannelID: w.group.ChannelID, Group: w.group.Name, Paused: w.paused}
	if w.paused {
		st.NextTry, st.Reason = w.nextProbe, w.pauseErr
	}
	w.stateMu.Lock()
	w.shown = st
	w.stateMu.Unlock()
	for _, a := range w.agentList() {
		a.GroupState(st)
	}
}

// itemHeap orders events waiting for their target by seq, oldest first.
type itemHeap []readyItem

func (h itemHeap) Len() int { return len(h) }

func (h itemHeap) Less(i, j int) bool { return h[i].seq < h[j].seq }

func (h itemHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }

func (h *itemHeap) Push(x any) { *h = append(*h, x.(readyItem)) }

func (h *itemHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = readyItem{}
	*h = old[:len(old)-1]
	return it
}
