package dispatch

import (
	"container/heap"
	"context"
	crand "crypto/rand"
	"encoding/base32"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hookrelay/hookrelay/protocol"
	"github.com/hookrelay/hookrelay/server/store"
)

// worker dispatches one group's events to the group's connected agents:
// oldest first, at most one agent per event, retrying failed attempts with
// backoff. It runs while the group has an agent connected.
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

	wake     chan struct{}       // capacity 1: something changed
	incoming chan *store.Event   // new events handed over by publish
	overflow atomic.Bool         // publish found incoming full, or a resync: rescan the store
	probeNow atomic.Bool         // an agent says its target is back: probe without waiting
	results  chan deliveryResult // finished attempts
	replays  chan *store.Event   // events to deliver again (replay); pointers keep an idle worker small
	written  chan progressWrite  // capacity 1: the progress write in flight has ended
	done     chan struct{}       // closed when run has returned
	prev     *worker             // the group's previous worker, still finishing; run waits for it
	ctx      context.Context     // ended by stop
	cancel   context.CancelFunc
	wg       sync.WaitGroup // delivery goroutines and the progress write

	// Owned by run's goroutine.
	live        bool             // caught up: new events come through incoming
	scanFrom    int64            // backlog paging position
	horizon     int64            // every event with Seq <= horizon was read from the store
	lastScan    time.Time        // when backlog mode last caught up
	ready       []readyItem      // fetched or due again, not yet handed to an agent
	retries     retryHeap        // failed attempts waiting for their backoff, and events other nodes hold
	outstanding map[int64]int    // seq → attempts made, for events not done
	oldest      seqHeap          // the seqs of outstanding, lowest first (lazily: stale entries are skipped)
	finishing   map[int64]bool   // seqs of events done whose record is not written yet
	claimed     map[int64]bool   // seqs this node holds a claim on and has not finished
	inflight    map[int64]int    // seqs being attempted (claimed) → how many attempts of it run
	toFinish    []int64          // claims to finish once their records are written
	unwritten   []store.Delivery // finished attempts not yet written
	writing     bool             // a progress write is in flight
	persisted   int64            // DoneThrough as last written
	persistedAt time.Time
	touchedAt   time.Time // when LastSeenAt was last written
	renewedAt   time.Time // when the claims in flight were last renewed
	claimFailed bool      // the last Claim failed: try again in a second

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

// progressWrite is a store.RecordProgress call that has ended.
type progressWrite struct {
	p      store.Progress
	finish []int64 // claims finished with it
	err    error
}

func newWorker(h *Hub, g store.Group) *worker {
	ctx, cancel := context.WithCancel(h.ctx)
	return &worker{
		hub:         h,
		group:       g,
		wake:        make(chan struct{}, 1),
		incoming:    make(chan *store.Event, incomingQueue),
		results:     make(chan deliveryResult, 64),
		replays:     make(chan *store.Event, 64),
		written:     make(chan progressWrite, 1),
		ctx:         ctx,
		cancel:      cancel,
		outstanding: make(map[int64]int),
		finishing:   make(map[int64]bool),
		claimed:     make(map[int64]bool),
		inflight:    make(map[int64]int),
		done:        make(chan struct{}),
	}
}

const (
	incomingQueue   = 256     // events handed over in memory per group; more fall back to a store scan
	readyTarget     = 64      // events read ahead of the agents' free slots
	inlineBodyLimit = 1 << 20 // larger bodies are reloaded from the store at dispatch
	rescanInterval  = 30 * time.Second
	maxUnwritten    = 4096 // finished attempts kept for writing while the store fails; older ones are dropped
)

func (w *worker) notify() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// offer hands a newly committed event to the worker.
func (w *worker) offer(ev *store.Event) {
	select {
	case w.incoming <- ev:
	default:
		w.overflow.Store(true)
	}
	w.notify()
}

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

// stop ends the worker; run returns after its deliveries end.
func (w *worker) stop() { w.cancel() }

// replay queues an event to be delivered to this group again.
func (w *worker) replay(ev store.Event) bool {
	select {
	case w.replays <- &ev:
		w.notify()
		return true
	default:
		return false
	}
}

