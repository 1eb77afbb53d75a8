package server

import (
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/hookrelay/hookrelay/protocol"
	"github.com/hookrelay/hookrelay/server/dispatch"
	"github.com/hookrelay/hookrelay/server/store"
	"github.com/hookrelay/hookrelay/server/wireheader"
)

// ingress receives a webhook on /h/:channel/*path, commits it, and answers
// with the app's response (sync) or 202 and the event id.
func (r *Relay) ingress(c *gin.Context) {
	req := c.Request
	ctx := req.Context()
	channelID := c.Param("channel")
	// A refusal before the body is read leaves it in flight; it is drained
	// after the answer so that the sender can read that answer.
	body, bodyRead := req.Body, false
	defer func() {
		if !bodyRead {
			r.linger(c, body)
		}
	}()
	path := subPath(req, channelID)
	if !protocol.ValidPath(path) {
		// The tunnel carries paths as printable ASCII (protocol SPEC.md 6.1):
		// storing this one would queue an event that can never be delivered.
		abortJSON(c, http.StatusBadRequest, "bad_path", fmt.Sprintf(
			"the path %q holds bytes outside printable ASCII, or a space; percent-encode them (%%FF for the byte 0xFF)", path))
		return
	}
	ch, err := r.channels.get(ctx, r.store, channelID)
	if err == nil && !ch.ExpiresAt.IsZero() && time.Now().After(ch.ExpiresAt) {
		err = store.ErrNotFound
	}
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			abortJSON(c, http.StatusNotFound, "channel_not_found",
				fmt.Sprintf("channel %q does not exist; create it with 'hookrelay channel create'", channelID))
			return
		}
		r.storeFailed(c, err)
		return
	}

	if !r.admit(c, ch) {
		return
	}
	if req.ContentLength > r.cfg.MaxBody {
		r.tooLarge(c)
		return
	}
	// Slow senders are cut off: the body must arrive within the base read
	// timeout plus one second per 64 KiB announced (or allowed).
	expect := req.ContentLength
	if expect < 0 {
		expect = r.cfg.MaxBody
	}
	readDeadline := time.Now().Add(r.cfg.ReadTimeout + time.Duration(expect/(64<<10))*time.Second)
	_ = http.NewResponseController(c.Writer).SetReadDeadline(readDeadline)
	payload, err := readBody(http.MaxBytesReader(c.Writer, req.Body, r.cfg.MaxBody), req.ContentLength)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			r.tooLarge(c)
			return
		}
		bodyRead = true // the read failed (too slow, cut short): nothing to drain
		abortJSON(c, http.StatusBadRequest, "bad_body", "could not read the request body: "+err.Error())
		return
	}
	bodyRead = true

	ev := &store.Event{
		ID:         newID("evt_"),
		ChannelID:  channelID,
		Method:     req.Method,
		Path:       path,
		RawQuery:   req.URL.RawQuery,
		Headers:    requestHeaders(c),
		Body:       payload,
		RemoteAddr: c.ClientIP(),
		ReceivedAt: time.Now().UTC(),
		State:      store.EventAccepted,
	}

	reason, err := verifySender(ch, ev)
	if err != nil {
		r.log.Error("verification setting", "channel", ch.ID, "err", err)
		abortJSON(c, http.StatusInternalServerError, "bad_channel_setting", err.Error())
		return
	}
	if reason != "" {
		// Kept, marked rejected, so the team can see why; never delivered.
		ev.State, ev.RejectReason = store.EventRejected, reason
		if err := r.store.AppendEvent(ctx, ev); err != nil {
			r.commitFailed(c, err)
			return
		}
		r.metrics.eventsRejected.WithLabelValues("signature").Inc()
		r.hub.publish(ev, false)
		c.Header("Hookrelay-Event-Id", ev.ID)
		abortJSON(c, http.StatusUnauthorized, "signature_invalid", "webhook rejected: "+reason)
		return
	}

	sync := !ch.Async && (r.hub.d.HasAgents(channelID) || r.remote.agentsElsewhere(ctx, channelID))
	var w *dispatch.Waiter
	if sync {
		w = r.hub.d.AddWaiter(ev.ID)
		defer r.hub.d.RemoveWaiter(ev.ID)
	}
	// Forward while the commit is in flight: this node's groups get the
	// event as soon as its seq is assigned, so the sender waits for the
	// slower of the commit and the app, not their sum. The rest hears of
	// it only once it is committed (hub.committed); a failed commit is 503
	// whatever the app answered.
	// A webhook whose commit failed after its delivery started, sent again,
	// is delivered marked as a repeat of it (repeats.go).
	ev.RepeatOf = r.failed.repeatOf(ev)
	commit, err := r.store.StartAppend(ctx, ev)
	if err == nil {
		offered := r.hub.offer(ev)
		<-commit.Done() // the commit runs to its end whatever ctx does
		if err = commit.Err(); err == nil {
			r.hub.committed(offered, ev, sync)
		} else if offered.Handed() {
			r.failed.remember(ev)
		}
	}
	if err != nil {
		if errors.Is(err, store.ErrNotFound) { // deleted a moment ago
			r.channels.forget(channelID)
			abortJSON(c, http.StatusNotFound, "channel_not_found", fmt.Sprintf("channel %q does not exist", channelID))
			return
		}
		r.commitFailed(c, err)
		return
	}
	r.metrics.eventsReceived.Inc()
	if !sync {
		r.accepted(c, ev, "queued; no agent answered synchronously")
		return
	}
	timer := time.NewTimer(r.cfg.ResponseTimeout)
	defer timer.Stop()
	select {
	case ans := <-w.C():
		r.writeOutcome(c, ev, outcomeOf(ans))
	case <-timer.C:
		r.accepted(c, ev, fmt.Sprintf("the app did not answer within %s; the event stays queued", r.cfg.ResponseTimeout))
	case <-ctx.Done():
	}
}

