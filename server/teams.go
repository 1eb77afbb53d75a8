package server

import (
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/hookrelay/hookrelay/server/store"
)

// NewToken returns a new secret: prefix and 256 random bits in base32.
func NewToken(prefix string) string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return prefix + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

var teamNameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9 ._-]{0,63}$`)

type teamJSON struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
}

// createTeam handles POST /api/v1/teams (relay admin only).
func (r *Relay) createTeam(c *gin.Context) {
	if !principalOf(c).isAdmin() {
		abortJSON(c, http.StatusForbidden, "forbidden", "only the relay's admin token can create teams")
		return
	}
	var in struct {
		Name string `json:"name"`
	}
	if err := c.ShouldBindJSON(&in); err != nil || !teamNameRE.MatchString(in.Name) {
		abortJSON(c, http.StatusBadRequest, "bad_request", `body must be JSON like {"name":"payments"}; names are 1-64 letters, digits, space, ., _ or -`)
		return
	}
	t := store.Team{ID: newID("tm_"), Name: in.Name, CreatedAt: time.Now().UTC()}
	if err := r.store.CreateTeam(c.Request.Context(), t); err != nil {
		if errors.Is(err, store.ErrConflict) {
			abortJSON(c, http.StatusConflict, "team_exists", fmt.Sprintf("a team named %q exists", in.Name))
			return
		}
		r.storeFailed(c, err)
		return
	}
	c.JSON(http.StatusCreated, teamJSON(t))
}

// listTeams handles GET /api/v1/teams: every team for the admin, else the caller's own.
func (r *Relay) listTeams(c *gin.Context) {
	p := principalOf(c)
	var teams []store.Team
	if p.isAdmin() {
		var err error
		if teams, err = r.store.ListTeams(c.Request.Context()); err != nil {
			r.storeFailed(c, err)
			return
		}
	} else if p.TeamID != "" {
		t, err := r.store.GetTeam(c.Request.Context(), p.TeamID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			r.storeFailed(c, err)
			return
		}
		if err == nil {
			teams = append(teams, t)
		}
	}
	out := make([]teamJSON, 0, len(teams))
	for _, t := range teams {
		out = append(out, teamJSON(t))
	}
	c.JSON(http.StatusOK, gin.H{"teams": out})
}

// resolveTeam finds a team by id or name.
func (r *Relay) resolveTeam(c *gin.Context, ref string) (store.Team, bool) {
	t, err := r.store.GetTeam(c.Request.Context(), ref)
	if errors.Is(err, store.ErrNotFound) {
		t, err = r.store.TeamByName(c.Request.Context(), ref)
	}
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			abortJSON(c, http.StatusNotFound, "team_not_found", fmt.Sprintf("team %q does not exist", ref))
		} else {
			r.storeFailed(c, err)
		}
		return store.Team{}, false
	}
	return t, true
}

type tokenJSON struct {
	ID         string     `json:"id"`
	Token      string     `json:"token,omitempty"` // only when created
	TeamID     string     `json:"team_id"`
	Role       store.Role `json:"role"`
	Name       string     `json:"name,omitempty"`
	CreatedAt  time.Time  `json:"created_at"`
	ExpiresAt  *time.Time `json:"expires_at,omitempty"`
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
	Revoked    bool       `json:"revoked"`
}

func tokenView(t store.Token) tokenJSON {
	v := tokenJSON{ID: t.ID, TeamID: t.TeamID, Role: t.Role, Name: t.Name, CreatedAt: t.CreatedAt, Revoked: t.Revoked}
	if !t.ExpiresAt.IsZero() {
		e := t.ExpiresAt
		v.ExpiresAt = &e
	}
	if !t.LastUsedAt.IsZero() {
		u := t.LastUsedAt
		v.LastUsedAt = &u
	}
	return v
}

// canManageTeam: the relay admin, or an admin token of that team.
func (p principal) canManageTeam(teamID string) bool {
	return p.isAdmin() || (p.Role == store.RoleAdmin && p.TeamID == teamID)
}

// createToken handles POST /api/v1/tokens. The secret is in the answer
// once; only its hash is stored.
func (r *Relay) createToken(c *gin.Context) {
	var in struct {
		Team    string `json:"team"`
		Role    string `json:"role"`
		Name    string `json:"name"`
		Expires string `json:"expires"` // a duration like 720h
	}
	if err := c.ShouldBindJSON(&in); err != nil {
		abortJSON(c, http.StatusBadRequest, "bad_request", `body must be JSON like {"team":"payments","role":"member","expires":"720h"}`)
		return
	}
	p := principalOf(c)
	if in.Team == "" {
		in.Team = p.TeamID
	}
	if in.Team == "" {
		abortJSON(c, http.StatusBadRequest, "bad_request", "name the team the token is for (--team)")
		return
	}
	team, ok := r.resolveTeam(c, in.Team)
	if !ok {
		return
	}
	if !p.canManageTeam(team.ID) {
		abortJSON(c, http.StatusNotFound, "team_not_found", fmt.Sprintf("team %q does not exist", in.Team))
		return
	}
	role := store.Role(in.Role)
	if role == "" {
		role = store.RoleMember
	}
	if role != store.RoleAdmin && role != store.RoleMember && role != store.RoleAgent {
		abortJSON(c, http.StatusBadRequest, "bad_request", "role must be admin, member or agent")
		return
	}
	secret := NewToken("hr_")
	t := store.Token{ID: newID("tok_"), TeamID: team.ID, Role: role, Name: in.Name, Hash: hashToken(secret), CreatedAt: time.Now().UTC()}
	if in.Expires != "" {
		d, err := time.ParseDuration(in.Expires)
		if err != nil || d <= 0 {
			abortJSON(c, http.StatusBadRequest, "bad_request", fmt.Sprintf("expires %q is not a positive duration like 720h", in.Expires))
			return
		}
		t.ExpiresAt = t.CreatedAt.Add(d)
	}
	if err := r.store.CreateToken(c.Request.Context(), t); err != nil {
		r.storeFailed(c, err)
		return
	}
	v := tokenView(t)
	v.Token = secret
	c.JSON(http.StatusCreated, v)
}

// listTokens handles GET /api/v1/tokens (relay admin: all; team admin: the team's).
func (r *Relay) listTokens(c *gin.Context) {
	p := principalOf(c)
	team := c.Query("team")
	switch {
	case p.isAdmin() && team == "":
		team = "*"
	case p.isAdmin():
		t, ok := r.resolveTeam(c, team)
		if !ok {
			return
		}
		team = t.ID
	case p.Role == store.RoleAdmin:
		team = p.TeamID
	default:
		abortJSON(c, http.StatusForbidden, "forbidden", "only admin tokens can list tokens")
		return
	}
	toks, err := r.store.ListTokens(c.Request.Context(), team)
	if err != nil {
		r.storeFailed(c, err)
		return
	}
	out := make([]tokenJSON, 0, len(toks))
	for _, t := range toks {
		out = append(out, tokenView(t))
	}
	c.JSON(http.StatusOK, gin.H{"tokens": out})
}

// revokeToken handles DELETE /api/v1/tokens/:id and ends what the token
// holds open: tunnels, live streams and long-polls.
func (r *Relay) revokeToken(c *gin.Context) {
	p := principalOf(c)
	id := c.Param("id")
	t, err := r.store.GetToken(c.Request.Context(), id)
	if err == nil && !p.canManageTeam(t.TeamID) {
		err = store.ErrNotFound
	}
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			abortJSON(c, http.StatusNotFound, "token_not_found", fmt.Sprintf("token %q does not exist", id))
		} else {
			r.storeFailed(c, err)
		}
		return
	}
	if err := r.store.RevokeToken(c.Request.Context(), id); err != nil {
		r.storeFailed(c, err)
		return
	}
	closed := r.hub.endAccess(id, "the token was revoked")
	c.JSON(http.StatusOK, gin.H{"id": id, "revoked": true, "tunnels_closed": closed})
}
