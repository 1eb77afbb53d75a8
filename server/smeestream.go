package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
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
// The store is the queue. A stream first catches up alone: it lists the
// channel's events after its position without bodies (newest first, page
// by page), cuts them into ranges of bounded count and bytes, and sends the
// ranges oldest first, each read from the store at once. Then it joins the
// channel's feed (smeefeed.go), which confirms new events in cursor order
// once for all streams and hands them over in memory. Ids only grow and
// nothing is skipped or sent twice, across the switch from backlog to live
// too, so Last-Event-ID is always a safe place to resume.
//
// Bounds: what the feed hands over (each message encoded once for all
// streams) waits in a smeeQueue capped at SSEBuffer bytes and
// smeeQueueEvents messages. An overflow while the stream joins only sends
// it back to the store; once it is live an overflow means the reader fell
// behind, and the stream is cut at once, even in the middle of a write
// blocked on the reader (hookrelay_sse_slow_readers_dropped_total counts
// it). A write that makes no progress for streamWriteWait cuts it too. The
// client reconnects with Last-Event-ID and resumes from the store.

const (
	smeeQueueEvents = 1024    // messages held per stream (and events per feed)
	smeeListPage    = 500     // events per store listing (no bodies)
	smeeRangeEvents = 100     // events per store read with bodies
	smeeRangeBytes  = 4 << 20 // body bytes per store read (or one event)
	smeeRetry       = 1000    // ms: how soon EventSource reconnects
)

var errSlowReader = errors.New("the reader fell behind the stream's buffer")

// smeeFrame is one webhook's SSE message, encoded once by the feed for all
// of the channel's streams.
type smeeFrame struct {
	seq  int64
	data []byte
}

// smeeQueue holds the messages the feed hands a stream until it takes them.
type smeeQueue struct {
	limit  int64         // bytes (SSEBuffer); one event always fits
	wake   chan struct{} // the stream's watcher channel
	mu     sync.Mutex
	frames []smeeFrame // handed over, in cursor order, not yet taken
	bytes  int64       // bytes in frames
	live   bool        // the stream is caught up: an overflow drops the reader
	missed bool        // it overflowed while joining: catch up from the store again
	slow   bool        // it overflowed while live: the stream must be cut
	cut    func()      // unblocks the stream's write; nil once the handler returns
	reason string      // why the stream must end; "" while it goes on
}

// push hands over the next confirmed webhook. It never blocks.
func (q *smeeQueue) push(f smeeFrame) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.slow || q.missed || q.reason != "" {
		return
	}
	size := int64(len(f.data))
	if len(q.frames) < smeeQueueEvents && (len(q.frames) == 0 || q.bytes+size <= q.limit) {
		q.frames = append(q.frames, f)
		q.bytes += size
		q.signal()
		return
	}
	q.frames, q.bytes = nil, 0 // the store has them
	if !q.live {
		q.missed = true
		return
	}
	q.slow = true
	q.interrupt()
	q.signal()
}

// end asks the stream to end for reason, interrupting a blocked write.
func (q *smeeQueue) end(reason string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.reason == "" {
		q.reason = reason
	}
	q.frames, q.bytes = nil, 0
	q.interrupt()
}

// interrupt makes a write stuck on the reader return. q.mu is held.
func (q *smeeQueue) interrupt() {
	if q.cut != nil {
		q.cut()
	}
}

// signal wakes the stream. q.mu is held; it never blocks.
func (q *smeeQueue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// take empties the queue and says whether the stream must stop.
func (q *smeeQueue) take() (frames []smeeFrame, slow bool, reason string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	frames = q.frames
	q.frames, q.bytes = nil, 0
	return frames, q.slow, q.reason
}

// goLive makes overflows cut the reader from now on. It reports false when
// the queue overflowed while the stream joined: it must catch up again.
func (q *smeeQueue) goLive() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.live = !q.missed
	return q.live
}

