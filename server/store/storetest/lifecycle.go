package storetest

import (
	"context"
	"testing"

	"github.com/hookrelay/hookrelay/server/store"
)

func testPing(t *testing.T, s store.Store) {
	must(t, "ping", s.Ping(t.Context()))
	mustChannel(t, s, "c")
	must(t, "ping after a write", s.Ping(t.Context()))
}

// testClose checks that every method fails with store.ErrUnavailable once
// the store is closed.
func testClose(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustChannel(t, s, "c")
	e := newEvent("c", "e")
	mustAppend(t, s, e)
	g, err := s.EnsureGroup(ctx, "c", "g", store.FromResume)
	must(t, "ensure", err)
	must(t, "close", s.Close())

	calls := map[string]func(ctx context.Context) error{
		"CreateChannel": func(ctx context.Context) error { return s.CreateChannel(ctx, store.Channel{ID: "x"}) },
		"GetChannel":    func(ctx context.Context) error { _, err := s.GetChannel(ctx, "c"); return err },
		"UpdateChannel": func(ctx context.Context) error { return s.UpdateChannel(ctx, store.Channel{ID: "c"}) },
		"ListChannels":  func(ctx context.Context) error { _, err := s.ListChannels(ctx, "*"); return err },
		"DeleteChannel": func(ctx context.Context) error { return s.DeleteChannel(ctx, "c") },
		"AppendEvent":   func(ctx context.Context) error { return s.AppendEvent(ctx, newEvent("c", "e2")) },
		"GetEvent":      func(ctx context.Context) error { _, err := s.GetEvent(ctx, "e"); return err },
		"ListEvents": func(ctx context.Context) error {
			_, err := s.ListEvents(ctx, store.EventQuery{ChannelID: "c"})
			return err
		},
		"MaxSeq": func(ctx context.Context) error { _, err := s.MaxSeq(ctx); return err },
		"EnsureGroup": func(ctx context.Context) error {
			_, err := s.EnsureGroup(ctx, "c", "g", store.FromResume)
			return err
		},
		"ListGroups": func(ctx context.Context) error { _, err := s.ListGroups(ctx, "c"); return err },
		"StartAppend": func(ctx context.Context) error {
			_, err := s.StartAppend(ctx, newEvent("c", "e3"))
			return err
		},
		"Pending": func(ctx context.Context) error { _, err := pendingEvents(ctx, s, g.ID, 0, 10); return err },
		"RecordProgress": func(ctx context.Context) error {
			return recordOne(ctx, s, store.Delivery{ID: "d", EventID: "e", GroupID: g.ID, Status: 200})
		},
		"Deliveries":  func(ctx context.Context) error { _, err := s.Deliveries(ctx, "e"); return err },
		"CreateTeam":  func(ctx context.Context) error { return s.CreateTeam(ctx, store.Team{ID: "t", Name: "t"}) },
		"GetTeam":     func(ctx context.Context) error { _, err := s.GetTeam(ctx, "t"); return err },
		"TeamByName":  func(ctx context.Context) error { _, err := s.TeamByName(ctx, "t"); return err },
		"ListTeams":   func(ctx context.Context) error { _, err := s.ListTeams(ctx); return err },
		"CreateToken": func(ctx context.Context) error { return s.CreateToken(ctx, store.Token{ID: "k", Hash: "h"}) },
		"TokenByHash": func(ctx context.Context) error { _, err := s.TokenByHash(ctx, "h"); return err },
		"GetToken":    func(ctx context.Context) error { _, err := s.GetToken(ctx, "k"); return err },
		"ListTokens":  func(ctx context.Context) error { _, err := s.ListTokens(ctx, "*"); return err },
		"RevokeToken": func(ctx context.Context) error { return s.RevokeToken(ctx, "k") },
		"TouchToken":  func(ctx context.Context) error { return s.TouchToken(ctx, "k", baseTime()) },
		"Prune": func(ctx context.Context) error {
			_, err := s.Prune(ctx, store.PruneOptions{Now: baseTime(), EventsBefore: baseTime()})
			return err
		},
		"Ping": func(ctx context.Context) error { return s.Ping(ctx) },
	}
	for name, call := range calls {
		wantErr(t, name+" after Close", call(ctx), store.ErrUnavailable)
	}
	s.Close() // a second Close is harmless; its result is not part of the contract
}
