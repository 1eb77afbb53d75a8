package server

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/hookrelay/hookrelay/server/store"
)

// eventJSON is an event as the API shows it. Body is text when it is valid
// UTF-8 and base64 otherwise, as BodyEncoding says. A query or header value
// that is not valid UTF-8 is text with U+FFFD in place of the bad bytes,
// and its exact bytes follow in base64 (QueryBase64, headerJSON).
type eventJSON struct {
	ID           string       `json:"id"`
	Channel      string       `json:"channel"`
	Cursor       string       `json:"cursor"`
	Method       string       `json:"method"`
	Path         string       `json:"path"`
	Query        string       `json:"query"`
	QueryBase64  string       `json:"query_base64,omitempty"`
	Headers      []headerJSON `json:"headers"`
	Body         *string      `json:"body,omitempty"`
	BodyEncoding string       `json:"body_encoding,omitempty"`
	Size         int          `json:"size"`
	RemoteAddr   string       `json:"remote_addr"`
	ReceivedAt   time.Time    `json:"received_at"`
	State        string       `json:"state"`
	RejectReason string       `json:"reject_reason,omitempty"`
	LastStatus   int          `json:"last_status,omitempty"`
	Attempts     int          `json:"attempts"`
	Delivered    bool         `json:"delivered"`
	ReplayOf     string       `json:"replay_of,omitempty"`
}

func eventView(ev store.Event, cur cursors, withBody bool) eventJSON {
	v := eventJSON{
		ID: ev.ID, Channel: ev.ChannelID, Cursor: cur.encode(ev.Seq), Method: ev.Method, Path: ev.Path,
		Query: ev.RawQuery, QueryBase64: base64IfNotUTF8(ev.RawQuery), Headers: headersView(ev.Headers),
		Size: ev.Size, RemoteAddr: ev.RemoteAddr,
		ReceivedAt: ev.ReceivedAt, State: string(ev.State), RejectReason: ev.RejectReason,
		LastStatus: ev.LastStatus, Attempts: ev.Attempts, Delivered: ev.DeliveredAny, ReplayOf: ev.ReplayOf,
	}
	if withBody {
		body, enc := encodeBody(ev.Body)
		v.Body, v.BodyEncoding = &body, enc
	}
	return v
}

// headerJSON is a header as the API shows it. Value is text: JSON strings
// hold Unicode, so bytes that are not valid UTF-8 read as U+FFFD there, and
// ValueBase64 then holds the exact bytes (it is absent otherwise).
type headerJSON struct {
	Name        string `json:"name"`
	Value       string `json:"value"`
	ValueBase64 string `json:"value_base64,omitempty"`
}

// headersView is the API's view of a header list (never null).
func headersView(hs []store.Header) []headerJSON {
	out := make([]headerJSON, len(hs))
	for i, h := range hs {
		out[i] = headerJSON{Name: h.Name, Value: h.Value, ValueBase64: base64IfNotUTF8(h.Value)}
	}
	return out
}

// base64IfNotUTF8 is s in base64 when s is not valid UTF-8, else "".
func base64IfNotUTF8(s string) string {
	if utf8.ValidString(s) {
		return ""
	}
	return base64.StdEncoding.EncodeToString([]byte(s))
}

// encodeBody gives a body as text when it is valid UTF-8, else as base64.
func encodeBody(b []byte) (string, string) {
	if utf8.Valid(b) {
		return string(b), "utf8"
	}
	return base64.StdEncoding.EncodeToString(b), "base64"
}

const maxWait = 60 * time.Second

