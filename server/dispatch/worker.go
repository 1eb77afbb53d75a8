package dispatch

import (
	"container/heap"
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hookrelay/hookrelay/server/store"
)

// worker dispatches one group's events to the group's connected agents:
// oldest first, at most one agent per event, retrying failed attempts with
// backoff. It exists while the group has an agent connected, and holds a
// goroutine only while the group has work (idle.go).
//
// The store is the queue. The worker starts in backlog mode, reading the
// events not yet done for the group (store.Pending) page by page, so events
// committed while no agent was connected, or before a relay restart, are
// found. Once a page comes back short it is caught up and switches to live
// mode: new events are handed over in memory by publish (offer), with no
// store read. A channel's events become visible in seq order, so an event
// committed after the snapshot the last page was read from has a seq above
// that page's horizon (the channel's highest seq in the snapshot) and comes
// through offer; one at or below it was in a page. When the hand-over queue
// overflows, the worker goes back to backlog mode from the horizon; events
// it already holds are skipped by seq.
//
// Nodes sharing the store claim each event before attempting it (Cluster):
// an event another node holds waits until that node's lease ends and is
// claimed again then; one another node finished counts as done here.
//
// When an agent's target refuses connections, the app is down, not this
// event: the group pauses (pause.go). One event, the oldest, goes out as a
// probe after a wait that doubles up to ProbeMax; the others wait in seq
// order and are not attempted, so a down app costs a probe now and then,
// not an attempt per queued event. The first answer lets them flow again.
//
// Finished attempts come back to the worker, which writes them together
// with the group's new watermark and its "last seen" time in one store call
// (store.RecordProgress), one at a time: what finishes while a write is in
// flight goes into the next one.
type worker struct {
	hub   *Hub
	group store.Group

	mu     sync.Mutex // guards agents, next
	agents []Agent
	next   int // round-robin position

	stateMu sync.Mutex // guards shown
	shown   GroupState // what state() reports, set by run's goroutine

	wake     chan struct{} // capacity 1: something changed
	overflow atomic.Bool   // publish found the inbox full, or a resync: rescan the store
	probeNow atomic.Bool   // an agent says its target is back: probe without waiting
	done     chan struct{} // closed when the worker has finished for good
	prev     *worker       // the group's previous worker, still finishing; run waits for it
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup // delivery goroutines and the progress write

	inMu    sync.Mutex     // guards inbox, replays
	inbox   []*store.Event // new events handed over by publish, at most incomingQueue
	replays []*store.Event // events to deliver again (replay), at most maxReplays

	runMu     sync.Mutex  // guards running, finished, idleTimer
	running   bool        // a goroutine runs run (idle.go)
	finished  bool        // the worker has stopped and finished: no goroutine starts again
	idleTimer *time.Timer // wakes a parked worker for its periodic duties; nil until first parked

	// Made when the first attempt or progress write starts and dropped when
	// the worker parks, so that an idle worker holds neither.
	results chan deliveryResult // finished attempts
	written chan progressWrite  // capacity 1: the progress write in flight has ended

	// Owned by run's goroutine.
	started      bool             // run has set the fields below up
	attempts     int              // attempt goroutines running (replays included)
	live         bool             // caught up: new events come through the inbox
	scanFrom     int64            // backlog paging position
	horizon      int64            // every event with Seq <= horizon was read from the store
	lastScan     time.Time        // when backlog mode last caught up
	aboveHorizon bool             // live mode took events above the horizon since lastScan
	ready        []readyItem      // fetched or due again, not yet handed to an agent
	retries      retryHeap        // failed attempts waiting for their backoff, and events other nodes hold
	outstanding  map[int64]int    // seq → attempts made, for events not done
	oldest       seqHeap          // the seqs of outstanding, lowest first (lazily: stale entries are skipped)
	finishing    map[int64]bool   // seqs of events done whose record is not written yet
	claimed      map[int64]bool   // seqs this node holds a claim on and has not finished
	inflight     map[int64]int    // seqs being attempted (claimed) → how many attempts of it run
	toFinish     []int64          // claims to finish once their records are written; renewed meanwhile
	inWrite      []int64          // claims the progress write in flight finishes; renewed meanwhile
	finishAfter  time.Time        // Finish failed: the claims in toFinish are tried again from then
	unwritten    []store.Delivery // finished attempts not yet written
	writing      bool             // a progress write is in flight
	persisted    int64            // DoneThrough as last written
	persistedAt  time.Time
	touchedAt    time.Time // when LastSeenAt was last written
	leases       leaseSet  // the claims to keep, renewed by renewLoop (claim.go)
	claimFailed  bool      // the last Claim failed: try again in a second

	// The target refused connections: the group is paused. One event at a
	// time goes out as a probe, the oldest; the others wait in parked, in
	// seq order, and are not attempted.
	paused    bool
	parked    itemHeap      // events waiting for the target, lowest seq first
	probing   bool          // the probe is in flight
	probeWait time.Duration // the wait before the next probe: doubles from ProbeMin to ProbeMax
	nextProbe time.Time
	pauseErr  string // the target's last error
}

