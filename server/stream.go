package server

import (
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/hookrelay/hookrelay/server/store"
)

// The live stream of a channel: GET /api/v1/channels/:id/stream answers
// with Server-Sent Events, one per new event ("event") and per recorded
// delivery attempt ("delivery"). The hub hands them to the stream's
// watcher in a bounded queue; when a browser reads too slowly the queue
// drops messages and the stream sends "resync", after which the page reads
// the API again. Publishing never blocks ingress or the dispatcher.
//
// Messages, each "event: NAME\ndata: JSON\n\n":
//
//	ready     {"channel"}           subscribed; read the API now for anything older
//	event     liveEvent             a new event was stored
//	delivery  liveDelivery          a delivery attempt was recorded
//	resync    {}                    messages were dropped; read the API again
//	end       {"reason"}            the stream ends (token revoked, read key replaced, signed out, channel deleted, relay stopping)
//
// A comment line (": ping") every 15 seconds keeps proxies from closing an
// idle stream; at each the stream checks again that the caller may still
// read the channel.

const (
	liveQueueSize   = 256
	streamHeartbeat = 15 * time.Second
	streamWriteWait = 10 * time.Second
)

// liveMessage is one encoded stream message, shared by every watcher.
type liveMessage struct {
	name string
	data []byte
}

// liveQueue holds a stream's messages until its handler writes them.
type liveQueue struct {
	mu      sync.Mutex
	msgs    []liveMessage // at most liveQueueSize
	dropped bool          // a message did not fit since the last take
}

// push queues m, or marks the queue as having dropped one. It never blocks.
func (q *liveQueue) push(m liveMessage) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.msgs) >= liveQueueSize {
		q.dropped = true
		return
	}
	q.msgs = append(q.msgs, m)
}

// take empties the queue.
func (q *liveQueue) take() (msgs []liveMessage, dropped bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	msgs, dropped = q.msgs, q.dropped
	q.msgs, q.dropped = nil, false
	return msgs, dropped
}

// watchLive registers a stream's watcher for a channel; unwatch ends it.
func (h *hub) watchLive(channelID, owner string) (*watcher, error) {
	w := newWatcher(channelID, owner)
	w.live = &liveQueue{}
	return h.addWatcher(w)
}

// liveWatchers lists the stream watchers of a channel.
func (h *hub) liveWatchers(channelID string) []*watcher {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []*watcher
	for w := range h.watchers[channelID] {
		if w.live != nil {
			out = append(out, w)
		}
	}
	return out
}

// pushLive encodes a message once (only when someone watches) and queues
// it for each stream of the channel.
func (h *hub) pushLive(channelID, name string, data func() any) {
	ws := h.liveWatchers(channelID)
	if len(ws) == 0 {
		return
	}
	b, err := json.Marshal(data())
	if err != nil {
		h.relay.log.Error("encode live message", "err", err)
		return
	}
	m := liveMessage{name: name, data: b}
	for _, w := range ws {
		w.live.push(m)
		w.wake()
	}
}

// liveEvent is a new event as the stream shows it.
type liveEvent struct {
	ID           string    `json:"id"`
	Channel      string    `json:"channel"`
	Cursor       string    `json:"cursor"`
	ReceivedAt   time.Time `json:"received_at"`
	Method       string    `json:"method"`
	Path         string    `json:"path"`
	Query        string    `json:"query"`
	Size         int       `json:"size"`
	EventName    string    `json:"event_name,omitempty"`
	State        string    `json:"state"`
	RejectReason string    `json:"reject_reason,omitempty"`
	ReplayOf     string    `json:"replay_of,omitempty"`
}

// publishLive tells the channel's streams about a newly stored event.
func (h *hub) publishLive(ev *store.Event) {
	h.pushLive(ev.ChannelID, "event", func() any {
		return liveEvent{
			ID: ev.ID, Channel: ev.ChannelID, Cursor: h.relay.cursorsFor(ev.ChannelID).encode(ev.Seq), ReceivedAt: ev.ReceivedAt, Method: ev.Method,
			Path: ev.Path, Query: ev.RawQuery, Size: len(ev.Body), EventName: eventName(ev.Headers, ev.Body),
			State: string(ev.State), RejectReason: ev.RejectReason, ReplayOf: ev.ReplayOf,
		}
	})
}

