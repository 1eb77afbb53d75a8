package dispatch

import (
	"container/heap"
	"context"
	"time"

	"github.com/hookrelay/hookrelay/server/store"
)

// progressWrite is a store.RecordProgress call that has ended.
type progressWrite struct {
	p      store.Progress
	finish []int64 // claims finished with it
	err    error   // the store's
	// finishErr: the claims are not finished (the records are written):
	// they are tried again, and renewed meanwhile.
	finishErr error
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
	finish := w.toFinish
	if !final && time.Now().Before(w.finishAfter) && len(p.Deliveries) == 0 {
		finish = nil // Finish failed a moment ago
	}
	if len(p.Deliveries) == 0 && p.DoneThrough == 0 && p.SeenAt.IsZero() && len(finish) == 0 {
		return
	}
	w.unwritten = nil
	if finish != nil {
		w.toFinish = nil
	}
	w.inWrite = finish
	node := w.hub.node
	write := func() progressWrite {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		pw := progressWrite{p: p, finish: finish}
		if len(p.Deliveries) > 0 || p.DoneThrough > 0 || !p.SeenAt.IsZero() {
			pw.err = w.hub.store.RecordProgress(ctx, p)
		}
		if pw.err == nil && len(finish) > 0 {
			pw.finishErr = node.Finish(ctx, w.group.ID, finish)
		}
		return pw
	}
	if final {
		w.wrote(write())
		return
	}
	w.writing = true
	if w.written == nil {
		w.written = make(chan progressWrite, 1)
	}
	written := w.written // the worker does not park while this write runs
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		written <- write() // capacity 1, one write at a time: never blocks
		w.notify()
	}()
}

// wrote takes the outcome of a progress write. Attempts that could not be
// written are kept for the next one.
func (w *worker) wrote(pw progressWrite) {
	w.writing = false
	w.inWrite = nil
	p := pw.p
	if pw.err == nil && pw.finishErr != nil {
		// The records are written: only Finish is tried again, in a
		// second; the claims are renewed meanwhile, so that no other node
		// takes these events (and one that does finds them done in the
		// store: doneInStore).
		w.hub.log.Warn("finish claims", "group", w.group.Name, "count", len(pw.finish), "err", pw.finishErr)
		w.toFinish = append(pw.finish, w.toFinish...)
		w.finishAfter = time.Now().Add(time.Second)
	}
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
