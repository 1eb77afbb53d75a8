package postgres

import (
	"context"
	"embed"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hookrelay/hookrelay/server/store/internal/schema"
)

// The schema's history, one file per version (see package schema).
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrateLockKey is the advisory lock (one bigint key, a space apart from
// the two-int keys of channel locks) that serializes migrations. Hex for
// "hookrely".
const migrateLockKey = 0x686f6f6b72656c79

// migrate brings the schema to the newest embedded version in one
// transaction. Nodes starting together on a fresh database take turns on
// a transaction-scoped advisory lock of the schema: the first applies the
// migrations, the others wait for its commit and then find them applied.
// PostgreSQL runs DDL inside transactions, so a failed migration leaves
// nothing half done. A database whose schema is newer than this binary
// knows is refused, since this code would misread it.
func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	ms, err := schema.Load(migrationFiles, "migrations")
	if err != nil {
		return fmt.Errorf("load migrations: %w", err)
	}
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		// The key mixes in the schema, so stores in different schemas of
		// one database migrate independently.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1::bigint # hashtextextended(coalesce(current_schema(), ''), 0))`,
			int64(migrateLockKey)); err != nil {
			return fmt.Errorf("migrate: take the migration lock: %w", err)
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    integer PRIMARY KEY,
			name       text NOT NULL,
			applied_at timestamptz NOT NULL DEFAULT now()
		)`); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		var current int
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
			return fmt.Errorf("migrate: read schema version: %w", err)
		}
		if current > len(ms) {
			return fmt.Errorf("database schema version %d is newer than this hookrelay knows (%d): "+
				"run a newer hookrelay, or restore a backup made for this version", current, len(ms))
		}
		for _, m := range ms[current:] {
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return fmt.Errorf("migrate to %s: %w", m.Name, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`,
				m.Version, m.Name); err != nil {
				return fmt.Errorf("migrate to %s: %w", m.Name, err)
			}
		}
		return nil
	})
}
