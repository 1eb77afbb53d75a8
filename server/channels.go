package server

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/hookrelay/hookrelay/server/store"
	"github.com/hookrelay/hookrelay/server/verify"
)

// channelJSON is a channel as the API shows it.
type channelJSON struct {
	ID        string     `json:"id"`
	URL       string     `json:"url"`
	TeamID    string     `json:"team_id,omitempty"`
	Async     bool       `json:"async"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	Verify    string     `json:"verify,omitempty"`
	AllowCIDR []string   `json:"allow_cidrs,omitempty"`
	RateLimit float64    `json:"rate_limit,omitempty"`
	Agents    int        `json:"agents"`
	ReadKey   string     `json:"read_key,omitempty"`
}

func (r *Relay) channelView(c *gin.Context, ch store.Channel) channelJSON {
	v := channelJSON{
		ID: ch.ID, URL: r.ingressURL(c.Request, ch.ID), TeamID: ch.TeamID, Async: ch.Async,
		CreatedAt: ch.CreatedAt, Verify: ch.VerifyScheme, AllowCIDR: ch.AllowedCIDRs, RateLimit: ch.RateLimit,
		Agents: len(r.hub.sessionsOf(ch.ID)),
	}
	if !ch.ExpiresAt.IsZero() {
		t := ch.ExpiresAt
		v.ExpiresAt = &t
	}
	return v
}

var channelNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{2,63}$`)

type createChannelRequest struct {
	ID    string `json:"id"`    // optional name; random when empty
	Async bool   `json:"async"` // always answer 202
	TTL   string `json:"ttl"`   // e.g. "1h": deleted with its events after that
	Team  string `json:"team"`  // owning team (relay admin only; team tokens create in their team)
}

// createChannel handles POST /api/v1/channels.
func (r *Relay) createChannel(c *gin.Context) {
	p, authed := c.Get(principalKey)
	if !authed && !r.cfg.AllowAnonymous {
		abortJSON(c, http.StatusUnauthorized, "unauthorized", errNoToken.Error())
		return
	}
	pr, _ := p.(principal)
	if authed && pr.Role != store.RoleAdmin && pr.Role != store.RoleMember {
		abortJSON(c, http.StatusForbidden, "forbidden", "only admin and member tokens can create channels")
		return
	}
	var in createChannelRequest
	if c.Request.ContentLength != 0 {
		if err := c.ShouldBindJSON(&in); err != nil {
			abortJSON(c, http.StatusBadRequest, "bad_request", "body must be JSON like {\"id\":\"my-channel\",\"async\":false,\"ttl\":\"1h\"}: "+err.Error())
			return
		}
	}
	ch := store.Channel{ID: in.ID, TeamID: pr.TeamID, Async: in.Async, CreatedAt: time.Now().UTC()}
	if in.Team != "" {
		team, ok := r.resolveTeam(c, in.Team)
		if !ok {
			return
		}
		if !pr.isAdmin() && team.ID != pr.TeamID {
			abortJSON(c, http.StatusNotFound, "team_not_found", fmt.Sprintf("team %q does not exist", in.Team))
			return
		}
		ch.TeamID = team.ID
	}
	if ch.TeamID != "" && r.cfg.MaxChannelsPerTeam > 0 {
		existing, err := r.store.ListChannels(c.Request.Context(), ch.TeamID)
		if err != nil {
			r.storeFailed(c, err)
			return
		}
		if len(existing) >= r.cfg.MaxChannelsPerTeam {
			abortJSON(c, http.StatusTooManyRequests, "limit_exceeded",
				fmt.Sprintf("the team has %d channels, the relay's max_channels_per_team; delete one first", len(existing)))
			return
		}
	}
	if ch.ID == "" {
		ch.ID = NewChannelID()
	} else if !channelNameRE.MatchString(ch.ID) {
		abortJSON(c, http.StatusBadRequest, "bad_request", "channel id must be 3-64 characters of a-z, 0-9, - and _, starting with a letter or digit")
		return
	}
	if in.TTL != "" {
		ttl, err := time.ParseDuration(in.TTL)
		if err != nil || ttl <= 0 {
			abortJSON(c, http.StatusBadRequest, "bad_request", fmt.Sprintf("ttl %q is not a positive duration like 30m or 1h", in.TTL))
			return
		}
		ch.ExpiresAt = ch.CreatedAt.Add(ttl)
	}
	if !authed {
		// Anonymous channels expire, at the latest after the relay's
		// anonymous TTL, and each address may create only so many.
		if limit := ch.CreatedAt.Add(r.cfg.AnonymousChannelTTL); ch.ExpiresAt.IsZero() || ch.ExpiresAt.After(limit) {
			ch.ExpiresAt = limit
		}
		if !r.admitAnonymous(c) {
			return
		}
	}
	readKey := newReadKey(ch.ID)
	ch.ReadKeyHash = hashToken(readKey)
	if err := r.store.CreateChannel(c.Request.Context(), ch); err != nil {
		if errors.Is(err, store.ErrConflict) {
			abortJSON(c, http.StatusConflict, "channel_exists", fmt.Sprintf("channel %q already exists", ch.ID))
			return
		}
		r.storeFailed(c, err)
		return
	}
	r.channels.forget(ch.ID) // ingress may remember it did not exist
	v := r.channelView(c, ch)
	v.ReadKey = readKey // shown once; only its hash is kept
	c.JSON(http.StatusCreated, v)
}

