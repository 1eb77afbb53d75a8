package server

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"

	"github.com/hookrelay/hookrelay/server/store"
)

// smeeFeed confirms a channel's new events in cursor order, once for all of
// the channel's live smee streams, encodes each once and hands the message
// to every stream's queue.
//
// Publish order is not cursor order (concurrent senders), and an event may
// be committed but not yet published, so what the hub hands over cannot be
// sent as it comes: a stream would skip an event with a lower cursor than
// one it sent, and Last-Event-ID would not be a safe place to resume. The
// store is the queue: at each wake the feed lists the channel's events
// after its position without bodies, and passes them on oldest first,
// bodies taken from what the hub handed over (offer) when it holds a whole
// range, else read from the store. Seqs become visible in commit order, so
// an event not yet listed has a higher seq than every event passed on.
// One listing per channel, however many streams read it.
//
// A stream joins at its own position P once it has caught up from the
// store alone; the feed is at F. Everything after F reaches the stream's
// queue; the stream reads (P, F] from the store itself, or skips what it
// already sent when P > F. The first stream of a channel starts the feed
// at its P; the last one to leave stops it.
type smeeFeed struct {
	hub       *hub
	channelID string
	cur       cursors       // the channel's, for the messages' ids
	limit     int64         // bytes handed over and held, as SSEBuffer
	wake      chan struct{} // capacity 1
	stop      chan struct{} // closed when the last stream leaves

	mu          sync.Mutex // guards the fields below
	last        int64      // every event with seq <= last was passed on (or is older than the feed)
	subs        map[*smeeQueue]struct{}
	handed      []*store.Event // offered, not yet passed on; the store has them all
	handedBytes int64
}

