package dispatch

import (
	"context"
	"time"
)

// A delivery's first outcome goes to the event's sync sender: on this node
// (a Waiter), or on the node where the sender waits, which said so when it
// published the event (Event.Waiting) — PostAnswer there, TakeAnswer on
// that node when told. What talks to the cluster for answers runs on the
// hub's job goroutines, never on the goroutine that hands the cluster's
// notifications over (a round trip there would hold up the others).

const (
	answerRunners = 4    // job goroutines
	answerJobs    = 1024 // jobs queued; beyond, the caller runs its job itself
	// A first outcome that no known sender waits for is kept this long
	// (bounded by count and bytes; the oldest go first): the notice that
	// a sender on another node waits for it may come after the delivery,
	// when this node found the event in a store scan before the notice.
	recentAnswers     = 4096
	recentAnswerBytes = 4 << 20
)

// answer hands an outcome to the event's sync sender, here or on the node
// where it waits. Only the first outcome is taken.
func (h *Hub) answer(eventID string, a Answer) {
	h.mu.Lock()
	w := h.waiters[eventID]
	delete(h.waiters, eventID)
	rw, remote := h.remote[eventID]
	delete(h.remote, eventID)
	if w == nil && !remote {
		if _, one := h.node.(*single); !one {
			h.recent.keep(eventID, a, time.Now().Add(h.cfg.ResponseTimeout))
		}
	}
	h.mu.Unlock()
	if w != nil {
		select {
		case w.ch <- a:
		default:
		}
		return
	}
	if remote && time.Since(rw.since) < h.cfg.ResponseTimeout {
		h.postAnswer(h.ctx, rw.origin, eventID, a)
	}
}

// postAnswer hands a to the sender waiting on node origin.
func (h *Hub) postAnswer(ctx context.Context, origin, eventID string, a Answer) {
	ctx, cancel := context.WithTimeout(ctx, h.cfg.ResponseTimeout)
	defer cancel()
	if err := h.node.PostAnswer(ctx, origin, eventID, a); err != nil {
		h.log.Warn("post an answer to the sender's node", "node", origin, "event", eventID, "err", err)
	}
}

// RemoteAnswer takes an answer another node posted for a waiter here
// (Handler), on a job goroutine.
func (h *Hub) RemoteAnswer(eventID string) {
	h.later(func(ctx context.Context) { h.takeAnswer(ctx, eventID) })
}

// takeAnswer reads the answer posted for eventID and hands it to its
// waiter, if both are there.
func (h *Hub) takeAnswer(ctx context.Context, eventID string) {
	ctx, cancel := context.WithTimeout(ctx, h.cfg.ResponseTimeout)
	defer cancel()
	a, ok, err := h.node.TakeAnswer(ctx, eventID)
	if err != nil {
		h.log.Warn("take an answer posted by another node", "event", eventID, "err", err)
		return
	}
	if !ok {
		return
	}
	h.mu.Lock()
	w := h.waiters[eventID]
	delete(h.waiters, eventID)
	h.mu.Unlock()
	if w != nil {
		select {
		case w.ch <- a:
		default:
		}
	}
}

// takeMissedAnswers looks for an answer for every sender waiting here: the
// notices of those posted while the cluster's signal was lost are gone.
func (h *Hub) takeMissedAnswers() {
	if _, one := h.node.(*single); one {
		return
	}
	h.mu.Lock()
	ids := make([]string, 0, len(h.waiters))
	for id := range h.waiters {
		ids = append(ids, id)
	}
	h.mu.Unlock()
	if len(ids) == 0 {
		return
	}
	h.bg.Add(1)
	go func() {
		defer h.bg.Done()
		for _, id := range ids {
			select {
			case h.jobs <- func(ctx context.Context) { h.takeAnswer(ctx, id) }:
			case <-h.ctx.Done():
				return
			}
		}
	}()
}

// later runs job on a job goroutine; when they are all busy and the queue
// is full, on the caller's.
func (h *Hub) later(job func(context.Context)) {
	select {
	case h.jobs <- job:
	default:
		job(h.ctx)
	}
}

// runJobs runs queued jobs until the hub closes.
func (h *Hub) runJobs() {
	defer h.bg.Done()
	for {
		select {
		case <-h.ctx.Done():
			return
		case job := <-h.jobs:
			job(h.ctx)
		}
	}
}

// answerCache keeps recent first outcomes by event id, oldest first out.
// Guarded by Hub.mu.
type answerCache struct {
	byID  map[string]recentAnswer
	order []string // ids, oldest first; an id taken since is skipped
	bytes int
}

type recentAnswer struct {
	a     Answer
	until time.Time
}

func answerSize(a Answer) int {
	n := len(a.Body) + len(a.ErrMsg) + 64
	for _, hd := range a.Headers {
		n += len(hd.Name) + len(hd.Value)
	}
	return n
}

// keep remembers a until the time given, dropping the oldest beyond the
// bounds and those past their time.
func (c *answerCache) keep(eventID string, a Answer, until time.Time) {
	size := answerSize(a)
	if size > recentAnswerBytes/4 {
		return // a sender waiting for this one across nodes after a race gets 202
	}
	if old, ok := c.byID[eventID]; ok {
		c.bytes -= answerSize(old.a)
	}
	c.byID[eventID] = recentAnswer{a: a, until: until}
	c.order = append(c.order, eventID)
	c.bytes += size
	now := time.Now()
	for len(c.order) > 0 {
		id := c.order[0]
		r, ok := c.byID[id]
		if ok && c.bytes <= recentAnswerBytes && len(c.byID) <= recentAnswers && r.until.After(now) {
			break
		}
		c.order[0] = ""
		c.order = c.order[1:]
		if ok {
			delete(c.byID, id)
			c.bytes -= answerSize(r.a)
		}
	}
	if len(c.order) > 2*recentAnswers {
		// Mostly ids taken since: keep those still here.
		kept := make([]string, 0, len(c.byID))
		for _, id := range c.order {
			if _, ok := c.byID[id]; ok {
				kept = append(kept, id)
			}
		}
		c.order = kept
	}
}

// take returns and forgets the outcome kept for eventID, if it is still
// in time.
func (c *answerCache) take(eventID string) (Answer, bool) {
	r, ok := c.byID[eventID]
	if !ok {
		return Answer{}, false
	}
	delete(c.byID, eventID)
	c.bytes -= answerSize(r.a)
	return r.a, time.Now().Before(r.until)
}