// reset empties the queue of a stream that left its feed to catch up again.
func (q *smeeQueue) reset() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.frames, q.bytes, q.missed = nil, 0, false
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
	cur       cursors // the channel's, for the messages' ids
	cred      string  // the read key or token, checked again at each keep-alive
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
	cur := r.cursorsFor(ch.ID)
	after, resume, err := lastEventID(c.Request, cur)
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

	w := newWatcher(ch.ID, p.TokenID)
	q := &smeeQueue{limit: r.cfg.SSEBuffer, wake: w.ch}
	w.smee = q
	if _, err := r.hub.addWatcher(w); err != nil {
		r.metrics.sseRefused.WithLabelValues("token").Inc()
		abortJSON(c, http.StatusTooManyRequests, "too_many_streams", err.Error())
		return
	}
	defer r.hub.unwatch(w)
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
		relay: r, req: c.Request, w: raw, rc: http.NewResponseController(raw), channelID: ch.ID, cur: cur,
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

// run sends the ready message, catches up from the store, joins the
// channel's feed and sends webhooks as they come, until the client goes,
// the stream is ended or cut, or the relay stops.
func (s *smeeStream) run(ctx context.Context) error {
	s.buf = fmt.Appendf(s.buf[:0], "retry: %d\nid: %s\nevent: ready\ndata: {}\n\n", smeeRetry, s.cur.encode(s.last))
	if err := s.send(s.buf); err != nil {
		return err
	}
	hub := s.relay.hub
	defer hub.leaveFeed(s.channelID, s.q)
	for {
		if err := s.fromStore(ctx, 0); err != nil {
			return err
		}
		feedAt, ok := hub.joinFeed(s.channelID, s.q, s.last)
		if !ok {
			s.goodbye("the relay is stopping")
			return nil
		}
		if feedAt > s.last {
			if err := s.fromStore(ctx, feedAt); err != nil {
				return err
			}
		}
		if s.q.goLive() {
			return s.live(ctx)
		}
		hub.leaveFeed(s.channelID, s.q) // it overflowed meanwhile: back to the store
		s.q.reset()
	}
}

// live sends what the feed hands over.
func (s *smeeStream) live(ctx context.Context) error {
	keepAlive := time.NewTicker(s.relay.cfg.SSEKeepAlive)
	defer keepAlive.Stop()
	for {
		frames, slow, reason := s.q.take()
		switch {
		case reason != "":
			s.goodbye(reason)
			return nil
		case slow:
			return errSlowReader
		}
		if len(frames) > 0 {
			for _, f := range frames {
				if f.seq > s.last {
					if err := s.write(f.data); err != nil {
						return err
					}
					s.last = f.seq
				}
			}
			if err := s.flush(); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.relay.ctx.Done():
			s.goodbye("the relay is stopping")
			return nil
		case <-s.wake:
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

// fromStore sends the channel's accepted events after s.last, and up to
// upTo when it is not 0, oldest first, read from the store. It returns
// early, without an error, when the stream must stop; the caller's next
// take says why.
func (s *smeeStream) fromStore(ctx context.Context, upTo int64) error {
	st := s.relay.store
	before := int64(0)
	if upTo > 0 {
		before = upTo + 1
	}
	for {
		ranges, caughtUp, err := planRanges(ctx, st, s.channelID, s.last, before)
		if err != nil {
			return err
		}
		for _, rg := range ranges {
			if rg.accepted == 0 {
				continue
			}
			evs, err := loadRange(ctx, st, s.channelID, rg, nil)
			if err != nil {
				return err
			}
			for _, ev := range evs {
				if ev.Seq <= s.last || ev.State != store.EventAccepted {
					continue
				}
				if slow, reason := s.q.stopped(); slow || reason != "" {
					return nil
				}
				if err := s.sendEvent(ev); err != nil {
					return err
				}
			}
			if err := s.flush(); err != nil {
				return err
			}
		}
		if caughtUp {
			return nil
		}
	}
}

// sendEvent writes one webhook's message (flushed later).
func (s *smeeStream) sendEvent(ev *store.Event) error {
	s.buf = appendSmeeMessage(s.buf[:0], ev, s.cur)
	if err := s.write(s.buf); err != nil {
		return err
	}
	s.last = ev.Seq
	return nil
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