// offer hands the feed a newly committed accepted event. h.mu is held; it
// never blocks.
func (f *smeeFeed) offer(ev *store.Event) {
	f.mu.Lock()
	size := int64(len(ev.Body))
	if len(f.handed) < smeeQueueEvents && (len(f.handed) == 0 || f.handedBytes+size <= f.limit) {
		f.handed = append(f.handed, ev)
		f.handedBytes += size
	}
	f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// joinFeed subscribes q to the channel's feed, starting one at pos when
// there is none, and returns the feed's position. ok is false when the
// relay is stopping.
func (h *hub) joinFeed(channelID string, q *smeeQueue, pos int64) (last int64, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	select {
	case <-h.stopping:
		return 0, false
	default:
	}
	if h.closed {
		return 0, false
	}
	f := h.feeds[channelID]
	if f == nil {
		f = &smeeFeed{
			hub: h, channelID: channelID, cur: h.relay.cursorsFor(channelID), limit: h.relay.cfg.SSEBuffer, last: pos,
			wake: make(chan struct{}, 1), stop: make(chan struct{}), subs: make(map[*smeeQueue]struct{}),
		}
		h.feeds[channelID] = f
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			f.run()
		}()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.subs[q] = struct{}{}
	return f.last, true
}

// leaveFeed unsubscribes q; the feed stops with its last stream.
func (h *hub) leaveFeed(channelID string, q *smeeQueue) {
	h.mu.Lock()
	defer h.mu.Unlock()
	f := h.feeds[channelID]
	if f == nil {
		return
	}
	f.mu.Lock()
	delete(f.subs, q)
	empty := len(f.subs) == 0
	f.mu.Unlock()
	if empty {
		delete(h.feeds, channelID)
		close(f.stop)
	}
}

// run passes events on until the last stream leaves or the relay stops.
func (f *smeeFeed) run() {
	ctx := f.hub.relay.ctx
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	pending := true // what was committed between the first stream's catch-up and now
	for {
		if pending {
			pending = false
			caughtUp, err := f.passOn(ctx)
			switch {
			case err != nil && ctx.Err() == nil:
				f.hub.relay.log.Error("smee feed: read the store", "channel", f.channelID, "err", err)
				retry.Reset(time.Second)
			case err == nil && !caughtUp:
				pending = true
				continue
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-f.stop:
			return
		case <-f.hub.stopping:
			return
		case <-f.wake:
			pending = true
		case <-retry.C:
			pending = true
		}
	}
}

// passOn lists the events after the feed's position and hands them to
// every stream, oldest first. caughtUp says they fit in one listing.
func (f *smeeFeed) passOn(ctx context.Context) (caughtUp bool, err error) {
	f.mu.Lock()
	after := f.last
	f.mu.Unlock()
	st := f.hub.relay.store
	ranges, caughtUp, err := planRanges(ctx, st, f.channelID, after, 0)
	if err != nil {
		return false, err
	}
	// Taken after the listing, so that what was published before it is
	// here; what is newer than the listing waits for the next pass.
	f.mu.Lock()
	handed := f.handed
	f.handed, f.handedBytes = nil, 0
	f.mu.Unlock()
	if len(ranges) > 0 {
		defer f.keep(handed, ranges[len(ranges)-1].hi)
	}
	for _, rg := range ranges {
		var evs []*store.Event
		if rg.accepted > 0 {
			if evs, err = loadRange(ctx, st, f.channelID, rg, handed); err != nil {
				return false, err
			}
		}
		f.mu.Lock()
		for _, ev := range evs {
			if ev.Seq > f.last && ev.State == store.EventAccepted && len(f.subs) > 0 {
				frame := smeeFrame{seq: ev.Seq, data: appendSmeeMessage(nil, ev, f.cur)}
				for q := range f.subs {
					q.push(frame)
				}
			}
		}
		f.last = max(f.last, rg.hi) // past rejected events too
		f.mu.Unlock()
	}
	return caughtUp, nil
}

// keep hands back the events newer than listed, for the next pass.
func (f *smeeFeed) keep(handed []*store.Event, listed int64) {
	var newer []*store.Event
	var size int64
	for _, ev := range handed {
		if ev.Seq > listed {
			newer = append(newer, ev)
			size += int64(len(ev.Body))
		}
	}
	if len(newer) == 0 {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.handed = append(newer, f.handed...)
	f.handedBytes += size
}

// seqRange is a run of a channel's events, read from the store at once.
type seqRange struct {
	lo, hi   int64 // its first and last cursor
	rows     int   // events in it, rejected ones too
	accepted int
	bytes    int64
}

// planRanges lists the channel's events with after < seq < before (0: no
// bound) without bodies, newest first page by page, and cuts them into
// ranges of at most smeeRangeEvents events and smeeRangeBytes bytes (or
// one event), returned oldest first. caughtUp says they fit in one page.
func planRanges(ctx context.Context, st store.Store, channelID string, after, before int64) (ranges []seqRange, caughtUp bool, err error) {
	caughtUp = true
	for {
		evs, err := st.ListEvents(ctx, store.EventQuery{ChannelID: channelID, AfterSeq: after, BeforeSeq: before, Limit: smeeListPage})
		if err != nil {
			return nil, false, err
		}
		for i := range evs { // newest first
			ev, n := &evs[i], len(ranges)
			size := int64(ev.Size)
			if n == 0 || ranges[n-1].rows >= smeeRangeEvents || ranges[n-1].bytes+size > smeeRangeBytes {
				ranges = append(ranges, seqRange{hi: ev.Seq})
				n++
			}
			rg := &ranges[n-1]
			rg.lo, rg.rows, rg.bytes = ev.Seq, rg.rows+1, rg.bytes+size
			if ev.State == store.EventAccepted {
				rg.accepted++
			}
		}
		if len(evs) < smeeListPage {
			break
		}
		caughtUp = false
		before = evs[len(evs)-1].Seq
	}
	slices.Reverse(ranges)
	return ranges, caughtUp, nil
}

// loadRange returns a range's events oldest first, from handed when it
// holds every accepted one, else from the store.
func loadRange(ctx context.Context, st store.Store, channelID string, rg seqRange, handed []*store.Event) ([]*store.Event, error) {
	var inRange []*store.Event
	for _, ev := range handed {
		if ev.Seq >= rg.lo && ev.Seq <= rg.hi {
			inRange = append(inRange, ev)
		}
	}
	if len(inRange) == rg.accepted {
		slices.SortFunc(inRange, func(a, b *store.Event) int { return cmp.Compare(a.Seq, b.Seq) })
		return inRange, nil
	}
	evs, err := st.ListEvents(ctx, store.EventQuery{
		ChannelID: channelID, AfterSeq: rg.lo - 1, BeforeSeq: rg.hi + 1, Limit: rg.rows, WithBody: true,
	})
	if err != nil {
		return nil, err
	}
	out := make([]*store.Event, len(evs))
	for i := range evs {
		out[len(evs)-1-i] = &evs[i]
	}
	return out, nil
}
