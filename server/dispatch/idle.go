package dispatch

import "time"

// A worker holds a goroutine only while its group has work. notify starts
// one (run) when none runs; run parks, returning, once the group is idle:
// caught up, nothing handed over, nothing ready, waiting or in flight, and
// its progress written. A parked worker keeps its state in the struct and a
// timer for its periodic duties (the rescan that moves the saved progress
// forward, the "last seen" write), which notifies it when they are due.
// With ten thousand agents each in a group of its own, that is ten thousand
// goroutines fewer, and their stacks, which the store calls had grown.
//
// runMu orders the hand-over: notify sends the wake token and looks at
// running under it, and park looks for a token and clears running under
// it, so an event handed over while the worker parks either keeps it
// running or starts a new goroutine. Only notify sets running, so there is
// never more than one goroutine.

// notify tells the worker something changed, starting its goroutine if it
// is parked.
func (w *worker) notify() {
	w.runMu.Lock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	start := !w.running && !w.finished
	w.running = w.running || start
	w.runMu.Unlock()
	if start {
		go w.run()
	}
}

// idle reports whether the worker has nothing to do until a notify or its
// periodic duties. Owned by run's goroutine.
func (w *worker) idle(storeErr bool) bool {
	if !w.live || storeErr || w.claimFailed || w.writing || w.attempts > 0 || w.probing ||
		len(w.ready) > 0 || len(w.retries) > 0 || len(w.parked) > 0 || len(w.outstanding) > 0 ||
		len(w.inflight) > 0 || len(w.unwritten) > 0 || len(w.toFinish) > 0 || len(w.finishing) > 0 ||
		w.persisted < w.watermark() || w.overflow.Load() {
		return false
	}
	w.inMu.Lock()
	defer w.inMu.Unlock()
	return len(w.inbox) == 0 && len(w.replays) == 0
}

// park ends run's goroutine unless a notify came since the worker last
// looked; the idle timer notifies it after wait. It reports whether the
// goroutine is to return.
func (w *worker) park(wait time.Duration) bool {
	w.runMu.Lock()
	defer w.runMu.Unlock()
	if len(w.wake) > 0 {
		return false
	}
	w.running = false
	w.results, w.written = nil, nil
	// An idle group holds neither its emptied queues' arrays nor the heaps'.
	w.ready, w.retries, w.parked, w.oldest = nil, nil, nil, nil
	if w.idleTimer == nil {
		w.idleTimer = time.AfterFunc(wait, w.notify)
	} else {
		w.idleTimer.Reset(wait)
	}
	return true
}

// end finishes a stopped worker for good: its deliveries, its last
// progress write, its claims; then done is closed and the hub's count of
// workers goes down.
func (w *worker) end() {
	w.finish()
	w.runMu.Lock()
	w.finished, w.running = true, false
	if w.idleTimer != nil {
		w.idleTimer.Stop()
	}
	w.runMu.Unlock()
	close(w.done)
	w.hub.retired(w)
	w.hub.wg.Done()
}