// Lingering after a refusal, as nginx's lingering_close does: the relay
// reads and drops what the sender still sends, for at most lingerTime in
// all and lingerIdle between reads, and at most twice max_body.
const (
	lingerTime = 30 * time.Second
	lingerIdle = 5 * time.Second
)

// linger drains the rest of a refused request's body once the answer is
// sent. Closing a connection with unread bytes makes the kernel answer
// with a reset, which destroys the answer at a sender that writes its whole
// body before it reads (Python's urllib, urllib3). A sender that asked for
// 100 Continue has not sent its body and is not asked for it.
func (r *Relay) linger(c *gin.Context, body io.Reader) {
	req := c.Request
	if req.ContentLength == 0 || body == nil || body == http.NoBody ||
		strings.EqualFold(req.Header.Get("Expect"), "100-continue") || !c.Writer.Written() {
		return
	}
	rc := http.NewResponseController(c.Writer)
	if rc.Flush() != nil {
		return
	}
	end := time.Now().Add(lingerTime)
	left := 2 * r.cfg.MaxBody
	buf := make([]byte, 32<<10)
	for left > 0 {
		deadline := time.Now().Add(lingerIdle)
		if deadline.After(end) {
			deadline = end
		}
		_ = rc.SetReadDeadline(deadline)
		n, err := body.Read(buf[:min(int64(len(buf)), left)])
		left -= int64(n)
		if err != nil {
			return
		}
	}
}

func (r *Relay) tooLarge(c *gin.Context) {
	c.Header("Connection", "close")
	abortJSON(c, http.StatusRequestEntityTooLarge, "body_too_large",
		fmt.Sprintf("request body is larger than the relay's max_body of %d bytes", r.cfg.MaxBody))
}

// storeFailed answers 503: the relay could not commit, so it must not
// pretend it accepted the webhook.
func (r *Relay) storeFailed(c *gin.Context, err error) {
	r.log.Error("store failure", "err", err)
	c.Header("Retry-After", "5")
	abortJSON(c, http.StatusServiceUnavailable, "store_unavailable",
		"the relay cannot store webhooks right now; retry later")
}

// commitFailed answers a webhook whose commit failed: 503, unless the
// sender went away while it waited (its request's context ended), which is
// no failure of the store and has nobody to answer.
func (r *Relay) commitFailed(c *gin.Context, err error) {
	if ctxErr := c.Request.Context().Err(); ctxErr != nil && errors.Is(err, ctxErr) {
		r.log.Debug("the sender went away before its webhook was committed", "err", err)
		c.Abort()
		return
	}
	r.storeFailed(c, err)
}