type readyItem struct {
	ev      *store.Event // nil: load by id
	eventID string
	seq     int64
	attempt int
	replay  bool
	probe   bool // sent while the group is paused, to see whether the target is back
	recheck bool // another node held it: check the store before sending (claim.go)
}

type deliveryResult struct {
	item     readyItem
	done     bool            // delivered, or given up
	gone     bool            // the agent went away: retry soon
	stopping bool            // the agent refused to start it: not an attempt, hand it to another
	refused  bool            // the agent's target refused the connection
	reached  bool            // the agent reached its target (any answer, or a failure other than refused)
	record   *store.Delivery // the attempt to write; nil when none was made
	agent    Agent           // whose slot the attempt holds until handled
}

func newWorker(h *Hub, g store.Group) *worker {
	ctx, cancel := context.WithCancel(h.ctx)
	w := &worker{
		hub:         h,
		group:       g,
		wake:        make(chan struct{}, 1),
		ctx:         ctx,
		cancel:      cancel,
		outstanding: make(map[int64]int),
		finishing:   make(map[int64]bool),
		claimed:     make(map[int64]bool),
		inflight:    make(map[int64]int),
		done:        make(chan struct{}),
	}
	// A parked worker hears of stop, or of the hub's end, through this.
	context.AfterFunc(ctx, w.notify)
	return w
}

const (
	incomingQueue   = 256     // events handed over in memory per group; more fall back to a store scan
	maxReplays      = 64      // replays waiting per group; more are refused
	readyTarget     = 64      // events read ahead of the agents' free slots
	inlineBodyLimit = 1 << 20 // larger bodies are reloaded from the store at dispatch
	rescanInterval  = 30 * time.Second
	maxUnwritten    = 4096 // finished attempts kept for writing while the store fails; older ones are dropped
)

// rescan makes the worker read the store again from its horizon.
func (w *worker) rescan() {
	w.overflow.Store(true)
	w.notify()
}

func (w *worker) addAgent(a Agent) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, x := range w.agents {
		if x == a {
			return false
		}
	}
	w.agents = append(w.agents, a)
	w.notify()
	if st := w.state(); st.Paused {
		a.GroupState(st) // it joins a paused group: say so
	}
	return true
}

func (w *worker) removeAgent(a Agent) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, x := range w.agents {
		if x == a {
			w.agents = append(w.agents[:i], w.agents[i+1:]...)
			break
		}
	}
	return len(w.agents)
}

func (w *worker) agentCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.agents)
}

func (w *worker) agentList() []Agent {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]Agent(nil), w.agents...)
}

// pick returns an agent with a free slot (taken), round robin, or nil.
func (w *worker) pick() Agent {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i := range w.agents {
		a := w.agents[(w.next+i)%len(w.agents)]
		if a.TryAcquire() {
			w.next = (w.next + i + 1) % len(w.agents)
			return a
		}
	}
	return nil
}

// freeSlots counts free delivery slots over the group's agents.
func (w *worker) freeSlots() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, a := range w.agents {
		n += a.FreeSlots()
	}
	return n
}

// stop ends the worker: it finishes its deliveries and its last progress
// write, then closes done.
func (w *worker) stop() { w.cancel() }

