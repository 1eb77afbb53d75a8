package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/hookrelay/hookrelay/server/store"
	"github.com/hookrelay/hookrelay/server/ui"
)

// The inspector is the relay's web page (package ui) and what it needs
// beyond the JSON API: sign-in sessions kept in a cookie, the live stream
// of a channel (stream.go) and per-event summaries for its rows.
//
// Routes:
//
//	GET  /, /ui/              the page
//	GET  /ui/assets/*file     its scripts, styles and icon
//	POST /ui/login            {"token"} (JSON or form) → session cookie
//	POST /ui/logout           ends the session
//	GET  /ui/session          who the session is
//	GET  /api/v1/channels/:id/stream           live events and deliveries (SSE)
//	GET  /api/v1/channels/:id/event-summaries  ?ids=… provider event names and last deliveries
//
// A session maps a random cookie value to the hash of the token it was
// opened with (sessions.go); the token is authenticated again by its hash
// on every request, so revoking it ends the session at once. Requests that change state with a cookie (not a
// bearer token) must come from the relay's own origin.

const (
	sessionCookie = "hookrelay_session"
	sessionTTL    = 12 * time.Hour
	maxSessions   = 10000
)

var errSessionEnded = errors.New("the inspector session ended; sign in again")

// inspector serves the web UI and holds its sessions.
type inspector struct {
	relay    *Relay
	assets   *ui.Handler
	sessions sessionKeeper // sessions.go
}

func newInspector(r *Relay) (*inspector, error) {
	assets, err := ui.New()
	if err != nil {
		return nil, err
	}
	return &inspector{relay: r, assets: assets, sessions: newSessionKeeper(r.cluster)}, nil
}

// register adds the page, the session endpoints and the UI's API routes;
// api is the /api/v1 group, whose authentication accepts the session
// cookie (withSession).
func (in *inspector) register(e *gin.Engine, api *gin.RouterGroup) {
	page := gin.WrapH(in.assets)
	e.GET("/", page)
	e.GET("/ui/", page)
	e.GET(ui.AssetPrefix+"*file", page)
	e.HEAD("/", page)
	e.HEAD(ui.AssetPrefix+"*file", page)
	e.POST("/ui/login", in.login)
	e.POST("/ui/logout", in.logout)
	e.GET("/ui/session", in.session)
	api.GET("/channels/:id/stream", in.stream)
	api.GET("/channels/:id/event-summaries", in.eventSummaries)
}

// secure reports whether cookies must be marked Secure: the request came
// over TLS or the relay's public URL is https.
func (in *inspector) secure(req *http.Request) bool {
	return req.TLS != nil || in.relay.cfg.TLS || strings.HasPrefix(strings.ToLower(in.relay.cfg.PublicURL), "https://")
}

