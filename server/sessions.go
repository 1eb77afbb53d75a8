package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"sync"
	"time"

	"github.com/hookrelay/hookrelay/server/cluster"
)

// The inspector's sign-in sessions. A session is a random cookie value
// mapped to the credential (the token's hash, see credential) it was
// opened with and an expiry. A relay alone keeps them in memory; relays
// sharing a PostgreSQL database keep them in it (cluster.Sessions), so a
// browser that the load balancer sends to another node stays signed in,
// and signing out on one node ends the session on all.
//
// Stored rather than a signed cookie that every node could check with the
// relay's secret: a cookie that carries its own validity cannot be ended
// before it expires, and signing out must end it everywhere at once. A
// stored session costs one lookup by key per request, next to the token
// lookup that authenticates it anyway.

// uiSession is a live session.
type uiSession struct {
	cred    credential
	expires time.Time
}

// sessionKeeper holds sessions; newSessionKeeper picks where.
type sessionKeeper interface {
	create(ctx context.Context, cred credential, now time.Time) (cookie string, expires time.Time, err error)
	lookup(ctx context.Context, cookie string, now time.Time) (uiSession, bool, error)
	remove(ctx context.Context, cookie string) error
}

// newSessionKeeper keeps sessions in node when it can share them, else in
// memory.
func newSessionKeeper(node cluster.Node) sessionKeeper {
	if shared, ok := node.(cluster.Sessions); ok {
		return sharedSessions{shared}
	}
	return &memSessions{s: sessionStore{max: maxSessions, ttl: sessionTTL}}
}

// newCookie returns a new session's cookie value: 256 random bits.
func newCookie() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// sessionKey is what a cookie is looked up by: its SHA-256, so that the
// keys (in memory or in a database) reveal nothing about valid cookies.
func sessionKey(cookie string) string {
	sum := sha256.Sum256([]byte(cookie))
	return hex.EncodeToString(sum[:])
}

// sharedSessions keeps sessions in the database every node shares.
type sharedSessions struct{ db cluster.Sessions }

func (s sharedSessions) create(ctx context.Context, cred credential, now time.Time) (string, time.Time, error) {
	cookie := newCookie()
	expires := now.Add(sessionTTL)
	err := s.db.CreateSession(ctx, sessionKey(cookie), cluster.Session{
		TokenHash: cred.hash, ReadKey: cred.readKey, Channel: cred.channel, Expires: expires,
	})
	return cookie, expires, err
}

func (s sharedSessions) lookup(ctx context.Context, cookie string, now time.Time) (uiSession, bool, error) {
	sess, ok, err := s.db.LookupSession(ctx, sessionKey(cookie))
	if err != nil || !ok || now.After(sess.Expires) {
		return uiSession{}, false, err
	}
	return uiSession{cred: credential{hash: sess.TokenHash, readKey: sess.ReadKey, channel: sess.Channel}, expires: sess.Expires}, true, nil
}

func (s sharedSessions) remove(ctx context.Context, cookie string) error {
	return s.db.DeleteSession(ctx, sessionKey(cookie))
}

// memSessions keeps sessions in this process.
type memSessions struct{ s sessionStore }

func (m *memSessions) create(_ context.Context, cred credential, now time.Time) (string, time.Time, error) {
	cookie, expires := m.s.create(cred, now)
	return cookie, expires, nil
}

func (m *memSessions) lookup(_ context.Context, cookie string, now time.Time) (uiSession, bool, error) {
	sess, ok := m.s.lookup(cookie, now)
	return sess, ok, nil
}

func (m *memSessions) remove(_ context.Context, cookie string) error {
	m.s.remove(cookie)
	return nil
}

// sessionStore keeps sign-in sessions in memory, keyed by sessionKey.
// Sessions end at expiry, on sign-out, when their token stops
// authenticating, or when the relay restarts. At most max are kept: the
// ones closest to expiry make room for new ones.
type sessionStore struct {
	max int
	ttl time.Duration

	mu sync.Mutex
	m  map[string]uiSession
}

// create opens a session for cred and returns the cookie value.
func (s *sessionStore) create(cred credential, now time.Time) (string, time.Time) {
	id := newCookie()
	expires := now.Add(s.ttl)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = make(map[string]uiSession)
	}
	if len(s.m) >= s.max {
		for k, v := range s.m {
			if now.After(v.expires) {
				delete(s.m, k)
			}
		}
	}
	for len(s.m) >= s.max {
		oldest := ""
		for k, v := range s.m {
			if oldest == "" || v.expires.Before(s.m[oldest].expires) {
				oldest = k
			}
		}
		delete(s.m, oldest)
	}
	s.m[sessionKey(id)] = uiSession{cred: cred, expires: expires}
	return id, expires
}

// lookup returns a live session.
func (s *sessionStore) lookup(cookie string, now time.Time) (uiSession, bool) {
	key := sessionKey(cookie)
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.m[key]
	if ok && now.After(sess.expires) {
		delete(s.m, key)
		return uiSession{}, false
	}
	return sess, ok
}

func (s *sessionStore) remove(cookie string) {
	s.mu.Lock()
	delete(s.m, sessionKey(cookie))
	s.mu.Unlock()
}

func (s *sessionStore) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}
