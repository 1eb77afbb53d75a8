package server

import (
	"container/heap"
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hookrelay/hookrelay/protocol"
	"github.com/hookrelay/hookrelay/server/store"
)

// groupWorker dispatches one group's events to the group's connected
// agents: oldest first, at most one agent per event, retrying failed
// attempts with backoff. It runs while the group has an agent connected.
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
// Finished attempts come back to the worker, which writes them together
// with the group's new watermark and its "last seen" time in one store call
// (store.RecordProgress), one at a time: what finishes while a write is in
// flight goes into the next one.
type groupWorker struct {
	relay *Relay
	group store.Group

	mu     sync.Mutex // guards agents, next
	agents []*agentSession
	next   int // round-robin position

	wake     chan struct{}       // capacity 1: something changed
	incoming chan *store.Event   // new events handed over by publish
	overflow atomic.Bool         // publish found incoming full: rescan the store
	results  chan deliveryResult // finished attempts
	replays  chan *store.Event   // events to deliver again (replay); pointers keep an idle worker small
	written  chan progressWrite  // capacity 1: the progress write in flight has ended
	done     chan struct{}       // closed when run has returned
	prev     *groupWorker        // the group's previous worker, still finishing; run waits for it
	ctx      context.Context     // ended by stop
	cancel   context.CancelFunc
	wg       sync.WaitGroup // delivery goroutines and the progress write

	// Owned by run's goroutine.
	live        bool             // caught up: new events come through incoming
	scanFrom    int64            // backlog paging position
	horizon     int64            // every event with Seq <= horizon was read from the store
	lastScan    time.Time        // when backlog mode last caught up
	ready       []readyItem      // fetched or due again, not yet handed to an agent
	retries     retryHeap        // failed attempts waiting for their backoff
	outstanding map[int64]int    // seq → attempts made, for events not done
	finishing   map[int64]bool   // seqs of events done whose record is not written yet
	unwritten   []store.Delivery // finished attempts not yet written
	writing     bool             // a progress write is in flight
	persisted   int64            // DoneThrough as last written
	persistedAt time.Time
	touchedAt   time.Time // when LastSeenAt was last written
}

type readyItem struct {
	ev      *store.Event // nil: load by id
	eventID string
	seq     int64
	attempt int
	replay  bool
}

type deliveryResult struct {
	item     readyItem
	done     bool            // delivered, or given up
	gone     bool            // the agent went away: retry soon
	stopping bool            // the agent refused to start it: not an attempt, hand it to another
	record   *store.Delivery // the attempt to write; nil when none was made
}

// progressWrite is a store.RecordProgress call that has ended.
type progressWrite struct {
	p   store.Progress
	err error
}

func newGroupWorker(r *Relay, g store.Group) *groupWorker {
	ctx, cancel := context.WithCancel(r.ctx)
	w := &groupWorker{
		relay:       r,
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
		done:        make(chan struct{}),
	}
	return w
}

const (
	incomingQueue   = 256     // events handed over in memory per group; more fall back to a store scan
	readyTarget     = 64      // events read ahead of the agents' free slots
	inlineBodyLimit = 1 << 20 // larger bodies are reloaded from the store at dispatch
	rescanInterval  = 30 * time.Second
	maxUnwritten    = 4096 // finished attempts kept for writing while the store fails; older ones are dropped
)

func (w *groupWorker) notify() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// offer hands a newly committed event to the worker.
func (w *groupWorker) offer(ev *store.Event) {
	select {
	case w.incoming <- ev:
	default:
		w.overflow.Store(true)
	}
	w.notify()
}

func (w *groupWorker) addAgent(a *agentSession) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, x := range w.agents {
		if x == a {
			return false
		}
	}
	w.agents = append(w.agents, a)
	w.notify()
	return true
}

func (w *groupWorker) removeAgent(a *agentSession) int {
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

func (w *groupWorker) agentCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.agents)
}

func (w *groupWorker) agentList() []*agentSession {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]*agentSession(nil), w.agents...)
}

// pick returns an agent with a free slot (taken), round robin, or nil.
func (w *groupWorker) pick() *agentSession {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i := range w.agents {
		a := w.agents[(w.next+i)%len(w.agents)]
		if a.tryAcquire() {
			w.next = (w.next + i + 1) % len(w.agents)
			return a
		}
	}
	return nil
}