// listChannels handles GET /api/v1/channels: the caller's team's channels (all for admin).
func (r *Relay) listChannels(c *gin.Context) {
	p := principalOf(c)
	var chans []store.Channel
	var err error
	switch {
	case p.isAdmin():
		chans, err = r.store.ListChannels(c.Request.Context(), "*")
	case p.Role == roleReader:
		var ch store.Channel
		if ch, err = r.store.GetChannel(c.Request.Context(), p.ChannelID); err == nil {
			chans = []store.Channel{ch}
		}
	default:
		chans, err = r.store.ListChannels(c.Request.Context(), p.TeamID)
	}
	if err != nil {
		r.storeFailed(c, err)
		return
	}
	out := make([]channelJSON, 0, len(chans))
	for _, ch := range chans {
		out = append(out, r.channelView(c, ch))
	}
	r.countAgentsElsewhere(c.Request.Context(), out)
	c.JSON(http.StatusOK, gin.H{"channels": out})
}

// channelFor loads the channel named in the route and checks access. It
// answers 404 for channels of other teams, so ids do not leak.
func (r *Relay) channelFor(c *gin.Context, param string) (store.Channel, bool) {
	id := c.Param(param)
	ch, err := r.store.GetChannel(c.Request.Context(), id)
	if err == nil && !principalOf(c).canAccess(ch) {
		err = store.ErrNotFound
	}
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			abortJSON(c, http.StatusNotFound, "channel_not_found", fmt.Sprintf("channel %q does not exist", id))
		} else {
			r.storeFailed(c, err)
		}
		return store.Channel{}, false
	}
	return ch, true
}

// managedChannel is channelFor for a change to the channel (or a read of
// its secrets): it answers 403 with forbidden when the caller may read the
// channel but not manage it.
func (r *Relay) managedChannel(c *gin.Context, forbidden string) (store.Channel, bool) {
	ch, ok := r.channelFor(c, "id")
	if ok && !principalOf(c).canManage(ch) {
		abortJSON(c, http.StatusForbidden, "forbidden", forbidden)
		return store.Channel{}, false
	}
	return ch, ok
}

func (r *Relay) getChannel(c *gin.Context) {
	if ch, ok := r.channelFor(c, "id"); ok {
		v := []channelJSON{r.channelView(c, ch)}
		r.countAgentsElsewhere(c.Request.Context(), v)
		c.JSON(http.StatusOK, v[0])
	}
}

type updateChannelRequest struct {
	Async      *bool     `json:"async"`
	Verify     *string   `json:"verify"`      // github|stripe|slack|standard-webhooks|hmac, or "" / "none" to stop verifying
	Secret     *string   `json:"secret"`      // the provider's signing secret
	Header     *string   `json:"header"`      // for hmac: the header carrying the signature
	AllowCIDRs *[]string `json:"allow_cidrs"` // source ranges allowed to post; [] for any
	RateLimit  *float64  `json:"rate_limit"`  // webhooks per second; 0: the relay default
}