// liveDelivery is a delivery attempt as the stream and the event summaries
// show it (the response itself is read from the API).
type liveDelivery struct {
	EventID    string    `json:"event_id"`
	ID         string    `json:"id"`
	Group      string    `json:"group"`
	Agent      string    `json:"agent"`
	Attempt    int       `json:"attempt"`
	StartedAt  time.Time `json:"started_at"`
	DurationMS float64   `json:"duration_ms"`
	Status     int       `json:"status,omitempty"`
	Error      string    `json:"error,omitempty"`
	Done       bool      `json:"done"`
}

func newLiveDelivery(d store.Delivery) liveDelivery {
	return liveDelivery{
		EventID: d.EventID, ID: d.ID, Group: d.GroupName, Agent: d.AgentID, Attempt: d.Attempt,
		StartedAt: d.StartedAt, DurationMS: float64(d.Duration.Microseconds()) / 1000,
		Status: d.Status, Error: d.Error, Done: d.Done,
	}
}

// publishDelivery tells the channel's streams about a recorded attempt,
// here and on the relay's other nodes.
func (h *hub) publishDelivery(d store.Delivery) {
	ld := newLiveDelivery(d)
	h.pushLive(d.ChannelID, "delivery", func() any { return ld })
	h.relay.announceLive(d.ChannelID, "delivery", ld)
}

// stream handles GET /api/v1/channels/:id/stream.
func (in *inspector) stream(c *gin.Context) {
	r := in.relay
	ch, ok := r.channelFor(c, "id")
	if !ok {
		return
	}
	w, err := r.hub.watchLive(ch.ID, principalOf(c).TokenID)
	if err != nil {
		abortJSON(c, http.StatusTooManyRequests, "limit_exceeded", err.Error())
		return
	}
	defer r.hub.unwatch(w)

	hdr := c.Writer.Header()
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("X-Accel-Buffering", "no") // tell nginx not to buffer the stream
	c.Status(http.StatusOK)
	rc := http.NewResponseController(c.Writer)
	write := func(chunks ...[]byte) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(streamWriteWait))
		for _, b := range chunks {
			if _, err := c.Writer.Write(b); err != nil {
				return false
			}
		}
		return rc.Flush() == nil
	}
	send := func(name string, data []byte) bool {
		return write([]byte("event: "+name+"\ndata: "), data, []byte("\n\n"))
	}
	end := func(reason string) {
		b, _ := json.Marshal(map[string]string{"reason": reason})
		send("end", b)
	}
	ready, _ := json.Marshal(map[string]string{"channel": ch.ID})
	if !write([]byte("retry: 2000\n\n")) || !send("ready", ready) {
		return
	}

	heartbeat := time.NewTicker(streamHeartbeat)
	defer heartbeat.Stop()
	ctx := c.Request.Context()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.ctx.Done():
			end("the relay is stopping")
			return
		case <-w.done:
			_, reason := w.endReason()
			end(reason)
			return
		case <-w.ch:
			msgs, dropped := w.live.take()
			if dropped && !send("resync", []byte("{}")) {
				return
			}
			for _, m := range msgs {
				if !send(m.name, m.data) {
					return
				}
			}
		case <-heartbeat.C:
			if reason := in.stillAllowed(c, ch.ID); reason != "" {
				end(reason)
				return
			}
			if !write([]byte(": ping\n\n")) {
				return
			}
		}
	}
}

// stillAllowed checks again that the stream's caller may read the channel
// and that it exists; it returns why not, or "".
func (in *inspector) stillAllowed(c *gin.Context, channelID string) string {
	p, err := in.requestPrincipal(c)
	if err != nil {
		if errors.Is(err, errNoToken) || errors.Is(err, errBadToken) || errors.Is(err, errSessionEnded) {
			return "signed out: " + err.Error()
		}
		return "" // the store is down for a moment: keep the stream
	}
	ch, err := in.relay.store.GetChannel(c.Request.Context(), channelID)
	if err == nil && !p.canAccess(ch) {
		err = store.ErrNotFound
	}
	if errors.Is(err, store.ErrNotFound) {
		return "the channel was deleted"
	}
	return ""
}
