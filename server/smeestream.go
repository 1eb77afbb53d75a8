package server

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/hookrelay/hookrelay/server/store"
)

// The smee-compatible stream of a channel: GET /h/:channel with
// Accept: text/event-stream (smee.go authorizes it).
//
// It opens with "retry: 1000" and a ready message whose id is the stream's
// position: the Last-Event-ID the client sent, else the cursor of the
// channel's newest event, so a client cut before its first webhook still
// resumes where it connected. Then one message per accepted webhook, in
// cursor order, with the cursor as id and the data smeedata.go describes;
// a comment (": ping") every SSEKeepAlive; and, when the channel is
// deleted, the credential revoked or the relay stops, a comment saying why
// before the stream closes. Named events other than ready are never sent:
// gosmee would forward their data as a webhook.
//
// The store is the queue. When the hub says the channel has news, the
// stream lists the channel's events after its position without bodies
// (newest first, page by page), cuts them into ranges of bounded count and
// bytes, and sends the ranges oldest first, taking the bodies from the
// events the hub handed over in memory when it holds all of a range, else
// from one store read of the range. Seqs become visible in commit order, so
// an event not yet listed has a higher seq than every event sent: nothing
// is skipped or sent twice, across the switch from a reconnect's backlog to
// live events too, and ids only grow, so Last-Event-ID is always a safe
// place to resume.
//
// Bounds: what the hub hands over waits in a smeeQueue capped at
// SSEBuffer bytes and smeeQueueEvents events. While the stream catches up
// on a backlog an overflow only drops the queue (the store has it all);
// once it is live an overflow means the reader fell behind, and the stream
// is cut at once, even in the middle of a write blocked on the reader
// (hookrelay_sse_slow_readers_dropped_total counts it). A write that makes
// no progress for streamWriteWait cuts it too. The client reconnects with
// Last-Event-ID and resumes from the store.

const (
	smeeQueueEvents = 1024    // events handed over in memory per stream
	smeeListPage    = 500     // events per store listing (no bodies)
	smeeRangeEvents = 100     // events per store read with bodies
	smeeRangeBytes  = 4 << 20 // body bytes per store read (or one event)
	smeeRetry       = 1000    // ms: how soon EventSource reconnects
)

var errSlowReader = errors.New("the reader fell behind the stream's buffer")

// smeeQueue holds the events the hub hands a stream until it takes them.
type smeeQueue struct {
	limit int64 // bytes (SSEBuffer); one event always fits

	mu     sync.Mutex
	evs    []*store.Event // handed over, not yet taken
	bytes  int64          // body bytes in evs
	live   bool           // the stream is caught up: an overflow drops the reader
	slow   bool           // it overflowed while live: the stream must be cut
	cut    func()         // unblocks the stream's write; nil once the handler returns
	reason string         // why the stream must end; "" while it goes on
}

// push hands over a newly committed event. It never blocks.
func (q *smeeQueue) push(ev *store.Event) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.slow || q.reason != "" {
		return
	}
	size := int64(len(ev.Body))
	if len(q.evs) < smeeQueueEvents && (len(q.evs) == 0 || q.bytes+size <= q.limit) {
		q.evs = append(q.evs, ev)
		q.bytes += size
		return
	}
	q.evs, q.bytes = nil, 0 // the store has them
	if q.live {
		q.slow = true
		q.interrupt()
	}
}

// end asks the stream to end for reason, interrupting a blocked write.
func (q *smeeQueue) end(reason string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.reason == "" {
		q.reason = reason
	}
	q.evs, q.bytes = nil, 0
	q.interrupt()
}

// interrupt makes a write stuck on the reader return. q.mu is held.
func (q *smeeQueue) interrupt() {
	if q.cut != nil {
		q.cut()
	}
}

// take empties the queue and says whether the stream must stop.
func (q *smeeQueue) take() (evs []*store.Event, slow bool, reason string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	evs = q.evs
	q.evs, q.bytes = nil, 0
	return evs, q.slow, q.reason
}

func (q *smeeQueue) setLive(live bool) {
	q.mu.Lock()
	q.live = live
	q.mu.Unlock()
}

func (q *smeeQueue) setCut(cut func()) {
	q.mu.Lock()
	q.cut = cut
	q.mu.Unlock()
}

// stopped reports whether the stream must stop sending webhooks.
func (q *smeeQueue) stopped() (slow bool, reason string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.slow, q.reason
}

// smeeStream is one open stream, owned by its handler's goroutine.
type smeeStream struct {
	relay     *Relay
	req       *http.Request
	w         http.ResponseWriter // the connection's own writer, whose Flush reports errors
	rc        *http.ResponseController
	channelID string
	cred      string // the read key or token, checked again at each keep-alive
	q         *smeeQueue
	wake      <-chan struct{}
	last      int64 // the cursor of the last webhook sent (or the ready position)
	buf       []byte
}

