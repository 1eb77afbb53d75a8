package server

import (
	"errors"
	"fmt"
	"math"
	"mime"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/hookrelay/hookrelay/server/store"
)

// smee-compatible channels. A channel URL is also an event stream, so
// clients written for smee.io (smee-client, gosmee, EventSource scripts)
// read a hookrelay channel unmodified:
//
//	GET  /h/CHANNEL?key=rk_…   Accept: text/event-stream    the stream (smeestream.go)
//	GET  /h/CHANNEL            Authorization: Bearer TOKEN  the same, with a team token
//	GET  /h/events/CHANNEL?key=rk_…                         the same, where gosmee looks for it
//	GET|HEAD /new                                           307 to a new anonymous channel's stream URL
//
// Anonymous channels live Config.AnonymousChannelTTL (retention deletes
// them with their events), and one source address may create
// Config.AnonymousChannelsPerMinute of them a minute.
//
// Reading needs the channel's read key in the URL (the one place
// smee-client can carry it) or a token in Authorization. A URL that
// carries the read key is therefore a reading URL: ingress refuses
// webhooks sent to it, so a key pasted into a sender's settings is caught
// at the first delivery instead of being handed to the sender.

// channelRequest serves /h/:channel and /h/:channel/*path: a GET that asks
// for text/event-stream on the channel URL itself is a stream; anything
// else is a webhook for ingress.
func (r *Relay) channelRequest(c *gin.Context) {
	if channelID := streamedChannel(c); channelID != "" {
		r.smeeStream(c, channelID)
		return
	}
	if carriesReadKey(c.Request.URL.RawQuery, c.Param("channel")) {
		abortJSON(c, http.StatusBadRequest, "read_key_in_url", fmt.Sprintf(
			"this URL carries the channel's read key, which lets anyone who has it read every webhook: "+
				"give senders %s (without ?key=); the URL with the key is for reading it with smee-client "+
				"or EventSource (Accept: text/event-stream), or sign in to the inspector at %s/ with the key",
			r.ingressURL(c.Request, c.Param("channel"))+c.Param("path"), r.baseURL(c.Request)))
		return
	}
	r.ingress(c)
}

// streamedChannel is the channel whose stream the request asks for, or ""
// when it is a webhook. gosmee's client does not read the URL it is given
// but BASE/events/CHANNEL, which for /h/CHANNEL?key=… is
// /h/events/CHANNEL?key=…; that path is the stream too.
func streamedChannel(c *gin.Context) string {
	if c.Request.Method != http.MethodGet || !acceptsEventStream(c.Request) {
		return ""
	}
	path := c.Param("path")
	if path == "" {
		return c.Param("channel")
	}
	if id, ok := strings.CutPrefix(path, "/"); ok && c.Param("channel") == "events" && id != "" && !strings.Contains(id, "/") {
		return id
	}
	return ""
}

// acceptsEventStream reports whether the request's Accept lists
// text/event-stream (what EventSource sends).
func acceptsEventStream(req *http.Request) bool {
	for _, v := range req.Header.Values("Accept") {
		for part := range strings.SplitSeq(v, ",") {
			mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err == nil && mt == "text/event-stream" && params["q"] != "0" {
				return true
			}
		}
	}
	return false
}

// carriesReadKey reports whether a query string holds a read key of the
// channel in any field.
func carriesReadKey(rawQuery, channelID string) bool {
	if !strings.Contains(rawQuery, readKeyPrefix) {
		return false
	}
	prefix := readKeyPrefix + channelID + "."
	values, _ := url.ParseQuery(rawQuery) // what parses is enough to see a key
	for _, vs := range values {
		for _, v := range vs {
			if strings.HasPrefix(v, prefix) {
				return true
			}
		}
	}
	return false
}

// streamCredential is the read key from ?key= or the token from
// Authorization, or "".
func streamCredential(req *http.Request) string {
	if key := req.URL.Query().Get("key"); key != "" {
		return key
	}
	return bearer(req)
}

// authorizeStream checks that cred may read the channel and loads it. It
// answers (401, 404, 503) and returns false when not.
func (r *Relay) authorizeStream(c *gin.Context, cred, channelID string) (principal, store.Channel, bool) {
	if cred == "" {
		abortJSON(c, http.StatusUnauthorized, "unauthorized",
			"reading a channel needs its read key: add ?key=rk_… to the URL (smee-client, EventSource), "+
				"or send Authorization: Bearer TOKEN")
		return principal{}, store.Channel{}, false
	}
	if c.Query("key") != "" && !strings.HasPrefix(cred, readKeyPrefix) {
		abortJSON(c, http.StatusUnauthorized, "unauthorized",
			"?key= takes a channel read key (rk_…); send a token in Authorization: Bearer TOKEN instead, so it stays out of URLs and logs")
		return principal{}, store.Channel{}, false
	}
	p, ch, err := r.streamAccess(c.Request, cred, channelID)
	switch {
	case err == nil:
		return p, ch, true
	case errors.Is(err, errBadToken):
		abortJSON(c, http.StatusUnauthorized, "unauthorized",
			"the read key or token was rejected; check that you copied all of it and that it was not revoked")
	case errors.Is(err, store.ErrNotFound):
		abortJSON(c, http.StatusNotFound, "channel_not_found", fmt.Sprintf("channel %q does not exist", channelID))
	default:
		r.storeFailed(c, err)
	}
	return principal{}, store.Channel{}, false
}