// listEvents handles GET /api/v1/channels/:id/events: newest first, with
// cursor pagination (before=CURSOR), filters, and long-poll (after=ID or
// after=CURSOR with wait=30s returns as soon as a newer event exists).
func (r *Relay) listEvents(c *gin.Context) {
	ch, ok := r.channelFor(c, "id")
	if !ok {
		return
	}
	q := store.EventQuery{ChannelID: ch.ID, Method: strings.ToUpper(c.Query("method")), Text: c.Query("q")}
	var err error
	bad := func(msg string) { abortJSON(c, http.StatusBadRequest, "bad_request", msg) }
	if v := c.Query("limit"); v != "" {
		if q.Limit, err = strconv.Atoi(v); err != nil || q.Limit < 1 || q.Limit > 500 {
			bad("limit must be a number from 1 to 500")
			return
		}
	}
	cur := r.cursorsFor(ch.ID)
	if v, ok := c.GetQuery("before"); ok {
		var valid bool
		if q.BeforeSeq, valid = cur.decode(v); !valid || q.BeforeSeq == 0 {
			bad(fmt.Sprintf("before=%q is not a cursor of this channel: pass the next_cursor of a previous page of its events, as given", v))
			return
		}
	}
	if v := c.Query("status"); v != "" {
		if q.Status, err = strconv.Atoi(v); err != nil {
			bad("status must be an HTTP status code like 200")
			return
		}
	}
	for name, dst := range map[string]*time.Time{"since": &q.Since, "until": &q.Until} {
		if v := c.Query(name); v != "" {
			if *dst, err = time.Parse(time.RFC3339, v); err != nil {
				bad(name + " must be an RFC 3339 time like 2026-11-26T10:00:00Z")
				return
			}
		}
	}
	if v, ok := c.GetQuery("after"); ok {
		if q.AfterSeq, err = r.resolveCursor(c, ch.ID, cur, v); err != nil {
			return
		}
	}
	var wait time.Duration
	if v := c.Query("wait"); v != "" {
		if wait, err = time.ParseDuration(v); err != nil || wait < 0 {
			bad("wait must be a duration like 30s")
			return
		}
		wait = min(wait, maxWait)
	}
	q.WithBody = c.Query("include") == "body"

	ctx := c.Request.Context()
	var watch *watcher
	if wait > 0 {
		if watch, err = r.hub.watch(ch.ID, principalOf(c).TokenID); err != nil {
			abortJSON(c, http.StatusTooManyRequests, "limit_exceeded", err.Error())
			return
		}
		defer r.hub.unwatch(watch)
		r.metrics.longPolls.Inc()
		defer r.metrics.longPolls.Dec()
	}
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	// ended answers for a watcher that was ended (revoked, deleted) and
	// reports whether it did; a draining relay answers what there is.
	ended := func() bool {
		switch code, reason := watch.endReason(); code {
		case endTokenRevoked:
			abortJSON(c, http.StatusUnauthorized, "unauthorized", reason)
			return true
		case endChannelDeleted:
			abortJSON(c, http.StatusNotFound, "channel_not_found", reason)
			return true
		}
		wait = 0
		return false
	}
	for {
		evs, err := r.store.ListEvents(ctx, q)
		if err != nil {
			r.storeFailed(c, err)
			return
		}
		if watch != nil {
			// A watcher ended (revoked, deleted) while the page was read
			// must not hand out events that came after its end: they are
			// in the page only if it ended before they were committed.
			select {
			case <-watch.done:
				if ended() {
					return
				}
			default:
			}
		}
		if len(evs) > 0 || wait == 0 {
			out := make([]eventJSON, len(evs))
			for i, ev := range evs {
				out[i] = eventView(ev, cur, q.WithBody)
			}
			resp := gin.H{"events": out}
			limit := q.Limit
			if limit <= 0 {
				limit = 50
			}
			if len(evs) == limit {
				resp["next_cursor"] = cur.encode(evs[len(evs)-1].Seq)
			}
			c.JSON(http.StatusOK, resp)
			return
		}
		select {
		case <-watch.ch:
		case <-deadline.C:
			wait = 0 // answer the (empty) page now
		case <-watch.done:
			if ended() {
				return
			}
		case <-ctx.Done():
			return
		}
	}
}

// resolveCursor turns after=CURSOR or after=ID (an event of the channel)
// into a seq.
func (r *Relay) resolveCursor(c *gin.Context, channelID string, cur cursors, v string) (int64, error) {
	if seq, ok := cur.decode(v); ok {
		return seq, nil
	}
	ev, err := r.store.GetEvent(c.Request.Context(), v)
	if err != nil || ev.ChannelID != channelID {
		if err == nil || errors.Is(err, store.ErrNotFound) {
			abortJSON(c, http.StatusBadRequest, "bad_request",
				fmt.Sprintf("after=%q is neither a cursor nor an event id of this channel: pass an event's cursor or id, as given", v))
			return 0, errors.New("bad cursor")
		}
		r.storeFailed(c, err)
		return 0, err
	}
	return ev.Seq, nil
}

