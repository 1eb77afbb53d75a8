package server

import (
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/hookrelay/hookrelay/server/store"
)

// principal is who a request acts as.
type principal struct {
	TokenID   string     // "admin" for the relay's admin token; "readkey:ID" for a read key
	TeamID    string     // "" for the relay admin and read keys
	Role      store.Role // admin, member, agent, or reader (read key)
	ChannelID string     // the one channel a read key opens
}

// roleReader is the role of a channel read key: read, replay and connect to
// that one channel.
const roleReader store.Role = "reader"

func (p principal) isAdmin() bool { return p.Role == store.RoleAdmin && p.TeamID == "" }

// canAccess reports whether p may see channel c: the relay admin sees
// everything, a team's tokens the team's channels, a read key its channel.
func (p principal) canAccess(c store.Channel) bool {
	switch {
	case p.isAdmin():
		return true
	case p.Role == roleReader:
		return p.ChannelID == c.ID
	default:
		return p.TeamID != "" && p.TeamID == c.TeamID
	}
}

// canManage reports whether p may change or delete channel c.
func (p principal) canManage(c store.Channel) bool {
	return p.canAccess(c) && (p.Role == store.RoleAdmin || p.Role == store.RoleMember)
}

var (
	errNoToken  = errors.New("missing Authorization: Bearer TOKEN header")
	errBadToken = errors.New("the token was rejected; check --token or HOOKRELAY_TOKEN")
)

// bearer extracts the token from an Authorization header.
func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// authenticate resolves a bearer token to a principal. The admin token is
// compared in constant time on its hash; team tokens are found by the hash
// of the secret, so the secret itself is never compared or stored.
func (r *Relay) authenticate(req *http.Request) (principal, error) {
	token := bearer(req)
	if token == "" {
		return principal{}, errNoToken
	}
	return r.authenticateToken(req, token)
}

// authenticateToken resolves a token or read key (from a header or the
// inspector's session) to a principal.
func (r *Relay) authenticateToken(req *http.Request, token string) (principal, error) {
	return r.authenticateCredential(req, credentialOf(token))
}

// credential is what a token is checked by: the hex SHA-256 of the token
// (the admin token's, a team token's and a read key's hash alike), and for
// a read key the channel it names. The inspector's sessions keep this, not
// the token.
type credential struct {
	hash    string
	readKey bool
	channel string // a read key's
}

func credentialOf(token string) credential {
	c := credential{hash: hashToken(token)}
	if rest, ok := strings.CutPrefix(token, readKeyPrefix); ok {
		c.readKey = true
		if dot := strings.LastIndexByte(rest, '.'); dot > 0 {
			c.channel = rest[:dot]
		}
	}
	return c
}

// authenticateCredential resolves a credential to a principal.
func (r *Relay) authenticateCredential(req *http.Request, cred credential) (principal, error) {
	if cred.readKey {
		return r.authenticateReadKey(req, cred)
	}
	if r.adminTokenHash != nil && subtle.ConstantTimeCompare([]byte(cred.hash), []byte(hex.EncodeToString(r.adminTokenHash))) == 1 {
		return principal{TokenID: "admin", Role: store.RoleAdmin}, nil
	}
	t, err := r.store.TokenByHash(req.Context(), cred.hash)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return principal{}, errBadToken
		}
		return principal{}, err
	}
	// The lookup is by hash; compare again in constant time so timing does
	// not depend on how the index matched.
	if subtle.ConstantTimeCompare([]byte(t.Hash), []byte(cred.hash)) != 1 {
		return principal{}, errBadToken
	}
	now := time.Now()
	if t.Revoked || (!t.ExpiresAt.IsZero() && now.After(t.ExpiresAt)) {
		return principal{}, errBadToken
	}
	if now.Sub(t.LastUsedAt) > time.Minute {
		if err := r.store.TouchToken(req.Context(), t.ID, now); err != nil {
			r.log.Warn("record token use", "token", t.ID, "err", err)
		}
	}
	return principal{TokenID: t.ID, TeamID: t.TeamID, Role: t.Role}, nil
}

// readKeyPrefix starts every channel read key: "rk_" + channel id + "." + secret.
const readKeyPrefix = "rk_"

func newReadKey(channelID string) string {
	return NewToken(readKeyPrefix + channelID + ".")
}

// authenticateReadKey checks a channel read key against its channel's hash.
func (r *Relay) authenticateReadKey(req *http.Request, cred credential) (principal, error) {
	if cred.channel == "" {
		return principal{}, errBadToken
	}
	ch, err := r.store.GetChannel(req.Context(), cred.channel)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return principal{}, errBadToken
		}
		return principal{}, err
	}
	if ch.ReadKeyHash == "" || subtle.ConstantTimeCompare([]byte(ch.ReadKeyHash), []byte(cred.hash)) != 1 {
		return principal{}, errBadToken
	}
	return principal{TokenID: readKeyTokenID(ch.ID), Role: roleReader, ChannelID: ch.ID}, nil
}

// readKeyTokenID is the principal.TokenID of a channel's read key.
func readKeyTokenID(channelID string) string { return "readkey:" + channelID }

// optionalAuth authenticates when a token is given and lets anonymous
// requests through (for --allow-anonymous channel creation).
func (r *Relay) optionalAuth(c *gin.Context) {
	if bearer(c.Request) == "" {
		c.Next()
		return
	}
	r.requireAuth(c)
}

// requireAuth is gin middleware for /api and /tunnel.
func (r *Relay) requireAuth(c *gin.Context) {
	p, err := r.authenticate(c.Request)
	if err != nil {
		if errors.Is(err, errNoToken) || errors.Is(err, errBadToken) {
			abortJSON(c, http.StatusUnauthorized, "unauthorized", err.Error())
			return
		}
		abortJSON(c, http.StatusServiceUnavailable, "store_unavailable", "cannot check the token now: "+err.Error())
		return
	}
	c.Set(principalKey, p)
	c.Next()
}

const principalKey = "hookrelay.principal"

func principalOf(c *gin.Context) principal {
	p, _ := c.Get(principalKey)
	pr, _ := p.(principal)
	return pr
}

// abortJSON answers with the project's error shape {"error", "code"}.
func abortJSON(c *gin.Context, status int, code, msg string) {
	c.AbortWithStatusJSON(status, gin.H{"error": msg, "code": code})
}