// run is the worker's goroutine: notify starts it when there is work, and
// it returns when the group is idle (park) or the worker stopped (end).
func (w *worker) run() {
	if !w.started {
		if w.prev != nil {
			// The group's previous worker may still be recording its last
			// attempts; reading Pending before it is done would send them again.
			select {
			case <-w.prev.done:
			case <-w.ctx.Done():
				w.end()
				return
			}
			w.prev = nil
		}
		w.started = true
		w.scanFrom = w.group.DoneThrough
		w.horizon = w.group.DoneThrough
		w.persisted = w.group.DoneThrough
		w.persistedAt = time.Now()
		w.touchedAt = time.Now() // EnsureGroup set LastSeenAt at the handshake
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		w.takeReplays()
		if w.overflow.Swap(false) && w.live {
			w.live, w.scanFrom = false, w.horizon
		}
		if w.live && w.aboveHorizon && time.Since(w.lastScan) > rescanInterval && len(w.ready) == 0 {
			// Move the horizon (and so the saved progress) forward now and
			// then; a group that took nothing since the last scan has no
			// progress to save, and its idle worker stays parked.
			w.live, w.scanFrom = false, w.horizon
		}
		now := time.Now()
		if w.probeNow.Swap(false) && w.paused {
			w.nextProbe = now
		}
		w.promoteDue(now)
		w.publishLeases()
		storeErr := false
		if w.live {
			w.takeIncoming()
		} else {
			storeErr = w.scan()
		}
		w.dispatchReady()
		w.persist(false)

		wait := time.Hour
		if len(w.retries) > 0 {
			wait = time.Until(w.retries[0].due)
		}
		if storeErr || w.claimFailed || w.persisted < w.watermark() || len(w.toFinish) > 0 {
			wait = min(wait, time.Second)
		}
		if w.live && w.aboveHorizon {
			wait = min(wait, time.Until(w.lastScan.Add(rescanInterval)))
		}
		if w.paused && !w.probing && len(w.parked) > 0 {
			wait = min(wait, time.Until(w.nextProbe))
		}
		wait = min(wait, time.Until(w.touchedAt.Add(time.Minute+time.Second)))
		wait = max(wait, time.Millisecond)
		if w.ctx.Err() == nil && w.idle(storeErr) && w.park(wait) {
			return
		}
		timer.Reset(wait)
		select {
		case <-w.ctx.Done():
			w.end()
			return
		case <-w.wake:
		case res := <-w.results:
			w.handle(res)
			w.handleReady()
		case pw := <-w.written:
			w.wrote(pw)
		case <-timer.C:
		}
	}
}

// handleReady handles the finished attempts already waiting, so that they
// go into one progress write.
func (w *worker) handleReady() {
	for {
		select {
		case res := <-w.results:
			w.handle(res)
		default:
			return
		}
	}
}

// finish waits for the worker's delivery goroutines and progress write,
// handling what they bring back, writes the last progress and hands back
// the claims it did not finish.
func (w *worker) finish() {
	idle := make(chan struct{})
	go func() {
		w.wg.Wait()
		close(idle)
	}()
	for running := true; running; {
		select {
		case res := <-w.results:
			w.handle(res)
		case pw := <-w.written:
			w.wrote(pw)
		case <-idle:
			running = false
		}
	}
	w.handleReady()
	select {
	case pw := <-w.written:
		w.wrote(pw)
	default:
	}
	w.persist(true)
	if len(w.claimed) > 0 {
		seqs := make([]int64, 0, len(w.claimed))
		for seq := range w.claimed {
			seqs = append(seqs, seq)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := w.hub.node.Release(ctx, w.group.ID, seqs); err != nil {
			w.hub.log.Warn("hand back claims", "group", w.group.Name, "count", len(seqs), "err", err)
		}
	}
}

// want is how many more events the ready list should hold.
func (w *worker) want() int {
	return max(readyTarget, w.freeSlots()) - len(w.ready) - len(w.parked)
}

// hold notes an event as outstanding (not done) with the attempts made.
func (w *worker) hold(seq int64, attempts int) {
	if _, ok := w.outstanding[seq]; !ok {
		heap.Push(&w.oldest, seq)
	}
	w.outstanding[seq] = attempts
}

// take adds a fetched or handed-over event to the ready list unless the
// worker already holds it.
func (w *worker) take(ev *store.Event) {
	// An event done but not yet written as done is still pending in the
	// store: taking it again would deliver it twice.
	if _, held := w.outstanding[ev.Seq]; held || w.finishing[ev.Seq] {
		return
	}
	w.hold(ev.Seq, ev.GroupAttempts)
	item := readyItem{ev: ev, eventID: ev.ID, seq: ev.Seq, attempt: ev.GroupAttempts + 1}
	if ev.Body == nil || len(ev.Body) > inlineBodyLimit {
		item.ev = nil // reload at dispatch: keeps large bodies out of the queue
	}
	w.ready = append(w.ready, item)
}

// takeIncoming moves handed-over events to the ready list (live mode).
func (w *worker) takeIncoming() {
	n := w.want()
	if n <= 0 {
		return
	}
	for _, ev := range w.takeInbox(n) {
		if ev.Seq > w.horizon {
			w.take(ev)
			w.aboveHorizon = true
		}
	}
}

// scan reads one page of the backlog (backlog mode) and switches to live
// mode when the page is short. It reports whether the store failed.
func (w *worker) scan() bool {
	limit := w.want()
	if limit <= 0 {
		return false
	}
	page, err := w.hub.store.Pending(w.ctx, store.PendingQuery{
		GroupID: w.group.ID, AfterSeq: w.scanFrom, Limit: limit, MaxBody: inlineBodyLimit,
	})
	if err != nil {
		if w.ctx.Err() == nil {
			w.hub.log.Error("read pending events", "group", w.group.Name, "err", err)
		}
		return true
	}
	evs := page.Events
	for i := range evs {
		w.scanFrom = max(w.scanFrom, evs[i].Seq)
		w.take(&evs[i])
	}
	if len(evs) < limit {
		w.live = true
		w.horizon = max(w.horizon, page.Horizon, w.scanFrom)
		w.lastScan = time.Now()
		w.aboveHorizon = false
		// Handed-over events at or below the horizon were in the pages.
		for _, ev := range w.takeInbox(-1) {
			if ev.Seq > w.horizon {
				w.take(ev)
				w.aboveHorizon = true
			}
		}
	}
	return false
}

// dispatchReady hands ready events to agents with free slots, oldest
// first, claiming them first. A paused group sends only its probe.
func (w *worker) dispatchReady() {
	w.claimFailed = false
	if w.paused {
		w.parkReady()
		w.probe()
		return
	}
	for len(w.ready) > 0 {
		n := min(w.freeSlots(), len(w.ready))
		if n == 0 {
			return
		}
		n, ok := w.claim(n)
		if !ok {
			return
		}
		for ; n > 0; n-- {
			a := w.pick()
			if a == nil {
				return
			}
			item := w.ready[0]
			w.ready[0] = readyItem{}
			w.ready = w.ready[1:]
			w.start(a, item)
		}
	}
}

// start runs one attempt of item on agent a, which holds a slot for it.
func (w *worker) start(a Agent, item readyItem) {
	if !item.replay {
		w.hold(item.seq, item.attempt)
		w.inflight[item.seq]++
	}
	w.attempts++
	if w.results == nil {
		w.results = make(chan deliveryResult, 64)
	}
	results := w.results // the worker does not park while this attempt runs
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		// Never dropped: finish takes results until every attempt ended.
		results <- w.attempt(a, item)
		w.notify()
	}()
}