// streamAccess resolves cred and loads the channel it may read: errBadToken
// for a credential the relay does not know (any more), store.ErrNotFound for
// a channel that does not exist, has expired, or is not the credential's.
func (r *Relay) streamAccess(req *http.Request, cred, channelID string) (principal, store.Channel, error) {
	p, err := r.authenticateToken(req, cred)
	if err != nil {
		return principal{}, store.Channel{}, err
	}
	ch, err := r.store.GetChannel(req.Context(), channelID)
	if err == nil && (!p.canAccess(ch) || (!ch.ExpiresAt.IsZero() && time.Now().After(ch.ExpiresAt))) {
		err = store.ErrNotFound
	}
	return p, ch, err
}

// streamCaps counts the open event streams per channel and per client
// address.
type streamCaps struct {
	mu        sync.Mutex
	byChannel map[string]int
	byAddress map[string]int
}

// acquire takes a place for a stream, or says which cap is full.
func (s *streamCaps) acquire(channelID, addr string, maxPerChannel, maxPerAddress int) (release func(), full string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.byChannel[channelID] >= maxPerChannel:
		return nil, "channel"
	case s.byAddress[addr] >= maxPerAddress:
		return nil, "address"
	}
	if s.byChannel == nil {
		s.byChannel, s.byAddress = make(map[string]int), make(map[string]int)
	}
	s.byChannel[channelID]++
	s.byAddress[addr]++
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.byChannel[channelID]--; s.byChannel[channelID] == 0 {
				delete(s.byChannel, channelID)
			}
			if s.byAddress[addr]--; s.byAddress[addr] == 0 {
				delete(s.byAddress, addr)
			}
		})
	}, ""
}

// lastEventID reads Last-Event-ID: the cursor of the last webhook the
// client received (or of the ready message). ok is false without one, and
// for a cursor this relay cannot read (made with another secret, or of
// another channel): resuming there is impossible, so the stream starts
// from now, as it does for a client that sends none. Anything that is not
// a cursor at all is an error.
func lastEventID(req *http.Request, cur cursors) (seq int64, ok bool, err error) {
	v := strings.TrimSpace(req.Header.Get("Last-Event-ID"))
	if v == "" {
		return 0, false, nil
	}
	if seq, ok := cur.decode(v); ok {
		return seq, true, nil
	}
	if isCursorShaped(v) {
		return 0, false, nil
	}
	return 0, false, fmt.Errorf("Last-Event-ID %q is not an id this relay sent", v)
}

// newChannel handles GET and HEAD /new as smee.io does: a redirect to a new
// channel's URL, which smee-client's createChannel reads from Location. The
// URL carries the new channel's read key, since an unmodified client can
// carry nothing else; whoever holds that URL can read the channel, and
// webhooks go to the URL without ?key=.
func (r *Relay) newChannel(c *gin.Context) {
	if !r.cfg.AllowAnonymous {
		abortJSON(c, http.StatusForbidden, "anonymous_disabled",
			"this relay does not create channels for anonymous callers; with a token from its operator run "+
				"'hookrelay channel create --server "+r.baseURL(c.Request)+" --token TOKEN' and read the channel at "+
				"its URL plus ?key=READ_KEY")
		return
	}
	if !r.admitAnonymous(c) {
		return
	}
	ch := store.Channel{ID: NewChannelID(), CreatedAt: time.Now().UTC()}
	ch.ExpiresAt = ch.CreatedAt.Add(r.cfg.AnonymousChannelTTL)
	readKey := newReadKey(ch.ID)
	ch.ReadKeyHash = hashToken(readKey)
	if err := r.store.CreateChannel(c.Request.Context(), ch); err != nil {
		r.storeFailed(c, err)
		return
	}
	ingress := r.ingressURL(c.Request, ch.ID)
	stream := ingress + "?key=" + url.QueryEscape(readKey)
	c.Header("Location", stream)
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusTemporaryRedirect, gin.H{
		"channel": ch.ID, "url": ingress, "stream_url": stream, "read_key": readKey,
		"expires_at": ch.ExpiresAt,
		"message": "send webhooks to url; read them with smee-client or EventSource at stream_url, or with 'hookrelay connect' " +
			"and the read key as token; the channel and its webhooks are deleted at expires_at",
	})
}

// admitAnonymous applies the per-address rate limit on creating channels
// without a token. It answers 429 and returns false when the address has
// created its share.
func (r *Relay) admitAnonymous(c *gin.Context) bool {
	perMinute := r.cfg.AnonymousChannelsPerMinute
	burst := max(1, int(math.Ceil(perMinute)))
	ok, wait := r.anonLimiters.allowBurst(sourceKey(c.ClientIP()), perMinute/60, burst)
	if ok {
		return true
	}
	c.Header("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
	abortJSON(c, http.StatusTooManyRequests, "rate_limited", fmt.Sprintf(
		"your address has created its share of anonymous channels (%g a minute); retry after %s, "+
			"or ask the relay's operator for a token", perMinute, wait.Round(time.Second)))
	return false
}

// sourceKey is what the anonymous rate limit counts by: the client's IP
// address, or for IPv6 its /64, which one subscriber usually holds whole.
func sourceKey(clientIP string) string {
	ip, err := netip.ParseAddr(clientIP)
	if err != nil {
		return clientIP
	}
	ip = ip.Unmap()
	if ip.Is6() {
		if p, err := ip.Prefix(64); err == nil {
			return p.String()
		}
	}
	return ip.String()
}

// baseURL is the relay's public base URL as seen by req.
func (r *Relay) baseURL(req *http.Request) string {
	return strings.TrimSuffix(r.ingressURL(req, ""), "/h/")
}
