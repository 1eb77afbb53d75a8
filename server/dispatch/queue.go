package dispatch

import (
	"time"

	"github.com/hookrelay/hookrelay/server/store"
)

// The worker's inboxes: events handed over by publish and replays. They
// are slices under inMu rather than channels so that an idle worker holds
// no array for them.

// offer hands a newly committed event to the worker.
func (w *worker) offer(ev *store.Event) {
	w.inMu.Lock()
	if len(w.inbox) < incomingQueue {
		w.inbox = append(w.inbox, ev)
	} else {
		w.overflow.Store(true)
	}
	w.inMu.Unlock()
	w.notify()
}

// takeInbox removes and returns up to n handed-over events, oldest first
// (all of them when n < 0).
func (w *worker) takeInbox(n int) []*store.Event {
	w.inMu.Lock()
	defer w.inMu.Unlock()
	if n < 0 || n > len(w.inbox) {
		n = len(w.inbox)
	}
	evs := w.inbox[:n:n]
	if n == len(w.inbox) {
		w.inbox = nil
	} else {
		w.inbox = w.inbox[n:]
	}
	return evs
}

// replay queues an event to be delivered to this group again.
func (w *worker) replay(ev store.Event) bool {
	w.inMu.Lock()
	ok := len(w.replays) < maxReplays
	if ok {
		w.replays = append(w.replays, &ev)
	}
	w.inMu.Unlock()
	if ok {
		w.notify()
	}
	return ok
}

// takeReplays moves the queued replays to the ready list.
func (w *worker) takeReplays() {
	w.inMu.Lock()
	evs := w.replays
	w.replays = nil
	w.inMu.Unlock()
	for _, ev := range evs {
		w.ready = append(w.ready, readyItem{ev: ev, eventID: ev.ID, seq: ev.Seq, attempt: ev.Attempts + 1, replay: true})
	}
}

type retryItem struct {
	due  time.Time
	item readyItem
}

// retryHeap orders retries by due time.
type retryHeap []retryItem

func (h retryHeap) Len() int { return len(h) }

func (h retryHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }

func (h retryHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }

func (h *retryHeap) Push(x any) { *h = append(*h, x.(retryItem)) }

func (h *retryHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}

// seqHeap orders seqs, lowest first.
type seqHeap []int64

func (h seqHeap) Len() int { return len(h) }

func (h seqHeap) Less(i, j int) bool { return h[i] < h[j] }

func (h seqHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }

func (h *seqHeap) Push(x any) { *h = append(*h, x.(int64)) }

func (h *seqHeap) Pop() any {
	old := *h
	seq := old[len(old)-1]
	*h = old[:len(old)-1]
	return seq
}