func (w *worker) run() {
	defer func() {
		w.finish()
		close(w.done)
		w.hub.retired(w)
	}()
	if w.prev != nil {
		// The group's previous worker may still be recording its last
		// attempts; reading Pending before it is done would send them again.
		select {
		case <-w.prev.done:
		case <-w.ctx.Done():
			return
		}
	}
	w.scanFrom = w.group.DoneThrough
	w.horizon = w.group.DoneThrough
	w.persisted = w.group.DoneThrough
	w.persistedAt = time.Now()
	w.touchedAt = time.Now() // EnsureGroup set LastSeenAt at the handshake
	w.renewedAt = time.Now()
	lease := w.hub.cfg.Lease
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		if w.overflow.Swap(false) && w.live {
			w.live, w.scanFrom = false, w.horizon
		}
		if w.live && time.Since(w.lastScan) > rescanInterval && len(w.ready) == 0 {
			// Move the horizon (and so the saved progress) forward now and then.
			w.live, w.scanFrom = false, w.horizon
		}
		now := time.Now()
		if w.probeNow.Swap(false) && w.paused {
			w.nextProbe = now
		}
		w.promoteDue(now)
		if len(w.inflight) > 0 && now.Sub(w.renewedAt) >= lease/3 {
			w.renew()
		}
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
		if storeErr || w.claimFailed || w.persisted < w.watermark() {
			wait = min(wait, time.Second)
		}
		if w.live {
			wait = min(wait, time.Until(w.lastScan.Add(rescanInterval)))
		}
		if len(w.inflight) > 0 {
			wait = min(wait, time.Until(w.renewedAt.Add(lease/3)))
		}
		if w.paused && !w.probing && len(w.parked) > 0 {
			wait = min(wait, time.Until(w.nextProbe))
		}
		wait = min(wait, time.Until(w.touchedAt.Add(time.Minute+time.Second)))
		timer.Reset(max(wait, time.Millisecond))
		select {
		case <-w.ctx.Done():
			return
		case <-w.wake:
		case res := <-w.results:
			w.handle(res)
			w.handleReady()
		case pw := <-w.written:
			w.wrote(pw)
		case ev := <-w.replays:
			w.ready = append(w.ready, readyItem{ev: ev, eventID: ev.ID, seq: ev.Seq, attempt: ev.Attempts + 1, replay: true})
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
	for n := w.want(); n > 0; n-- {
		select {
		case ev := <-w.incoming:
			if ev.Seq > w.horizon {
				w.take(ev)
			}
		default:
			return
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
		// Handed-over events at or below the horizon were in the pages.
		for drained := false; !drained; {
			select {
			case ev := <-w.incoming:
				if ev.Seq > w.horizon {
					w.take(ev)
				}
			default:
				drained = true
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
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		// Never dropped: finish takes results until every attempt ended.
		w.results <- w.attempt(a, item)
		w.notify()
	}()
}

// claim claims the first n ready events (replays need none) and returns
// how many of them are now at the head of the ready list, claimed. Events
// another node holds wait in the retry heap until its lease ends; events
// another node finished are done. ok is false when the cluster failed.
func (w *worker) claim(n int) (claimed int, ok bool) {
	var seqs []int64
	for _, it := range w.ready[:n] {
		if !it.replay {
			seqs = append(seqs, it.seq)
		}
	}
	if len(seqs) == 0 {
		return n, true
	}
	if _, one := w.hub.node.(*single); one {
		for _, seq := range seqs {
			w.claimed[seq] = true
		}
		return n, true
	}
	claims, err := w.hub.node.Claim(w.ctx, w.group.ID, seqs, w.hub.cfg.Lease)
	if err != nil {
		if w.ctx.Err() == nil {
			w.hub.log.Warn("claim events", "group", w.group.Name, "err", err)
		}
		w.claimFailed = true
		return 0, false
	}
	state := make(map[int64]Claim, len(claims))
	for _, c := range claims {
		state[c.Seq] = c
	}
	kept := w.ready[:0]
	for i, it := range w.ready {
		if i >= n || it.replay {
			kept = append(kept, it)
			if i < n {
				claimed++
			}
			continue
		}
		switch c := state[it.seq]; c.State {
		case ClaimWon:
			w.claimed[it.seq] = true
			kept = append(kept, it)
			claimed++
		case ClaimHeld:
			delete(w.claimed, it.seq)
			it.ev = nil
			heap.Push(&w.retries, retryItem{due: c.Until, item: it})
		case ClaimDone:
			delete(w.claimed, it.seq)
			delete(w.outstanding, it.seq)
		}
	}
	clear(w.ready[len(kept):])
	w.ready = kept
	return claimed, true
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

// renew extends the claims of the attempts in flight.
func (w *worker) renew() {
	w.renewedAt = time.Now()
	seqs := make([]int64, 0, len(w.inflight))
	for seq := range w.inflight {
		seqs = append(seqs, seq)
	}
	if err := w.hub.node.Renew(w.ctx, w.group.ID, seqs, w.hub.cfg.Lease); err != nil && w.ctx.Err() == nil {
		w.hub.log.Warn("renew claims", "group", w.group.Name, "err", err)
	}
}

// handle takes a finished attempt: done, back in line after a backoff, or
// parked while the target is down.
func (w *worker) handle(res deliveryResult) {
	if res.agent != nil {
		defer res.agent.Release()
	}
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

// watermark is the highest seq at or below which every event is done.
func (w *worker) watermark() int64 {
	low := w.horizon
	if !w.live {
		low = w.scanFrom
	}
	for len(w.oldest) > 0 {
		if _, ok := w.outstanding[w.oldest[0]]; ok {
			return min(low, w.oldest[0]-1)
		}
		heap.Pop(&w.oldest) // done since
	}
	return low
}

// persist writes the finished attempts, the watermark and the "last seen"
// time in one store call: at once when attempts wait, the watermark alone at
// most once a second, the time once a minute; with final, everything now.
// Only one write is in flight; it runs in a goroutine so that dispatching
// goes on meanwhile, except the final one, which persist waits for. The
// claims of events done are finished after their records are written.
func (w *worker) persist(final bool) {
	if w.writing {
		return
	}
	p := store.Progress{GroupID: w.group.ID, Deliveries: w.unwritten}
	if wm := w.watermark(); wm > w.persisted && (final || len(p.Deliveries) > 0 || time.Since(w.persistedAt) >= time.Second) {
		p.DoneThrough = wm
	}
	if time.Since(w.touchedAt) > time.Minute {
		p.SeenAt = time.Now()
	}
	if len(p.Deliveries) == 0 && p.DoneThrough == 0 && p.SeenAt.IsZero() && len(w.toFinish) == 0 {
		return
	}
	finish := w.toFinish
	w.unwritten, w.toFinish = nil, nil
	node := w.hub.node
	write := func() progressWrite {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		pw := progressWrite{p: p, finish: finish}
		if len(p.Deliveries) > 0 || p.DoneThrough > 0 || !p.SeenAt.IsZero() {
			pw.err = w.hub.store.RecordProgress(ctx, p)
		}
		if pw.err == nil && len(finish) > 0 {
			if err := node.Finish(ctx, w.group.ID, finish); err != nil {
				// Their done marks are stored: no node takes them again
				// from the store, and their leases end.
				w.hub.log.Warn("finish claims", "group", w.group.Name, "err", err)
			}
		}
		return pw
	}
	if final {
		w.wrote(write())
		return
	}
	w.writing = true
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		w.written <- write() // capacity 1, one write at a time: never blocks
		w.notify()
	}()
}

// wrote takes the outcome of a progress write. Attempts that could not be
// written are kept for the next one.
func (w *worker) wrote(pw progressWrite) {
	w.writing = false
	p := pw.p
	if pw.err != nil {
		w.hub.log.Warn("save group progress", "group", w.group.Name, "err", pw.err)
		w.unwritten = append(p.Deliveries, w.unwritten...)
		w.toFinish = append(pw.finish, w.toFinish...)
		w.dropUnwritten()
		return
	}
	w.forgetFinished(p.Deliveries)
	if p.DoneThrough > 0 {
		w.persisted, w.persistedAt = max(w.persisted, p.DoneThrough), time.Now()
	}
	if !p.SeenAt.IsZero() {
		w.touchedAt = p.SeenAt
	}
	if f := w.hub.cfg.OnRecorded; f != nil {
		for _, d := range p.Deliveries {
			f(d)
		}
	}
}

// dropUnwritten drops the oldest unwritten records beyond maxUnwritten
// (the store has failed for a long while); their events may be delivered
// again.
func (w *worker) dropUnwritten() {
	over := len(w.unwritten) - maxUnwritten
	if over <= 0 {
		return
	}
	w.hub.log.Error("drop delivery records the store could not take", "group", w.group.Name, "count", over)
	w.forgetFinished(w.unwritten[:over])
	w.unwritten = w.unwritten[over:]
}

// forgetFinished forgets the events of records that are written (or dropped).
func (w *worker) forgetFinished(ds []store.Delivery) {
	for _, d := range ds {
		if d.Done {
			delete(w.finishing, d.EventSeq)
		}
	}
}

// attempt delivers item to agent a once and returns the outcome with the
// attempt to record. The agent's slot is freed when the worker has handled
// the outcome, so that a refusal pauses the group before the slot takes
// another event.
func (w *worker) attempt(a Agent, item readyItem) deliveryResult {
	res := w.try(a, item)
	res.agent = a
	return res
}

func (w *worker) try(a Agent, item readyItem) deliveryResult {
	h := w.hub
	ev := item.ev
	if ev == nil {
		loaded, err := h.store.GetEvent(w.ctx, item.eventID)
		if err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return deliveryResult{item: item, done: true} // deleted meanwhile
			}
			h.log.Warn("load event for delivery", "event", item.eventID, "err", err)
			return deliveryResult{item: item, gone: true}
		}
		if loaded.State != store.EventAccepted && !item.replay {
			return deliveryResult{item: item, done: true} // rejected: never delivered
		}
		ev = &loaded
	}
	req := &protocol.DeliveryRequest{
		EventID:    ev.ID,
		DeliveryID: newID("dlv_"),
		Attempt:    item.attempt,
		Channel:    ev.ChannelID,
		Method:     ev.Method,
		Path:       ev.Path,
		RawQuery:   ev.RawQuery,
		Headers:    ev.Headers,
		BodyLength: int64(len(ev.Body)),
		ReceivedAt: ev.ReceivedAt,
		RemoteAddr: ev.RemoteAddr,
	}
	start := time.Now()
	resp, body, err := a.Deliver(w.ctx, req, ev.Body)
	if errors.Is(err, ErrAgentStopping) {
		return deliveryResult{item: item, stopping: true}
	}
	d := store.Delivery{
		ID: req.DeliveryID, EventID: ev.ID, EventSeq: ev.Seq, ChannelID: ev.ChannelID,
		GroupID: w.group.ID, GroupName: w.group.Name, AgentID: a.ID(), Attempt: item.attempt,
		StartedAt: start.UTC(), Duration: time.Since(start),
	}
	res := deliveryResult{item: item}
	switch {
	case errors.Is(err, ErrUndeliverable):
		d.Error = err.Error()
		d.Done = true
	case err != nil:
		d.Error = err.Error()
		res.gone = true
	case resp.Error != "":
		d.Error = resp.Error
		res.refused = resp.ErrorCode == protocol.ErrCodeConnectionRefused
		res.reached = !res.refused
		h.answer(ev.ID, Answer{ErrCode: resp.ErrorCode, ErrMsg: resp.Error})
	default:
		d.Status = resp.Status
		d.ResponseHeaders = resp.Headers
		d.ResponseBody = body[:min(len(body), h.cfg.MaxStoredResponse)]
		d.Duration = resp.Duration
		d.Done = true
		res.reached = true
		h.answer(ev.ID, Answer{Status: resp.Status, Headers: resp.Headers, Body: body})
	}
	// A target that refuses connections is down, not failing this event:
	// such attempts do not count toward giving up (the group pauses).
	if !d.Done && item.attempt >= h.cfg.MaxAttempts && !item.replay && !res.refused {
		d.Done = true
		d.Error += " (gave up after this attempt; replay it to try again)"
	}
	res.done = d.Done || item.replay && item.attempt >= h.cfg.MaxAttempts && !res.refused
	res.record = &d
	return res
}

// backoff is the wait before attempt+1: exponential from one second with
// full jitter on the upper half, capped.
func backoff(attempt int, maxWait time.Duration) time.Duration {
	d := time.Second << min(attempt-1, 20)
	if d > maxWait || d <= 0 {
		d = maxWait
	}
	return d/2 + rand.N(d/2+1)
}

type retryItem struct {
	due  time.Time
	item readyItem
}

// retryHeap orders retries by due time.
type retryHeap []retryItem

func (h retryHeap) Len() int           { return len(h) }
func (h retryHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h retryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *retryHeap) Push(x any)        { *h = append(*h, x.(retryItem)) }
func (h *retryHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}

// seqHeap orders seqs, lowest first.
type seqHeap []int64

func (h seqHeap) Len() int           { return len(h) }
func (h seqHeap) Less(i, j int) bool { return h[i] < h[j] }
func (h seqHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *seqHeap) Push(x any)        { *h = append(*h, x.(int64)) }
func (h *seqHeap) Pop() any {
	old := *h
	seq := old[len(old)-1]
	*h = old[:len(old)-1]
	return seq
}

// itemHeap orders events waiting for their target by seq, oldest first.
type itemHeap []readyItem

func (h itemHeap) Len() int           { return len(h) }
func (h itemHeap) Less(i, j int) bool { return h[i].seq < h[j].seq }
func (h itemHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *itemHeap) Push(x any)        { *h = append(*h, x.(readyItem)) }
func (h *itemHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = readyItem{}
	*h = old[:len(old)-1]
	return it
}

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// newID returns prefix + 128 random bits in lowercase base32, as the
// relay's other ids.
func newID(prefix string) string {
	var b [16]byte
	_, _ = crand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return prefix + idEncoding.EncodeToString(b[:])
}
