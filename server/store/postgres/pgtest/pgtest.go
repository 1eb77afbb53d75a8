// Package pgtest gives tests a PostgreSQL database of their own on the
// server named by HOOKRELAY_TEST_POSTGRES. Several people and CI runs may
// use that server at once, so every test works in a fresh schema (or
// database) with a random name, dropped when the test ends.
//
//	func TestSomething(t *testing.T) {
//		url := pgtest.Schema(t) // skips when HOOKRELAY_TEST_POSTGRES is unset
//		s, err := postgres.Open(t.Context(), url, postgres.Options{})
//		...
//	}
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvVar names the variable holding the server's URL, e.g.
// postgres://postgres@127.0.0.1:5432/test?sslmode=disable.
const EnvVar = "HOOKRELAY_TEST_POSTGRES"

// ServerURL returns the URL in HOOKRELAY_TEST_POSTGRES, or skips the test
// when it is not set.
func ServerURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv(EnvVar)
	if u == "" {
		t.Skipf("%s is not set: no PostgreSQL to test against", EnvVar)
	}
	return u
}

// Schema creates a schema with a random name and returns a URL whose
// connections use it (search_path). The schema is dropped with everything
// in it when the test ends; register cleanups that close stores after
// calling Schema, so they run first.
func Schema(t testing.TB) string {
	t.Helper()
	server := ServerURL(t)
	name := "hookrelay_test_" + randomName()
	Exec(t, server, `CREATE SCHEMA `+name)
	t.Cleanup(func() { Exec(t, server, `DROP SCHEMA `+name+` CASCADE`) })
	return WithParam(t, server, "search_path", name)
}

// Database creates a database with a random name and returns its URL. The
// database is dropped when the test ends, its remaining connections
// terminated.
func Database(t testing.TB) string {
	t.Helper()
	server := ServerURL(t)
	name := "hookrelay_test_" + randomName()
	Exec(t, server, `CREATE DATABASE `+name)
	t.Cleanup(func() { Exec(t, server, `DROP DATABASE `+name+` WITH (FORCE)`) })
	u, err := url.Parse(server)
	if err != nil {
		t.Fatalf("%s: %v", EnvVar, err)
	}
	u.Path = "/" + name
	return u.String()
}

// WithParam returns the URL raw with one connection parameter set, such as
// application_name (to find a test's own connections in pg_stat_activity).
func WithParam(t testing.TB, raw, key, value string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Fatalf("%s must be a postgres:// URL, got %q", EnvVar, raw)
	}
	q := u.Query()
	q.Set(key, value)
	u.RawQuery = q.Encode()
	return u.String()
}

// Exec runs one statement on the server in a connection of its own, and
// fails the test on error.
func Exec(t testing.TB, url, sql string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect to %s: %v", EnvVar, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// randomName is 64 random bits in hex: a name no other test picks.
func randomName() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Terminate kills, with pg_terminate_backend, every connection to the
// server whose application_name is app (give the store under test a unique
// one with WithParam), and returns how many it killed.
func Terminate(t testing.TB, app string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, ServerURL(t))
	if err != nil {
		t.Fatalf("connect to %s: %v", EnvVar, err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))
		FROM pg_stat_activity WHERE application_name = $1`, app).Scan(&n); err != nil {
		t.Fatalf("terminate the connections of %s: %v", app, err)
	}
	return n
}

// AppName returns an application_name no other test uses.
func AppName() string { return "hookrelay_test_" + randomName() }