func (in *inspector) setCookie(c *gin.Context, value string, expires time.Time) {
	ck := &http.Cookie{
		Name: sessionCookie, Value: value, Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: in.secure(c.Request),
	}
	if value == "" {
		ck.MaxAge = -1
	} else {
		ck.Expires = expires
		ck.MaxAge = int(time.Until(expires).Seconds())
	}
	http.SetCookie(c.Writer, ck)
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// withSession wraps an API authentication middleware: a request without an
// Authorization header but with the session cookie is authenticated with
// the session's token instead, and must be same-origin when it changes
// state.
func (in *inspector) withSession(next gin.HandlerFunc) gin.HandlerFunc {
	return func(c *gin.Context) {
		ck, err := c.Request.Cookie(sessionCookie)
		if c.GetHeader("Authorization") != "" || err != nil || ck.Value == "" || !in.relay.onInspectorHost(c.Request) {
			next(c)
			return
		}
		if !safeMethod(c.Request.Method) && !in.relay.sameOrigin(c.Request) {
			abortJSON(c, http.StatusForbidden, "cross_origin",
				"a request signed in with the inspector's cookie must come from the inspector's page; use an Authorization header from scripts")
			return
		}
		p, err := in.sessionPrincipal(c, ck.Value)
		if err != nil {
			in.authFailed(c, err)
			return
		}
		c.Set(principalKey, p)
		c.Next()
	}
}

// sessionPrincipal authenticates the session's token again. A session
// whose token no longer authenticates is removed.
func (in *inspector) sessionPrincipal(c *gin.Context, cookie string) (principal, error) {
	sess, ok, err := in.sessions.lookup(c.Request.Context(), cookie, time.Now())
	if err != nil {
		return principal{}, err
	}
	if !ok {
		return principal{}, errSessionEnded
	}
	p, err := in.relay.authenticateCredential(c.Request, sess.cred)
	if errors.Is(err, errBadToken) {
		if err := in.sessions.remove(c.Request.Context(), cookie); err != nil {
			in.relay.log.Warn("remove a session whose token was revoked", "err", err)
		}
		return principal{}, errSessionEnded
	}
	return p, err
}

// requestPrincipal authenticates a request by its bearer token or, without
// one, its session cookie (used again by long-lived streams).
func (in *inspector) requestPrincipal(c *gin.Context) (principal, error) {
	if c.GetHeader("Authorization") != "" {
		return in.relay.authenticate(c.Request)
	}
	ck, err := c.Request.Cookie(sessionCookie)
	if err != nil || ck.Value == "" {
		return principal{}, errNoToken
	}
	return in.sessionPrincipal(c, ck.Value)
}

// authFailed answers 401 (clearing a dead session's cookie) or 503.
func (in *inspector) authFailed(c *gin.Context, err error) {
	switch {
	case errors.Is(err, errSessionEnded):
		in.setCookie(c, "", time.Time{})
		abortJSON(c, http.StatusUnauthorized, "unauthorized", err.Error())
	case errors.Is(err, errNoToken), errors.Is(err, errBadToken):
		abortJSON(c, http.StatusUnauthorized, "unauthorized", err.Error())
	default:
		abortJSON(c, http.StatusServiceUnavailable, "store_unavailable", "cannot check the token now: "+err.Error())
	}
}

// isForm reports whether the request body is an HTML form (else JSON).
func isForm(req *http.Request) bool {
	mt, _, _ := mime.ParseMediaType(req.Header.Get("Content-Type"))
	return mt == "application/x-www-form-urlencoded" || mt == "multipart/form-data"
}

// login handles POST /ui/login: {"token": "..."} as JSON, or a form field
// "token". JSON callers get the session as JSON; forms are redirected to
// the page (with #/signin/rejected on failure).
func (in *inspector) login(c *gin.Context) {
	form := isForm(c.Request)
	if c.GetHeader("Origin") != "" && !in.relay.sameOrigin(c.Request) {
		abortJSON(c, http.StatusForbidden, "cross_origin", "sign in from the relay's own page")
		return
	}
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, 64<<10)
	var token string
	if form {
		token = c.PostForm("token")
	} else {
		var body struct {
			Token string `json:"token"`
		}
		if err := json.NewDecoder(c.Request.Body).Decode(&body); err != nil {
			abortJSON(c, http.StatusBadRequest, "bad_request", `body must be JSON like {"token":"hr_..."} or a form with a token field`)
			return
		}
		token = body.Token
	}
	token = strings.TrimSpace(token)
	pr, err := principal{}, errNoToken
	if token != "" {
		pr, err = in.relay.authenticateToken(c.Request, token)
	}
	if err != nil {
		rejected := errors.Is(err, errNoToken) || errors.Is(err, errBadToken)
		if form {
			to := "/#/signin/rejected"
			if !rejected {
				to = "/#/signin/unavailable"
			}
			c.Redirect(http.StatusSeeOther, to)
			return
		}
		if rejected {
			abortJSON(c, http.StatusUnauthorized, "unauthorized", "the token or read key was rejected; check that you copied all of it and that it was not revoked")
			return
		}
		in.authFailed(c, err)
		return
	}
	id, expires, err := in.sessions.create(c.Request.Context(), credentialOf(token), time.Now())
	if err != nil {
		if form {
			c.Redirect(http.StatusSeeOther, "/#/signin/unavailable")
			return
		}
		in.authFailed(c, err)
		return
	}
	in.setCookie(c, id, expires)
	c.Header("Cache-Control", "no-store")
	if form {
		c.Redirect(http.StatusSeeOther, "/")
		return
	}
	c.JSON(http.StatusOK, in.sessionView(c, pr, expires))
}