// updateChannel handles PATCH /api/v1/channels/:id.
func (r *Relay) updateChannel(c *gin.Context) {
	ch, ok := r.managedChannel(c, "agent tokens cannot change channels")
	if !ok {
		return
	}
	var in updateChannelRequest
	if err := c.ShouldBindJSON(&in); err != nil {
		abortJSON(c, http.StatusBadRequest, "bad_request", "body must be JSON: "+err.Error())
		return
	}
	if in.Async != nil {
		ch.Async = *in.Async
	}
	if in.Verify != nil {
		ch.VerifyScheme = *in.Verify
		if ch.VerifyScheme == "none" {
			ch.VerifyScheme = ""
		}
		if ch.VerifyScheme == "" {
			ch.VerifySecret, ch.VerifyHeader = "", ""
		}
	}
	if in.Secret != nil {
		ch.VerifySecret = *in.Secret
	}
	if in.Header != nil {
		ch.VerifyHeader = *in.Header
	}
	if ch.VerifyScheme != "" {
		cfg := verify.Config{Scheme: ch.VerifyScheme, Secret: ch.VerifySecret, Header: ch.VerifyHeader}
		if err := cfg.Validate(); err != nil {
			abortJSON(c, http.StatusBadRequest, "bad_request", fmt.Sprintf("verify: %v (schemes: %s)", err, strings.Join(verify.Schemes(), ", ")))
			return
		}
	}
	if in.AllowCIDRs != nil {
		if _, err := verify.ParseCIDRs(*in.AllowCIDRs); err != nil {
			abortJSON(c, http.StatusBadRequest, "bad_request", "allow_cidrs: "+err.Error())
			return
		}
		ch.AllowedCIDRs = *in.AllowCIDRs
	}
	if in.RateLimit != nil {
		if *in.RateLimit < 0 {
			abortJSON(c, http.StatusBadRequest, "bad_request", "rate_limit must be 0 (relay default) or more")
			return
		}
		ch.RateLimit = *in.RateLimit
	}
	if err := r.store.UpdateChannel(c.Request.Context(), ch); err != nil {
		r.storeFailed(c, err)
		return
	}
	r.channels.forget(ch.ID)
	c.JSON(http.StatusOK, r.channelView(c, ch))
}

// deleteChannel handles DELETE /api/v1/channels/:id: the channel, its
// events and groups go, and its agents are disconnected.
func (r *Relay) deleteChannel(c *gin.Context) {
	ch, ok := r.managedChannel(c, "agent tokens cannot delete channels")
	if !ok {
		return
	}
	if err := r.store.DeleteChannel(c.Request.Context(), ch.ID); err != nil {
		r.storeFailed(c, err)
		return
	}
	r.limiters.forget(ch.ID)
	r.channels.forget(ch.ID)
	r.hub.endChannel(ch.ID, "channel_deleted", fmt.Sprintf("channel %q was deleted", ch.ID))
	c.Status(http.StatusNoContent)
}

// rotateReadKey handles POST /api/v1/channels/:id/read-key: the channel
// gets a new read key, shown once; the old one stops working at once, and
// the tunnels, live streams and long-polls opened with it end.
func (r *Relay) rotateReadKey(c *gin.Context) {
	ch, ok := r.managedChannel(c, "only admin and member tokens can replace a channel's read key")
	if !ok {
		return
	}
	readKey := newReadKey(ch.ID)
	ch.ReadKeyHash = hashToken(readKey)
	if err := r.store.UpdateChannel(c.Request.Context(), ch); err != nil {
		r.storeFailed(c, err)
		return
	}
	r.channels.forget(ch.ID)
	r.hub.endAccess(readKeyTokenID(ch.ID), "the channel's read key was replaced")
	v := r.channelView(c, ch)
	v.ReadKey = readKey // shown once; only its hash is kept
	c.JSON(http.StatusOK, v)
}

// channelAgents handles GET /api/v1/channels/:id/agents.
func (r *Relay) channelAgents(c *gin.Context) {
	ch, ok := r.channelFor(c, "id")
	if !ok {
		return
	}
	agents, partial := r.channelAgentList(c.Request.Context(), ch.ID)
	resp := gin.H{"agents": agents}
	if partial {
		resp["partial"] = true // other nodes' agents could not be read
	}
	c.JSON(http.StatusOK, resp)
}
