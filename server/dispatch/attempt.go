package dispatch

import (
	"errors"
	"math/rand/v2"
	"time"

	"github.com/hookrelay/hookrelay/protocol"
	"github.com/hookrelay/hookrelay/server/store"
)

// attempt delivers item to agent a once and returns the outcome with the
// attempt to record. The agent's slot is freed when the worker has handled
// the outcome, so that a refusal pauses the group before the slot takes
// another event.
func (w *worker) attempt(a Agent, item readyItem) deliveryResult {
	res := w.try(a, item)
	res.agent = a
	return res
}

func (w *worker) try(a Agent, item readyItem) deliveryResult {
	h := w.hub
	if item.recheck && !item.replay {
		done, err := w.doneInStore(item.seq)
		if err != nil {
			h.log.Warn("check an event another node held", "event", item.eventID, "err", err)
			return deliveryResult{item: item, gone: true}
		}
		if done {
			return deliveryResult{item: item, done: true} // delivered by the other node
		}
	}
	ev := item.ev
	if ev == nil {
		loaded, err := h.store.GetEvent(w.ctx, item.eventID)
		if err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return deliveryResult{item: item, done: true} // deleted meanwhile
			}
			h.log.Warn("load event for delivery", "event", item.eventID, "err", err)
			return deliveryResult{item: item, gone: true}
		}
		if loaded.State != store.EventAccepted && !item.replay {
			return deliveryResult{item: item, done: true} // rejected: never delivered
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
		RepeatOf:   ev.RepeatOf,
	}
	start := time.Now()
	resp, body, err := a.Deliver(w.ctx, req, ev.Body)
	if errors.Is(err, ErrAgentStopping) {
		return deliveryResult{item: item, stopping: true}
	}
	d := store.Delivery{
		ID: req.DeliveryID, EventID: ev.ID, EventSeq: ev.Seq, ChannelID: ev.ChannelID,
		GroupID: w.group.ID, GroupName: w.group.Name, AgentID: a.ID(), Attempt: item.attempt,
		StartedAt: start.UTC(), Duration: time.Since(start),
	}
	res := deliveryResult{item: item}
	switch {
	case errors.Is(err, ErrUndeliverable):
		d.Error = err.Error()
		d.Done = true
	case err != nil:
		d.Error = err.Error()
		res.gone = true
	case resp.Error != "":
		d.Error = resp.Error
		res.refused = resp.ErrorCode == protocol.ErrCodeConnectionRefused
		res.reached = !res.refused
		h.answer(ev.ID, Answer{ErrCode: resp.ErrorCode, ErrMsg: resp.Error})
	default:
		d.Status = resp.Status
		d.ResponseHeaders = resp.Headers
		d.ResponseBody = body[:min(len(body), h.cfg.MaxStoredResponse)]
		d.Duration = resp.Duration
		d.Done = true
		res.reached = true
		h.answer(ev.ID, Answer{Status: resp.Status, Headers: resp.Headers, Body: body})
	}
	// A target that refuses connections is down, not failing this event:
	// such attempts do not count toward giving up (the group pauses).
	if !d.Done && item.attempt >= h.cfg.MaxAttempts && !item.replay && !res.refused {
		d.Done = true
		d.Error += " (gave up after this attempt; replay it to try again)"
	}
	res.done = d.Done || item.replay && item.attempt >= h.cfg.MaxAttempts && !res.refused
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

// newID returns a time-ordered id (store.NewID), as event ids are: the
// store's index on delivery ids then grows at its end.
func newID(prefix string) string { return store.NewID(prefix) }
