package dispatch

import (
	"container/heap"
	"sync"
	"time"

	"github.com/hookrelay/hookrelay/server/store"
)

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
			it.recheck = true
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

// leaseSet is the claims a worker keeps: events being attempted, and
// events delivered whose claims are not finished yet (their records are
// being written, or Finish failed). A claim left to lapse before it is
// finished lets another node take the event and deliver it again. run's
// goroutine publishes the set at each turn of its loop and before each
// Claim; renewLoop renews it on a goroutine of its own, so that a loop held
// up by a slow store or cluster call (a database that lost its
// connections) does not let the leases lapse meanwhile. renewLoop runs only
// while the set is not empty: an idle group holds no goroutine for it.
type leaseSet struct {
	mu       sync.Mutex
	seqs     []int64 // replaced, never changed in place
	renewing bool    // renewLoop runs
}

// publishLeases hands the claims to keep to renewLoop.
func (w *worker) publishLeases() {
	if _, one := w.hub.node.(*single); one {
		return // nothing to renew: renewLoop does not run
	}
	n := len(w.inflight) + len(w.toFinish) + len(w.inWrite)
	w.leases.mu.Lock()
	defer w.leases.mu.Unlock()
	if n == 0 && len(w.leases.seqs) == 0 {
		return
	}
	seqs := make([]int64, 0, n)
	for seq := range w.inflight {
		seqs = append(seqs, seq)
	}
	w.leases.seqs = append(append(seqs, w.toFinish...), w.inWrite...)
	if len(w.leases.seqs) > 0 && !w.leases.renewing {
		w.leases.renewing = true
		w.wg.Add(1)
		go w.renewLoop()
	}
}

// renewLoop renews the published claims every third of the lease until
// none is left or the worker stops.
func (w *worker) renewLoop() {
	defer w.wg.Done()
	lease := w.hub.cfg.Lease
	tick := time.NewTicker(lease / 3)
	defer tick.Stop()
	for {
		select {
		case <-w.ctx.Done():
			return
		case <-tick.C:
		}
		w.leases.mu.Lock()
		seqs := w.leases.seqs
		if len(seqs) == 0 {
			w.leases.renewing = false // publishLeases starts it again
			w.leases.mu.Unlock()
			return
		}
		w.leases.mu.Unlock()
		err := w.hub.node.Renew(w.ctx, w.group.ID, seqs, lease)
		if err != nil && w.ctx.Err() == nil {
			w.hub.log.Warn("renew claims", "group", w.group.Name, "err", err)
		}
	}
}

// doneInStore reports whether the store holds the event of seq as done for
// the group. It is asked before sending an event whose claim this node won
// after another node held it: that node may have delivered and recorded it
// and then lost the database or died before it could finish the claim.
func (w *worker) doneInStore(seq int64) (bool, error) {
	page, err := w.hub.store.Pending(w.ctx, store.PendingQuery{GroupID: w.group.ID, AfterSeq: seq - 1, Limit: 1, MaxBody: 1})
	if err != nil {
		return false, err
	}
	return len(page.Events) == 0 || page.Events[0].Seq != seq, nil
}
