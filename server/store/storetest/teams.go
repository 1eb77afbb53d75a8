package storetest

import (
	"slices"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/server/store"
)

func testTeams(t *testing.T, s store.Store) {
	ctx := t.Context()
	for _, tm := range []store.Team{
		{ID: "t2", Name: "zeta", CreatedAt: baseTime()},
		{ID: "t1", Name: "alpha", CreatedAt: baseTime().Add(time.Second)},
	} {
		must(t, "create team "+tm.Name, s.CreateTeam(ctx, tm))
	}
	wantErr(t, "create a taken id", s.CreateTeam(ctx, store.Team{ID: "t1", Name: "other"}), store.ErrConflict)
	wantErr(t, "create a taken name", s.CreateTeam(ctx, store.Team{ID: "t3", Name: "alpha"}), store.ErrConflict)

	tm, err := s.GetTeam(ctx, "t1")
	must(t, "get team", err)
	if tm.ID != "t1" || tm.Name != "alpha" || !tm.CreatedAt.Equal(baseTime().Add(time.Second)) {
		t.Errorf("GetTeam = %+v", tm)
	}
	tm, err = s.TeamByName(ctx, "zeta")
	must(t, "team by name", err)
	if tm.ID != "t2" {
		t.Errorf("TeamByName(zeta) = %+v", tm)
	}
	_, err = s.GetTeam(ctx, "missing")
	wantErr(t, "get a missing team", err, store.ErrNotFound)
	_, err = s.TeamByName(ctx, "missing")
	wantErr(t, "find a missing team", err, store.ErrNotFound)

	ts, err := s.ListTeams(ctx)
	must(t, "list teams", err)
	var names []string
	for _, tm := range ts {
		names = append(names, tm.Name)
	}
	if !slices.Equal(names, []string{"alpha", "zeta"}) {
		t.Errorf("ListTeams = %q, want alpha, zeta (by name)", names)
	}
}

func tokensEqual(a, b store.Token) bool {
	if !a.CreatedAt.Equal(b.CreatedAt) || !a.ExpiresAt.Equal(b.ExpiresAt) || !a.LastUsedAt.Equal(b.LastUsedAt) {
		return false
	}
	a.CreatedAt, a.ExpiresAt, a.LastUsedAt = time.Time{}, time.Time{}, time.Time{}
	b.CreatedAt, b.ExpiresAt, b.LastUsedAt = time.Time{}, time.Time{}, time.Time{}
	return a == b
}

func testTokens(t *testing.T, s store.Store) {
	ctx := t.Context()
	admin := store.Token{ID: "tok-admin", Role: store.RoleAdmin, Name: "first admin",
		Hash: "aaaa", CreatedAt: baseTime()}
	member := store.Token{ID: "tok-member", TeamID: "t1", Role: store.RoleMember, Name: "alice",
		Hash: "bbbb", CreatedAt: baseTime().Add(time.Second), ExpiresAt: baseTime().Add(24 * time.Hour)}
	agent := store.Token{ID: "tok-agent", TeamID: "t1", Role: store.RoleAgent, Name: "ci",
		Hash: "cccc", CreatedAt: baseTime().Add(2 * time.Second)}
	for _, tok := range []store.Token{agent, admin, member} {
		must(t, "create token "+tok.ID, s.CreateToken(ctx, tok))
	}
	wantErr(t, "create a taken id", s.CreateToken(ctx, store.Token{ID: "tok-admin", Hash: "dddd"}), store.ErrConflict)
	wantErr(t, "create a taken hash", s.CreateToken(ctx, store.Token{ID: "tok-x", Hash: "bbbb"}), store.ErrConflict)

	got, err := s.TokenByHash(ctx, "bbbb")
	must(t, "token by hash", err)
	if !tokensEqual(member, got) {
		t.Errorf("TokenByHash = %+v, want %+v", got, member)
	}
	got, err = s.GetToken(ctx, "tok-admin")
	must(t, "get token", err)
	if !tokensEqual(admin, got) {
		t.Errorf("GetToken = %+v, want %+v", got, admin)
	}
	_, err = s.TokenByHash(ctx, "ffff")
	wantErr(t, "find a missing hash", err, store.ErrNotFound)
	_, err = s.GetToken(ctx, "missing")
	wantErr(t, "get a missing token", err, store.ErrNotFound)

	for _, tc := range []struct {
		team string
		want []string
	}{
		{"t1", []string{"tok-member", "tok-agent"}},
		{"", []string{"tok-admin"}},
		{"*", []string{"tok-admin", "tok-member", "tok-agent"}},
		{"nobody", nil},
	} {
		ts, err := s.ListTokens(ctx, tc.team)
		must(t, "list tokens", err)
		var got []string
		for _, tok := range ts {
			got = append(got, tok.ID)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("ListTokens(%q) = %q, want %q (oldest first)", tc.team, got, tc.want)
		}
	}

	// Revoked tokens are still found; the caller checks Revoked.
	must(t, "revoke", s.RevokeToken(ctx, "tok-member"))
	got, err = s.TokenByHash(ctx, "bbbb")
	must(t, "token by hash after revoke", err)
	if !got.Revoked {
		t.Errorf("revoked token has Revoked = false")
	}
	got, err = s.GetToken(ctx, "tok-agent")
	must(t, "get token", err)
	if got.Revoked {
		t.Errorf("revoking one token revoked another")
	}
	wantErr(t, "revoke a missing token", s.RevokeToken(ctx, "missing"), store.ErrNotFound)

	used := baseTime().Add(time.Hour)
	must(t, "touch", s.TouchToken(ctx, "tok-agent", used))
	got, err = s.GetToken(ctx, "tok-agent")
	must(t, "get token", err)
	if !got.LastUsedAt.Equal(used) {
		t.Errorf("LastUsedAt = %v after TouchToken(%v)", got.LastUsedAt, used)
	}
	wantErr(t, "touch a missing token", s.TouchToken(ctx, "missing", used), store.ErrNotFound)
}