// eventFor loads the event named in the route and checks access through
// its channel (404 for other teams').
func (r *Relay) eventFor(c *gin.Context) (store.Event, store.Channel, bool) {
	id := c.Param("id")
	ev, err := r.store.GetEvent(c.Request.Context(), id)
	var ch store.Channel
	if err == nil {
		ch, err = r.store.GetChannel(c.Request.Context(), ev.ChannelID)
	}
	if err == nil && !principalOf(c).canAccess(ch) {
		err = store.ErrNotFound
	}
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			abortJSON(c, http.StatusNotFound, "event_not_found", fmt.Sprintf("event %q does not exist", id))
		} else {
			r.storeFailed(c, err)
		}
		return store.Event{}, store.Channel{}, false
	}
	return ev, ch, true
}

// getEvent handles GET /api/v1/events/:id (with the body).
func (r *Relay) getEvent(c *gin.Context) {
	if ev, _, ok := r.eventFor(c); ok {
		c.JSON(http.StatusOK, eventView(ev, r.cursorsFor(ev.ChannelID), true))
	}
}

// eventBody handles GET /api/v1/events/:id/body: the raw bytes as received.
func (r *Relay) eventBody(c *gin.Context) {
	ev, _, ok := r.eventFor(c)
	if !ok {
		return
	}
	ctype := "application/octet-stream"
	for _, h := range ev.Headers {
		if strings.EqualFold(h.Name, "Content-Type") {
			ctype = h.Value
		}
	}
	c.Header("Content-Disposition", fmt.Sprintf(`attachment; filename="%s.body"`, ev.ID))
	c.Header("X-Content-Type-Options", "nosniff")
	c.Header("Content-Security-Policy", "sandbox")
	c.Data(http.StatusOK, ctype, ev.Body)
}

// deliveryJSON is one delivery attempt as the API shows it: what the live
// stream shows, with the app's response.
type deliveryJSON struct {
	liveDelivery
	ResponseHeaders []headerJSON `json:"response_headers"`
	ResponseBody    string       `json:"response_body"`
	BodyEncoding    string       `json:"response_body_encoding"`
}

// eventDeliveries handles GET /api/v1/events/:id/deliveries.
func (r *Relay) eventDeliveries(c *gin.Context) {
	ev, _, ok := r.eventFor(c)
	if !ok {
		return
	}
	ds, err := r.store.Deliveries(c.Request.Context(), ev.ID)
	if err != nil {
		r.storeFailed(c, err)
		return
	}
	out := make([]deliveryJSON, len(ds))
	for i, d := range ds {
		body, enc := encodeBody(d.ResponseBody)
		out[i] = deliveryJSON{liveDelivery: newLiveDelivery(d), ResponseHeaders: headersView(d.ResponseHeaders),
			ResponseBody: body, BodyEncoding: enc}
	}
	c.JSON(http.StatusOK, gin.H{"deliveries": out})
}

type replayRequest struct {
	Group string `json:"group"` // "" for every connected group
	replayEdits
}

// replayEvent handles POST /api/v1/events/:id/replay: deliver the event
// again to the connected groups of its channel, or to one named group.
func (r *Relay) replayEvent(c *gin.Context) {
	ev, ch, ok := r.eventFor(c)
	if !ok {
		return
	}
	var in replayRequest
	if c.Request.ContentLength != 0 {
		if err := c.ShouldBindJSON(&in); err != nil {
			abortJSON(c, http.StatusBadRequest, "bad_request", `body must be JSON like {"group":"name"} or {"set_headers":[{"name":"X-A","value":"1"}],"resign":true}: `+err.Error())
			return
		}
	}
	if in.replayEdits.any() {
		r.replayEdited(c, ev, ch, in)
		return
	}
	if ev.State == store.EventRejected {
		abortJSON(c, http.StatusConflict, "event_rejected", "this event was rejected at ingress ("+ev.RejectReason+") and is never delivered")
		return
	}
	groups := r.hub.d.Replay(ch.ID, in.Group, ev)
	groups = append(groups, r.remoteReplays(c.Request.Context(), ev, in.Group, groups)...)
	if len(groups) == 0 {
		msg := "no agent of this channel is connected; start 'hookrelay connect " + ch.ID + "' and replay again"
		if in.Group != "" {
			msg = fmt.Sprintf("no agent of group %q is connected to this channel", in.Group)
		}
		abortJSON(c, http.StatusConflict, "no_agent", msg)
		return
	}
	c.JSON(http.StatusAccepted, gin.H{"event_id": ev.ID, "groups": groups})
}
