package cluster

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// migrations is the history of the cluster's tables, one statement list
// per version, applied in order and recorded in cluster_schema. They live
// next to the store's tables, in the connection's schema, but are this
// package's: the store knows nothing of them.
var migrations = []string{
	// 1: claims, answers, nodes and agents.
	`CREATE TABLE cluster_claims (
		group_id    bigint      NOT NULL,
		seq         bigint      NOT NULL,
		node        text        NOT NULL,
		lease_until timestamptz NOT NULL,
		done        boolean     NOT NULL DEFAULT false,
		created_at  timestamptz NOT NULL DEFAULT now(),
		PRIMARY KEY (group_id, seq)
	);
	CREATE INDEX cluster_claims_created ON cluster_claims (created_at);
	CREATE TABLE cluster_answers (
		event_id   text        PRIMARY KEY,
		to_node    text        NOT NULL,
		status     integer     NOT NULL,
		headers    bytea       NOT NULL,
		body       bytea       NOT NULL,
		err_code   text        NOT NULL,
		err_msg    text        NOT NULL,
		created_at timestamptz NOT NULL DEFAULT now()
	);
	CREATE INDEX cluster_answers_created ON cluster_answers (created_at);
	CREATE TABLE cluster_nodes (
		node       text        PRIMARY KEY,
		instance   text        NOT NULL,
		started_at timestamptz NOT NULL DEFAULT now(),
		last_seen  timestamptz NOT NULL DEFAULT now()
	);
	CREATE TABLE cluster_agents (
		session_id text        NOT NULL,
		channel_id text        NOT NULL,
		group_name text        NOT NULL,
		node       text        NOT NULL,
		info       jsonb       NOT NULL,
		since      timestamptz NOT NULL DEFAULT now(),
		PRIMARY KEY (session_id, channel_id, group_name)
	);
	CREATE INDEX cluster_agents_channel ON cluster_agents (channel_id);
	CREATE INDEX cluster_agents_node ON cluster_agents (node);`,
	// 2: the inspector's sign-in sessions, shared by every node.
	`CREATE TABLE cluster_sessions (
		key        text        PRIMARY KEY,
		token_hash text        NOT NULL,
		read_key   boolean     NOT NULL,
		channel_id text        NOT NULL,
		expires    timestamptz NOT NULL
	);
	CREATE INDEX cluster_sessions_expires ON cluster_sessions (expires);`,
}

// migrateLockKey serializes the cluster's migrations across nodes, mixed
// with the schema name as the store does. Hex for "hrcluster" cut to 8 bytes.
const migrateLockKey = 0x6872636c75737472

// migrate brings the cluster's tables to the newest version in one
// transaction under an advisory lock, so nodes starting together apply
// each version once.
func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1::bigint # hashtextextended(coalesce(current_schema(), ''), 0))`,
			int64(migrateLockKey)); err != nil {
			return fmt.Errorf("take the migration lock: %w", err)
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS cluster_schema (
			version    integer PRIMARY KEY,
			applied_at timestamptz NOT NULL DEFAULT now()
		)`); err != nil {
			return err
		}
		var current int
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM cluster_schema`).Scan(&current); err != nil {
			return fmt.Errorf("read the cluster schema version: %w", err)
		}
		if current > len(migrations) {
			return fmt.Errorf("cluster schema version %d is newer than this hookrelay knows (%d): run a newer hookrelay on every node", current, len(migrations))
		}
		for i := current; i < len(migrations); i++ {
			if _, err := tx.Exec(ctx, migrations[i]); err != nil {
				return fmt.Errorf("migrate the cluster tables to version %d: %w", i+1, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO cluster_schema (version) VALUES ($1)`, i+1); err != nil {
				return err
			}
		}
		return nil
	})
}