// smeeStream handles an event-stream GET of a channel.
func (r *Relay) smeeStream(c *gin.Context, channelID string) {
	cred := streamCredential(c.Request)
	p, ch, ok := r.authorizeStream(c, cred, channelID)
	if !ok {
		return
	}
	after, resume, err := lastEventID(c.Request)
	if err != nil {
		abortJSON(c, http.StatusBadRequest, "bad_last_event_id", err.Error()+"; reconnect without it to start from now")
		return
	}
	release, full := r.sseCaps.acquire(ch.ID, c.ClientIP(), r.cfg.MaxSSEPerChannel, r.cfg.MaxSSEPerAddress)
	switch full {
	case "channel":
		r.metrics.sseRefused.WithLabelValues(full).Inc()
		abortJSON(c, http.StatusTooManyRequests, "too_many_streams", fmt.Sprintf(
			"channel %s has %d event streams open, the relay's max_sse_per_channel; close one first", ch.ID, r.cfg.MaxSSEPerChannel))
		return
	case "address":
		r.metrics.sseRefused.WithLabelValues(full).Inc()
		abortJSON(c, http.StatusTooManyRequests, "too_many_streams", fmt.Sprintf(
			"%s has %d event streams open, the relay's max_sse_per_address; close one first", c.ClientIP(), r.cfg.MaxSSEPerAddress))
		return
	}
	defer release()

	q := &smeeQueue{limit: r.cfg.SSEBuffer}
	w := r.hub.addWatcher(ch.ID, &watcher{ch: make(chan struct{}, 1), smee: q, owner: p.TokenID})
	defer r.hub.unwatch(ch.ID, w)
	// The position is read after the watcher is in place: whatever commits
	// later is either listed from the store or handed over, or both.
	ctx := c.Request.Context()
	if after, err = r.streamStart(ctx, ch.ID, after, resume); err != nil {
		r.storeFailed(c, err)
		return
	}

	hdr := c.Writer.Header()
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("X-Accel-Buffering", "no") // tell nginx not to buffer the stream
	c.Status(http.StatusOK)
	c.Writer.WriteHeaderNow()
	var raw http.ResponseWriter = c.Writer
	if u, ok := raw.(interface{ Unwrap() http.ResponseWriter }); ok {
		raw = u.Unwrap()
	}
	s := &smeeStream{
		relay: r, req: c.Request, w: raw, rc: http.NewResponseController(raw), channelID: ch.ID,
		cred: cred, q: q, wake: w.ch, last: after,
	}
	q.setCut(func() { _ = s.rc.SetWriteDeadline(time.Now()) })
	defer q.setCut(nil)
	r.metrics.sseStreams.Inc()
	defer r.metrics.sseStreams.Dec()

	err = s.run(ctx)
	switch {
	case errors.Is(err, errSlowReader) || errors.Is(err, os.ErrDeadlineExceeded):
		r.metrics.sseSlowReaders.Inc()
		r.log.Info("event stream dropped: its reader fell behind", "channel", ch.ID, "client", c.ClientIP(), "err", err)
	case err != nil && ctx.Err() == nil:
		r.log.Debug("event stream ended", "channel", ch.ID, "err", err)
	}
}

// streamStart is where a stream starts: after the client's Last-Event-ID
// (never past the highest cursor, so a client of a relay whose store was
// reset still gets the new webhooks), else after the channel's newest event.
func (r *Relay) streamStart(ctx context.Context, channelID string, after int64, resume bool) (int64, error) {
	if resume {
		top, err := r.store.MaxSeq(ctx)
		return min(after, top), err
	}
	evs, err := r.store.ListEvents(ctx, store.EventQuery{ChannelID: channelID, Limit: 1})
	if err != nil || len(evs) == 0 {
		return 0, err
	}
	return evs[0].Seq, nil
}

