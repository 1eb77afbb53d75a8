package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"time"

	"github.com/hookrelay/hookrelay/server/store/internal/schema"
)

// The schema's history, one file per version (see package schema).
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrate brings the database's schema to the newest embedded version, in
// one transaction. Applying is idempotent; a database whose schema is newer
// than this binary knows is refused, since this code would misread it.
//
// Foreign keys are off while the migrations run, so a migration can rebuild
// a table (create the new one, copy, drop the old, rename) without the drop
// cascading into the tables that reference it; they are checked before the
// commit. db's connections must come from newDriver (migrations call its
// functions).
func migrate(ctx context.Context, db *sql.DB) (err error) {
	ms, err := schema.Load(migrationFiles, "migrations")
	if err != nil {
		return fmt.Errorf("load migrations: %w", err)
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, conn.Close()) }()

	// Outside a transaction: inside one the pragma does nothing.
	if _, err := conn.ExecContext(ctx, "PRAGMA foreign_keys = OFF"); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer func() {
		if _, ferr := conn.ExecContext(context.Background(), "PRAGMA foreign_keys = ON"); ferr != nil {
			err = errors.Join(err, fmt.Errorf("migrate: turn foreign keys back on: %w", ferr))
		}
	}()

	// IMMEDIATE: two processes opening the same new file apply the
	// migrations one after the other, the second one finding them done.
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	committed := false
	defer func() {
		if !committed {
			if _, rerr := conn.ExecContext(context.Background(), "ROLLBACK"); rerr != nil {
				err = errors.Join(err, fmt.Errorf("roll back migration: %w", rerr))
			}
		}
	}()

	if _, err := conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER PRIMARY KEY,
		name       TEXT NOT NULL,
		applied_at INTEGER NOT NULL
	) STRICT`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	var current int
	if err := conn.QueryRowContext(ctx,
		"SELECT coalesce(max(version), 0) FROM schema_migrations").Scan(&current); err != nil {
		return fmt.Errorf("migrate: read schema version: %w", err)
	}
	if current > len(ms) {
		return fmt.Errorf("database schema version %d is newer than this hookrelay knows (%d): "+
			"run a newer hookrelay, or restore a backup made for this version", current, len(ms))
	}
	for _, m := range ms[current:] {
		if _, err := conn.ExecContext(ctx, m.SQL); err != nil {
			return fmt.Errorf("migrate to %s: %w", m.Name, err)
		}
		if _, err := conn.ExecContext(ctx,
			"INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
			m.Version, m.Name, time.Now().UnixMicro()); err != nil {
			return fmt.Errorf("migrate to %s: %w", m.Name, err)
		}
	}
	if err := checkForeignKeys(ctx, conn); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		return fmt.Errorf("migrate: commit: %w", err)
	}
	committed = true
	return nil
}

// checkForeignKeys fails when a row references one that does not exist.
func checkForeignKeys(ctx context.Context, conn *sql.Conn) error {
	rows, err := conn.QueryContext(ctx, "PRAGMA foreign_key_check")
	if err != nil {
		return err
	}
	defer rows.Close()
	if rows.Next() {
		var (
			table, parent string
			rowid         sql.NullInt64
			fkid          int
		)
		if err := rows.Scan(&table, &rowid, &parent, &fkid); err != nil {
			return err
		}
		return fmt.Errorf("row %d of %s references a missing row of %s", rowid.Int64, table, parent)
	}
	return rows.Err()
}
