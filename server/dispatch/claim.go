package dispatch

import (
	"container/heap"
	"time"
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