// run sends the ready message, then webhooks as they come, until the client
// goes, the stream is ended or cut, or the relay stops.
func (s *smeeStream) run(ctx context.Context) error {
	s.buf = fmt.Appendf(s.buf[:0], "retry: %d\nid: %d\nevent: ready\ndata: {}\n\n", smeeRetry, s.last)
	if err := s.send(s.buf); err != nil {
		return err
	}
	keepAlive := time.NewTicker(s.relay.cfg.SSEKeepAlive)
	defer keepAlive.Stop()
	pending := true // look in the store first: a reconnect's backlog
	for {
		if pending {
			handed, slow, reason := s.q.take()
			switch {
			case reason != "":
				s.goodbye(reason)
				return nil
			case slow:
				return errSlowReader
			}
			caughtUp, err := s.sendNew(ctx, handed)
			if err != nil {
				return err
			}
			s.q.setLive(caughtUp)
			if pending = !caughtUp; pending && ctx.Err() == nil {
				continue
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.relay.ctx.Done():
			s.goodbye("the relay is stopping")
			return nil
		case <-s.wake:
			pending = true
		case <-keepAlive.C:
			if reason := s.stillAllowed(ctx); reason != "" {
				s.goodbye(reason)
				return nil
			}
			if err := s.send([]byte(": ping\n\n")); err != nil {
				return err
			}
		}
	}
}

// seqRange is a run of the channel's events, read from the store at once.
type seqRange struct {
	lo, hi   int64 // its first and last cursor
	rows     int   // events in it, rejected ones too
	accepted int
	bytes    int64
}

// sendNew sends the channel's accepted events after s.last, oldest first.
// handed are events the hub handed over (bodies included). caughtUp says
// the events after s.last fit in one listing: what comes next will be
// handed over.
func (s *smeeStream) sendNew(ctx context.Context, handed []*store.Event) (caughtUp bool, err error) {
	ranges, caughtUp, err := s.plan(ctx)
	if err != nil {
		return false, err
	}
	for _, rg := range ranges {
		if rg.accepted == 0 {
			continue
		}
		evs, err := s.load(ctx, rg, handed)
		if err != nil {
			return false, err
		}
		for _, ev := range evs {
			if ev.Seq <= s.last || ev.State != store.EventAccepted {
				continue
			}
			if slow, reason := s.q.stopped(); slow || reason != "" {
				return false, nil // run sees why at its next take
			}
			s.buf = appendSmeeMessage(s.buf[:0], ev)
			if err := s.write(s.buf); err != nil {
				return false, err
			}
			s.last = ev.Seq
		}
		if err := s.flush(); err != nil {
			return false, err
		}
	}
	return caughtUp, nil
}

// plan lists the events after s.last without bodies and cuts them into
// ranges, oldest first.
func (s *smeeStream) plan(ctx context.Context) (ranges []seqRange, caughtUp bool, err error) {
	caughtUp = true
	before := int64(0) // no bound
	for {
		evs, err := s.relay.store.ListEvents(ctx, store.EventQuery{
			ChannelID: s.channelID, AfterSeq: s.last, BeforeSeq: before, Limit: smeeListPage,
		})
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

// load returns a range's events oldest first, from handed when it holds
// every accepted one, else from the store.
func (s *smeeStream) load(ctx context.Context, rg seqRange, handed []*store.Event) ([]*store.Event, error) {
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
	evs, err := s.relay.store.ListEvents(ctx, store.EventQuery{
		ChannelID: s.channelID, AfterSeq: rg.lo - 1, BeforeSeq: rg.hi + 1, Limit: rg.rows, WithBody: true,
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

// stillAllowed checks again that the credential may read the channel and
// that the channel exists; it returns why not, or "".
func (s *smeeStream) stillAllowed(ctx context.Context) string {
	_, _, err := s.relay.streamAccess(s.req.WithContext(ctx), s.cred, s.channelID)
	if errors.Is(err, errBadToken) { // a read key fails with its channel: say which went
		if _, gerr := s.relay.store.GetChannel(ctx, s.channelID); errors.Is(gerr, store.ErrNotFound) {
			err = gerr
		}
	}
	switch {
	case errors.Is(err, errBadToken):
		return "the read key or token was revoked"
	case errors.Is(err, store.ErrNotFound):
		return "the channel was deleted or has expired"
	}
	return "" // readable, or the store is down for a moment: keep the stream
}

// goodbye tells the client why the stream ends, in a comment every client
// ignores (an event could be taken for a webhook).
func (s *smeeStream) goodbye(reason string) {
	_ = s.send([]byte(": end: " + strconv.Quote(reason) + "\n\n"))
}

// write writes b unless the reader was found too slow; a write blocked on
// the reader returns when its deadline passes or the queue overflows.
func (s *smeeStream) write(b []byte) error {
	_ = s.rc.SetWriteDeadline(time.Now().Add(streamWriteWait))
	if slow, _ := s.q.stopped(); slow {
		return errSlowReader
	}
	_, err := s.w.Write(b)
	return err
}

func (s *smeeStream) flush() error {
	_ = s.rc.SetWriteDeadline(time.Now().Add(streamWriteWait))
	if slow, _ := s.q.stopped(); slow {
		return errSlowReader
	}
	return s.rc.Flush()
}

func (s *smeeStream) send(b []byte) error {
	if err := s.write(b); err != nil {
		return err
	}
	return s.flush()
}