// freeSlots counts free delivery slots over the group's agents.
func (w *groupWorker) freeSlots() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, a := range w.agents {
		n += cap(a.slots) - len(a.slots)
	}
	return n
}

// stop ends the worker; run returns after its deliveries end.
func (w *groupWorker) stop() { w.cancel() }

// replay queues an event to be delivered to this group again.
func (w *groupWorker) replay(ev store.Event) bool {
	select {
	case w.replays <- &ev:
		w.notify()
		return true
	default:
		return false
	}
}

func (w *groupWorker) run() {
	defer func() {
		w.finish()
		close(w.done)
		w.relay.hub.retired(w)
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
		w.promoteDue(time.Now())
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
		if storeErr || w.persisted < w.watermark() {
			wait = min(wait, time.Second)
		}
		if w.live {
			wait = min(wait, time.Until(w.lastScan.Add(rescanInterval)))
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
func (w *groupWorker) handleReady() {
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
// handling what they bring back, and writes the last progress.
func (w *groupWorker) finish() {
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
}

// want is how many more events the ready list should hold.
func (w *groupWorker) want() int {
	return max(readyTarget, w.freeSlots()) - len(w.ready)
}

// take adds a fetched or handed-over event to the ready list unless the
// worker already holds it.
func (w *groupWorker) take(ev *store.Event) {
	// An event done but not yet written as done is still pending in the
	// store: taking it again would deliver it twice.
	if _, held := w.outstanding[ev.Seq]; held || w.finishing[ev.Seq] {
		return
	}
	w.outstanding[ev.Seq] = ev.GroupAttempts
	item := readyItem{ev: ev, eventID: ev.ID, seq: ev.Seq, attempt: ev.GroupAttempts + 1}
	if ev.Body == nil || len(ev.Body) > inlineBodyLimit {
		item.ev = nil // reload at dispatch: keeps large bodies out of the queue
	}
	w.ready = append(w.ready, item)
}

// takeIncoming moves handed-over events to the ready list (live mode).
func (w *groupWorker) takeIncoming() {
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
func (w *groupWorker) scan() bool {
	limit := w.want()
	if limit <= 0 {
		return false
	}
	page, err := w.relay.store.Pending(w.ctx, store.PendingQuery{
		GroupID: w.group.ID, AfterSeq: w.scanFrom, Limit: limit, MaxBody: inlineBodyLimit,
	})
	if err != nil {
		if w.ctx.Err() == nil {
			w.relay.log.Error("read pending events", "group", w.group.Name, "err", err)
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

func (w *groupWorker) dispatchReady() {
	for len(w.ready) > 0 {
		a := w.pick()
		if a == nil {
			return
		}
		item := w.ready[0]
		w.ready[0] = readyItem{}
		w.ready = w.ready[1:]
		if !item.replay {
			w.outstanding[item.seq] = item.attempt
		}
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			// Never dropped: finish takes results until every attempt ended.
			w.results <- w.attempt(a, item)
			w.notify()
		}()
	}
}

// handle takes a finished attempt: done, or back in line after a backoff.
func (w *groupWorker) handle(res deliveryResult) {
	if res.record != nil {
		w.unwritten = append(w.unwritten, *res.record)
		w.dropUnwritten()
	}
	item := res.item
	if res.stopping {
		w.ready = append(w.ready, item)
		return
	}
	if res.done {
		if !item.replay {
			delete(w.outstanding, item.seq)
			if res.record != nil {
				w.finishing[item.seq] = true
			}
		}
		return
	}
	delay := backoff(item.attempt, w.relay.cfg.RetryMaxBackoff)
	if res.gone {
		delay = 100 * time.Millisecond
	}
	item.ev = nil // reload when due: keeps large bodies out of memory while waiting
	item.attempt++
	heap.Push(&w.retries, retryItem{due: time.Now().Add(delay), item: item})
}

// promoteDue moves retries whose time has come to the ready list.
func (w *groupWorker) promoteDue(now time.Time) {
	for len(w.retries) > 0 && !w.retries[0].due.After(now) {
		it := heap.Pop(&w.retries).(retryItem)
		w.ready = append(w.ready, it.item)
	}
}

// watermark is the highest seq at or below which every event is done.
func (w *groupWorker) watermark() int64 {
	low := w.horizon
	if !w.live {
		low = w.scanFrom
	}
	for seq := range w.outstanding {
		low = min(low, seq-1)
	}
	return low
}

// persist writes the finished attempts, the watermark and the "last seen"
// time in one store call: at once when attempts wait, the watermark alone at
// most once a second, the time once a minute; with final, everything now.
// Only one write is in flight; it runs in a goroutine so that dispatching
// goes on meanwhile, except the final one, which persist waits for.
func (w *groupWorker) persist(final bool) {
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
	if len(p.Deliveries) == 0 && p.DoneThrough == 0 && p.SeenAt.IsZero() {
		return
	}
	w.unwritten = nil
	write := func() progressWrite {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return progressWrite{p: p, err: w.relay.store.RecordProgress(ctx, p)}
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
func (w *groupWorker) wrote(pw progressWrite) {
	w.writing = false
	p := pw.p
	if pw.err != nil {
		w.relay.log.Warn("save group progress", "group", w.group.Name, "err", pw.err)
		w.unwritten = append(p.Deliveries, w.unwritten...)
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
	for _, d := range p.Deliveries {
		w.relay.hub.publishDelivery(d) // the inspector's live streams
	}
}

// dropUnwritten drops the oldest unwritten records beyond maxUnwritten
// (the store has failed for a long while); their events may be delivered
// again.
func (w *groupWorker) dropUnwritten() {
	over := len(w.unwritten) - maxUnwritten
	if over <= 0 {
		return
	}
	w.relay.log.Error("drop delivery records the store could not take", "group", w.group.Name, "count", over)
	w.forgetFinished(w.unwritten[:over])
	w.unwritten = w.unwritten[over:]
}

// forgetFinished forgets the events of records that are written (or dropped).
func (w *groupWorker) forgetFinished(ds []store.Delivery) {
	for _, d := range ds {
		if d.Done {
			delete(w.finishing, d.EventSeq)
		}
	}
}

// attempt delivers item to agent a once and returns the outcome with the
// attempt to record. It frees a's slot as soon as the agent has answered.
func (w *groupWorker) attempt(a *agentSession, item readyItem) deliveryResult {
	r := w.relay
	released := false
	release := func() {
		if !released {
			released = true
			a.release()
			w.notify()
		}
	}
	defer release()
	ev := item.ev
	if ev == nil {
		loaded, err := r.store.GetEvent(w.ctx, item.eventID)
		if err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return deliveryResult{item: item, done: true} // deleted meanwhile
			}
			r.log.Warn("load event for delivery", "event", item.eventID, "err", err)
			return deliveryResult{item: item, gone: true}
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
	resp, body, err := a.deliver(w.ctx, req, ev.Body)
	release()
	if errors.Is(err, errAgentStopping) {
		return deliveryResult{item: item, stopping: true}
	}
	d := store.Delivery{
		ID: req.DeliveryID, EventID: ev.ID, EventSeq: ev.Seq, ChannelID: ev.ChannelID,
		GroupID: w.group.ID, GroupName: w.group.Name, AgentID: a.id, Attempt: item.attempt,
		StartedAt: start.UTC(), Duration: time.Since(start),
	}
	res := deliveryResult{item: item}
	switch {
	case errors.Is(err, errUndeliverable):
		d.Error = err.Error()
		d.Done = true
	case err != nil:
		d.Error = err.Error()
		res.gone = true
	case resp.Error != "":
		d.Error = resp.Error
		r.hub.answer(ev.ID, outcome{errCode: resp.ErrorCode, errMsg: resp.Error})
	default:
		d.Status = resp.Status
		d.ResponseHeaders = resp.Headers
		d.ResponseBody = body[:min(len(body), maxStoredResponse)]
		d.Duration = resp.Duration
		d.Done = true
		r.hub.answer(ev.ID, outcome{status: resp.Status, headers: resp.Headers, body: body})
	}
	if !d.Done && item.attempt >= r.cfg.MaxAttempts && !item.replay {
		d.Done = true
		d.Error += " (gave up after this attempt; replay it to try again)"
	}
	res.done = d.Done || item.replay && item.attempt >= r.cfg.MaxAttempts
	r.metrics.observeDelivery(d)
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