func (r *Relay) accepted(c *gin.Context, ev *store.Event, msg string) {
	c.Header("Hookrelay-Event-Id", ev.ID)
	c.JSON(http.StatusAccepted, gin.H{"event_id": ev.ID, "status": "queued", "message": msg})
}

// writeOutcome answers the sender with the first delivery outcome.
func (r *Relay) writeOutcome(c *gin.Context, ev *store.Event, out outcome) {
	if out.errCode != "" {
		c.Header("Hookrelay-Event-Id", ev.ID)
		c.JSON(http.StatusBadGateway, gin.H{
			"error":    "the agent could not reach its target: " + out.errMsg,
			"code":     out.errCode,
			"event_id": ev.ID,
		})
		return
	}
	if reason := checkAppResponse(out); reason != "" {
		c.Header("Hookrelay-Event-Id", ev.ID)
		c.JSON(http.StatusBadGateway, gin.H{
			"error":    "the app's answer cannot be passed on: " + reason,
			"code":     "bad_app_response",
			"event_id": ev.ID,
		})
		return
	}
	// The app's fields go out as the app wrote them: order, case, repeats.
	// The relay adds Hookrelay-Event-Id, and what HTTP needs: Content-Length
	// (the agent sends the body whole) and Date unless the app sent one.
	noBody := c.Request.Method == http.MethodHead || out.status == http.StatusNoContent || out.status == http.StatusNotModified
	app := make([]wireheader.Header, 0, len(out.headers))
	appDate, appNosniff := false, false
	for _, hd := range protocol.DropHopByHop(out.headers) {
		switch {
		case strings.EqualFold(hd.Name, "Content-Length") && c.Request.Method != http.MethodHead:
			continue // the relay's own, from the body it writes
		case strings.EqualFold(hd.Name, "Hookrelay-Event-Id"):
			continue // the relay's says which event this was
		case strings.EqualFold(hd.Name, "Date"):
			appDate = true
		case strings.EqualFold(hd.Name, "X-Content-Type-Options"):
			appNosniff = strings.EqualFold(strings.TrimSpace(hd.Value), "nosniff")
		case strings.EqualFold(hd.Name, "Set-Cookie") && setsRelayCookie(hd.Value):
			continue // an app must not sign the browser in or out of the inspector
		}
		app = append(app, wireheader.Header{Name: hd.Name, Value: hd.Value})
	}
	h := c.Writer.Header()
	if !wireheader.SetResponseHeaders(c.Request, app) {
		// Not served through Relay.Serve: the fields go in the map, which
		// net/http writes sorted by name (their case is kept).
		for _, hd := range app {
			h[hd.Name] = append(h[hd.Name], hd.Value)
		}
	}
	// A nil entry stops net/http from adding a field of its own: no sniffed
	// Content-Type when the app sent none, no second Date.
	if _, ok := h["Content-Type"]; !ok {
		h["Content-Type"] = nil
	}
	if _, ok := h["Date"]; !ok && appDate {
		h["Date"] = nil
	}
	h.Set("Hookrelay-Event-Id", ev.ID)
	// The answer is served at the relay's origin, where the inspector's
	// session cookie lives: a page the app (any agent) returns must never
	// run with it. A sandboxed document has a unique origin and runs no
	// script; nosniff keeps a browser from finding HTML in another type.
	h.Add("Content-Security-Policy", "sandbox")
	if !appNosniff {
		h.Set("X-Content-Type-Options", "nosniff")
	}
	if !noBody {
		h.Set("Content-Length", strconv.Itoa(len(out.body)))
	}
	c.Status(out.status)
	if noBody {
		c.Writer.WriteHeaderNow()
	} else {
		_, _ = c.Writer.Write(out.body)
	}
}

// setsRelayCookie reports whether a Set-Cookie value sets one of the
// relay's own cookies (its prefixed forms included).
func setsRelayCookie(v string) bool {
	name, _, _ := strings.Cut(v, "=")
	name = strings.TrimSpace(name)
	for _, prefix := range []string{"__Host-", "__Secure-"} {
		if len(name) > len(prefix) && strings.EqualFold(name[:len(prefix)], prefix) {
			name = name[len(prefix):]
		}
	}
	return strings.EqualFold(name, sessionCookie)
}

