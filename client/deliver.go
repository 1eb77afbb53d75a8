package client

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/hookrelay/hookrelay/protocol"
)

// streamMargin is added to RequestTimeout for a delivery stream's deadline:
// time to receive the body before the target reads it and to send the
// response back.
const streamMargin = 30 * time.Second

// refuseTimeout bounds answering a stream the agent will not deliver.
const refuseTimeout = 10 * time.Second

// deliver reads one delivery from st, forwards it to the target and writes
// the target's response (or why there is none) back on st.
func (t *tunnel) deliver(st *yamux.Stream) {
	a := t.a
	_ = st.SetDeadline(time.Now().Add(a.cfg.RequestTimeout + streamMargin))
	req, err := readRequest(st)
	if err != nil {
		a.log.Warn("bad delivery from the relay", "err", err)
		t.answer(st, errorResponse(protocol.ErrCodeBadDelivery, err.Error(), 0), nil)
		return
	}

	body := &streamBody{r: io.LimitedReader{R: st, N: req.BodyLength}}
	var src io.Reader = body
	var savedTo string
	if a.cfg.SaveDir != "" || a.cfg.Handler != nil {
		data, err := io.ReadAll(body)
		if err == nil && int64(len(data)) != req.BodyLength {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			err = fmt.Errorf("read the body from the relay: %w", err)
			a.log.Warn("bad delivery from the relay", "event", req.EventID, "err", err)
			t.answer(st, errorResponse(protocol.ErrCodeBadDelivery, err.Error(), 0), nil)
			return
		}
		if a.cfg.SaveDir != "" {
			if savedTo, err = saveEvent(a.cfg.SaveDir, req, data); err != nil {
				a.log.Error("save event", "event", req.EventID, "err", err)
			}
		}
		if a.cfg.Handler != nil {
			start := time.Now()
			out, respBody := t.callHandler(req, data)
			t.answer(st, out, respBody)
			a.deliveryEvent(DeliveryEvent{Request: req, Started: start, Response: out, SavedTo: savedTo})
			t.awaitRelayDone(st)
			return
		}
		src = bytes.NewReader(data)
	}

	start := time.Now()
	route := a.router.route(req)
	ev := route.event(req, start)
	a.deliveryEvent(ev)
	resp, ferr := a.forward(t.deliverCtx, route, req, src, t.maxResponse())
	// The target may answer without reading the whole body; read the rest
	// so the relay's writes end and the stream stays in step.
	drainErr := body.finish()
	var out *protocol.DeliveryResponse
	var respBody []byte
	switch {
	case body.err != nil || drainErr != nil:
		err := errors.Join(body.err, drainErr)
		a.log.Warn("read the body from the relay", "event", req.EventID, "err", err)
		out = errorResponse(protocol.ErrCodeBadDelivery, "read the body from the relay: "+err.Error(), time.Since(start))
	case ferr != nil:
		var te *TargetError
		if !errors.As(ferr, &te) {
			te = &TargetError{Code: protocol.ErrCodeTarget, Msg: ferr.Error(), Err: ferr}
		}
		out = errorResponse(te.Code, te.Error(), time.Since(start))
	default:
		out = &protocol.DeliveryResponse{
			Status:     resp.Status,
			Headers:    responseHeaders(resp, req.Method),
			BodyLength: int64(len(resp.Body)),
			Duration:   resp.Duration,
		}
		respBody = resp.Body
	}
	t.answer(st, out, respBody)
	ev.Response, ev.SavedTo = out, savedTo
	a.deliveryEvent(ev)
}

// callHandler answers a delivery with Config.Handler instead of the target.
func (t *tunnel) callHandler(req *protocol.DeliveryRequest, body []byte) (*protocol.DeliveryResponse, []byte) {
	start := time.Now()
	status, headers, respBody := t.a.cfg.Handler(t.deliverCtx, req, body)
	d := time.Since(start)
	switch {
	case status == 0:
		return errorResponse(protocol.ErrCodeAgentStopping, "the agent declined the delivery", d), nil
	case status < 100 || status > 999:
		msg := fmt.Sprintf("the agent's handler answered status %d, want 100 to 999", status)
		return errorResponse(protocol.ErrCodeTarget, msg, d), nil
	case int64(len(respBody)) > t.maxResponse():
		te := tooLarge(t.maxResponse())
		return errorResponse(te.Code, te.Msg, d), nil
	}
	return &protocol.DeliveryResponse{
		Status:     status,
		Headers:    appHeaders(headers, req.Method),
		BodyLength: int64(len(respBody)),
		Duration:   d,
	}, respBody
}