// handle takes a finished attempt: done, back in line after a backoff, or
// parked while the target is down.
func (w *worker) handle(res deliveryResult) {
	if res.agent != nil {
		defer res.agent.Release()
	}
	w.attempts--
	item := res.item
	if !item.replay {
		if w.inflight[item.seq]--; w.inflight[item.seq] <= 0 {
			delete(w.inflight, item.seq)
		}
	}
	if item.probe {
		w.probing = false
		item.probe = false
	}
	if res.refused && w.paused && res.item.probe {
		// The probe found the target still down: not an attempt, not
		// recorded; it waits in line with the others.
		w.probeWait = min(2*w.probeWait, w.hub.cfg.ProbeMax)
		w.nextProbe = time.Now().Add(w.probeWait)
		w.pauseErr = res.record.Error
		item.ev = nil
		heap.Push(&w.parked, item)
		w.showState()
		return
	}
	if res.record != nil {
		w.unwritten = append(w.unwritten, *res.record)
		w.dropUnwritten()
		if f := w.hub.cfg.OnAttempt; f != nil {
			f(*res.record)
		}
	}
	switch {
	case res.refused && !w.paused:
		w.pause(res.record.Error)
	case res.reached && w.paused:
		w.resume()
	}
	if res.stopping {
		w.ready = append(w.ready, item)
		return
	}
	if res.done {
		if !item.replay {
			delete(w.outstanding, item.seq)
			if w.claimed[item.seq] {
				delete(w.claimed, item.seq)
				w.toFinish = append(w.toFinish, item.seq)
			}
			if res.record != nil {
				w.finishing[item.seq] = true
			}
		}
		return
	}
	item.ev = nil // reload when due: keeps large bodies out of memory while waiting
	item.attempt++
	if res.refused {
		heap.Push(&w.parked, item) // waits for the target, in order
		return
	}
	delay := backoff(item.attempt-1, w.hub.cfg.RetryMaxBackoff)
	if res.gone {
		delay = 100 * time.Millisecond
	}
	heap.Push(&w.retries, retryItem{due: time.Now().Add(delay), item: item})
}

// promoteDue moves retries whose time has come to the ready list.
func (w *worker) promoteDue(now time.Time) {
	for len(w.retries) > 0 && !w.retries[0].due.After(now) {
		it := heap.Pop(&w.retries).(retryItem)
		w.ready = append(w.ready, it.item)
	}
}