// checkAppResponse returns why an app's answer must not reach the sender,
// or "". Only final statuses pass (a 1xx would be taken as an interim or
// protocol-switching answer by the sender or a proxy in front of the
// relay), and the header section is held to the limits of a request's.
func checkAppResponse(out outcome) string {
	if out.status < 200 || out.status > 599 {
		return fmt.Sprintf("the app answered status %d; the relay passes 200 to 599", out.status)
	}
	if n := len(out.headers); n > maxHeaderCount {
		return fmt.Sprintf("the app answered %d header lines; the relay passes at most %d", n, maxHeaderCount)
	}
	size := 0
	for _, h := range out.headers {
		size += len(h.Name) + len(h.Value) + 4 // ": " and CRLF
	}
	if size > maxHeaderBytes {
		return fmt.Sprintf("the app answered %d bytes of headers; the relay passes at most %d", size, maxHeaderBytes)
	}
	return ""
}

// subPath is the path after /h/{channel} exactly as the sender wrote it
// (the raw request target up to "?"), always starting with "/". Go's
// EscapedPath would re-escape some bytes and is not used.
func subPath(req *http.Request, channelID string) string {
	p := req.RequestURI
	if i := strings.IndexByte(p, '?'); i >= 0 {
		p = p[:i]
	}
	if strings.HasPrefix(p, "http://") || strings.HasPrefix(p, "https://") {
		p = req.URL.EscapedPath() // absolute-form request target (proxies)
	}
	// Skip "/h/" and the channel segment as sent (it may be escaped).
	if strings.HasPrefix(p, "/h/") {
		rest := p[3:]
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			p = rest[i:]
		} else {
			p = ""
		}
	} else {
		p = strings.TrimPrefix(req.URL.EscapedPath(), "/h/"+channelID)
	}
	if p == "" || p[0] != '/' {
		p = "/" + p
	}
	return p
}

// recordWireHeaders is the first middleware: it takes every request's
// recorded header list off the connection's queue (wireheader matches
// requests by position, so every request must take its own, whatever the
// route) and keeps it for ingress.
func recordWireHeaders(c *gin.Context) {
	if raw, ok := wireheader.Headers(c.Request); ok {
		c.Set(wireHeadersKey, raw)
	}
	c.Next()
}

const wireHeadersKey = "hookrelay.wireheaders"

// requestHeaders returns the request's headers in wire order with their
// original case when the listener recorded them, else from the parsed map
// (names sorted, Host first).
func requestHeaders(c *gin.Context) []store.Header {
	req := c.Request
	if v, ok := c.Get(wireHeadersKey); ok {
		raw := v.([]wireheader.Header)
		out := make([]store.Header, len(raw))
		for i, h := range raw {
			out[i] = store.Header{Name: h.Name, Value: h.Value}
		}
		return out
	}
	out := []store.Header{{Name: "Host", Value: req.Host}}
	names := make([]string, 0, len(req.Header))
	for name := range req.Header {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		for _, v := range req.Header[name] {
			out = append(out, store.Header{Name: name, Value: v})
		}
	}
	return out
}

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// newID returns a time-ordered id (store.NewID): event ids sort as they
// were made. Ids that must be unguessable use randomID.
func newID(prefix string) string { return store.NewID(prefix) }

// randomID returns prefix + 128 random bits in lowercase base32.
func randomID(prefix string) string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return prefix + idEncoding.EncodeToString(b[:])
}

// NewChannelID returns a new unguessable channel id (128 random bits).
func NewChannelID() string { return randomID("") }

// readBody reads a whole body, allocating once when its length is known
// (io.ReadAll would grow and copy a 25 MiB body many times).
func readBody(r io.Reader, length int64) ([]byte, error) {
	if length <= 0 {
		return io.ReadAll(r)
	}
	body := make([]byte, length)
	if _, err := io.ReadFull(r, body); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("the body ended before its Content-Length of %d bytes: %w", length, err)
		}
		return nil, err
	}
	return body, nil
}