// relayDoneTimeout bounds awaitRelayDone.
const relayDoneTimeout = 5 * time.Second

// awaitRelayDone waits for the relay to close its side of a delivery
// stream, which it does once it has read the answer. A Handler answers at
// once, and an agent that stops right after answering (a capture) would
// otherwise end the session while the relay may still be finishing its
// write of the request; the relay then counts the delivery as failed and
// delivers the event again.
func (t *tunnel) awaitRelayDone(st *yamux.Stream) {
	_ = st.SetReadDeadline(time.Now().Add(relayDoneTimeout))
	if _, err := io.Copy(io.Discard, io.LimitReader(st, 1<<10)); err != nil && !t.sess.IsClosed() {
		t.a.log.Debug("wait for the relay to finish a delivery", "err", err)
	}
}

// maxResponse is the largest response body the relay takes back.
func (t *tunnel) maxResponse() int64 {
	if limit := t.welcome.Limits.MaxBody; limit > 0 {
		return limit
	}
	return maxResponseBody
}

// refuse answers a stream with agent_stopping after reading its request, so
// the relay can deliver the event again elsewhere or later.
func (t *tunnel) refuse(st *yamux.Stream) {
	_ = st.SetDeadline(time.Now().Add(refuseTimeout))
	req, err := readRequest(st)
	if err != nil {
		t.answer(st, errorResponse(protocol.ErrCodeBadDelivery, err.Error(), 0), nil)
		return
	}
	if _, err := io.CopyN(io.Discard, st, req.BodyLength); err != nil {
		t.a.log.Debug("read refused delivery", "event", req.EventID, "err", err)
		return
	}
	t.answer(st, errorResponse(protocol.ErrCodeAgentStopping, "the agent is shutting down", 0), nil)
}

// readRequest reads a request frame with protocol.ReadRequest, which keeps
// the exact bytes of header values and a query that are not UTF-8. When the
// frame is well formed but its fields are not, the body it announces is
// read and dropped so the answer can still reach the relay.
func readRequest(st *yamux.Stream) (*protocol.DeliveryRequest, error) {
	req, err := protocol.ReadRequest(st)
	if err != nil && req == nil {
		return nil, fmt.Errorf("read request frame: %w", err)
	}
	if err != nil {
		if req.BodyLength > 0 && req.BodyLength <= protocol.MaxBodyLength {
			_, _ = io.CopyN(io.Discard, st, req.BodyLength) // best effort: the answer is an error anyway
		}
		return nil, err
	}
	return req, nil
}

// answer writes resp and body on st, giving the write its own deadline.
func (t *tunnel) answer(st *yamux.Stream, resp *protocol.DeliveryResponse, body []byte) {
	_ = st.SetWriteDeadline(time.Now().Add(streamMargin))
	if err := protocol.WriteResponse(st, resp, body); err != nil {
		if t.sess.IsClosed() {
			t.a.log.Debug("send delivery response: session closed", "err", err)
			return
		}
		t.a.log.Warn("send delivery response to the relay", "err", err)
	}
}

func errorResponse(code, msg string, d time.Duration) *protocol.DeliveryResponse {
	if msg == "" {
		msg = code // the protocol wants both
	}
	return &protocol.DeliveryResponse{Error: msg, ErrorCode: code, Duration: d}
}

// streamBody is a request body read from a delivery stream. It keeps the
// first error reading the stream: the relay's failure, not the target's.
// forward returns only once it stopped reading the body, so finish may then
// read the rest.
type streamBody struct {
	r   io.LimitedReader // the body bytes not read yet
	err error            // the first error reading the stream
}

func (b *streamBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF && b.r.N > 0 {
		err = io.ErrUnexpectedEOF
	}
	if err != nil && err != io.EOF && b.err == nil {
		b.err = err
	}
	return n, err
}

// finish reads what is left of the body from the stream.
func (b *streamBody) finish() error {
	if b.err != nil || b.r.N == 0 {
		return nil
	}
	if _, err := io.Copy(io.Discard, &b.r); err != nil {
		return err
	}
	if b.r.N > 0 {
		return io.ErrUnexpectedEOF
	}
	return nil
}