// logout handles POST /ui/logout.
func (in *inspector) logout(c *gin.Context) {
	if ck, err := c.Request.Cookie(sessionCookie); err == nil && ck.Value != "" {
		if !in.relay.sameOrigin(c.Request) {
			abortJSON(c, http.StatusForbidden, "cross_origin", "sign out from the relay's own page")
			return
		}
		if err := in.sessions.remove(c.Request.Context(), ck.Value); err != nil {
			// The session would live on: say so rather than pretend.
			in.authFailed(c, err)
			return
		}
	}
	in.setCookie(c, "", time.Time{})
	if isForm(c.Request) {
		c.Redirect(http.StatusSeeOther, "/")
		return
	}
	c.JSON(http.StatusOK, gin.H{"signed_out": true})
}

// sessionJSON tells the page who it is signed in as.
type sessionJSON struct {
	SignedIn  bool       `json:"signed_in"`
	Role      store.Role `json:"role"`
	TeamID    string     `json:"team_id,omitempty"`
	TeamName  string     `json:"team_name,omitempty"`
	Channel   string     `json:"channel,omitempty"` // the one channel of a read key
	CanManage bool       `json:"can_manage"`        // may create and delete channels
	Admin     bool       `json:"admin"`             // the relay's admin token
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

func (in *inspector) sessionView(c *gin.Context, p principal, expires time.Time) sessionJSON {
	v := sessionJSON{
		SignedIn: true, Role: p.Role, TeamID: p.TeamID, Channel: p.ChannelID, Admin: p.isAdmin(),
		CanManage: p.Role == store.RoleAdmin || p.Role == store.RoleMember,
	}
	if !expires.IsZero() {
		v.ExpiresAt = &expires
	}
	if p.TeamID != "" {
		if t, err := in.relay.store.GetTeam(c.Request.Context(), p.TeamID); err == nil {
			v.TeamName = t.Name
		}
	}
	return v
}

// session handles GET /ui/session: the session, {"signed_in": false}
// without a cookie, or 401 when the cookie's session has ended.
func (in *inspector) session(c *gin.Context) {
	c.Header("Cache-Control", "no-store")
	ck, err := c.Request.Cookie(sessionCookie)
	if err != nil || ck.Value == "" {
		c.JSON(http.StatusOK, gin.H{"signed_in": false})
		return
	}
	p, err := in.sessionPrincipal(c, ck.Value)
	if err != nil {
		in.authFailed(c, err)
		return
	}
	sess, _, _ := in.sessions.lookup(c.Request.Context(), ck.Value, time.Now()) // just read by sessionPrincipal
	c.JSON(http.StatusOK, in.sessionView(c, p, sess.expires))
}

const maxSummaryIDs = 100

// eventSummaryJSON is what a row of the event list shows beyond the event
// itself: the provider's event name (which may need the body) and the last
// delivery attempt.
type eventSummaryJSON struct {
	ID           string        `json:"id"`
	EventName    string        `json:"event_name,omitempty"`
	Deliveries   int           `json:"deliveries"`
	LastDelivery *liveDelivery `json:"last_delivery,omitempty"`
}

// eventSummaries handles GET /api/v1/channels/:id/event-summaries?ids=a,b:
// summaries of up to 100 events of the channel, in the order asked; ids of
// other channels or of deleted events are left out.
func (in *inspector) eventSummaries(c *gin.Context) {
	r := in.relay
	ch, ok := r.channelFor(c, "id")
	if !ok {
		return
	}
	var ids []string
	seen := make(map[string]bool)
	for id := range strings.SplitSeq(c.Query("ids"), ",") {
		if id = strings.TrimSpace(id); id != "" && !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	if len(ids) > maxSummaryIDs {
		abortJSON(c, http.StatusBadRequest, "bad_request", fmt.Sprintf("ask for at most %d ids at once", maxSummaryIDs))
		return
	}
	ctx := c.Request.Context()
	out := make([]eventSummaryJSON, 0, len(ids))
	for _, id := range ids {
		ev, err := r.store.GetEvent(ctx, id)
		if errors.Is(err, store.ErrNotFound) || err == nil && ev.ChannelID != ch.ID {
			continue
		}
		var ds []store.Delivery
		if err == nil {
			ds, err = r.store.Deliveries(ctx, id)
		}
		if err != nil {
			r.storeFailed(c, err)
			return
		}
		s := eventSummaryJSON{ID: ev.ID, EventName: eventName(ev.Headers, ev.Body), Deliveries: len(ds)}
		if len(ds) > 0 {
			d := newLiveDelivery(ds[len(ds)-1])
			s.LastDelivery = &d
		}
		out = append(out, s)
	}
	c.JSON(http.StatusOK, gin.H{"summaries": out})
}

// maxNameBody bounds the bodies searched for an event name.
const maxNameBody = 1 << 20

// nameHeaders carry the provider's event name, in order of preference.
var nameHeaders = []string{"x-github-event", "x-gitlab-event", "x-gitea-event", "x-event-key", "x-shopify-topic"}

// eventName is the provider's name for the kind of event a webhook is,
// where a known header or body field says it: GitHub's X-GitHub-Event
// (and the like), Stripe's "type", Slack's event type, the "type" of a
// Standard Webhooks payload or else its webhook-id. "" when nothing says.
func eventName(headers []store.Header, body []byte) string {
	get := func(name string) string {
		for _, h := range headers {
			if strings.EqualFold(h.Name, name) {
				return h.Value
			}
		}
		return ""
	}
	for _, name := range nameHeaders {
		if v := get(name); v != "" {
			return v
		}
	}
	if len(body) > maxNameBody {
		return get("webhook-id")
	}
	mt, _, _ := mime.ParseMediaType(get("Content-Type"))
	var name string
	switch {
	case mt == "application/x-www-form-urlencoded":
		name = slackFormName(body)
	case strings.Contains(mt, "json") || (len(body) > 0 && body[0] == '{'):
		name = jsonEventName(body)
	}
	if name == "" {
		name = get("webhook-id")
	}
	return name
}

// jsonEventName reads the top-level "type" of a JSON object (Stripe,
// Standard Webhooks, Slack), preferring Slack's event.type inside an
// event_callback.
func jsonEventName(body []byte) string {
	var top struct {
		Type  json.RawMessage `json:"type"`
		Event json.RawMessage `json:"event"`
	}
	if json.Unmarshal(body, &top) != nil {
		return ""
	}
	typ := jsonString(top.Type)
	if typ == "event_callback" {
		var inner struct {
			Type json.RawMessage `json:"type"`
		}
		if json.Unmarshal(top.Event, &inner) == nil && jsonString(inner.Type) != "" {
			return jsonString(inner.Type)
		}
	}
	return typ
}

// slackFormName reads Slack's form posts: interactivity (payload=JSON with
// a type) and slash commands (command=/name).
func slackFormName(body []byte) string {
	vals, err := url.ParseQuery(string(body))
	if err != nil {
		return ""
	}
	if p := vals.Get("payload"); p != "" {
		return jsonEventName([]byte(p))
	}
	return vals.Get("command")
}

// jsonString is the value of a JSON string, or "" for anything else (and
// for strings too long to be a name).
func jsonString(raw json.RawMessage) string {
	var s string
	if len(raw) == 0 || json.Unmarshal(raw, &s) != nil || len(s) > 128 {
		return ""
	}
	return s
}
