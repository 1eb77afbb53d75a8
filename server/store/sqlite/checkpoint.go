package sqlite

import (
	"database/sql"
	"log/slog"
	"time"
)

// Checkpoints off the writer's path.
//
// SQLite copies the WAL back into the database file at a checkpoint. Left
// to itself (wal_autocheckpoint), it does so inside the commit that takes
// the WAL past 1,000 pages: the writer goroutine then copies the pages and
// fsyncs the database file before it can settle its batch, and every
// webhook queued behind it waits. With 1 MiB bodies that was about a third
// of the writer's time (a checkpoint every four events).
//
// So the store runs its checkpoints on a goroutine of its own, with a
// connection of its own: after a commit, the writer wakes it (without
// waiting), and it runs a PASSIVE checkpoint, which copies what is
// committed without blocking the writer or readers, at most once per
// checkpointInterval. The writer restarts the WAL from its beginning at its
// next transaction once everything is copied, so the file stays small.
// The writer's own automatic checkpoint stays on with a higher threshold
// (walBackstopPages) for when this goroutine falls behind.

const (
	// checkpointInterval is the least time between two checkpoints.
	checkpointInterval = 50 * time.Millisecond
	// walBackstopPages is the writer's wal_autocheckpoint: 64 MiB of 16 KiB pages.
	walBackstopPages = 4096
)

// runCheckpointer is the checkpoint goroutine, started by Open and ended by
// Close (it returns when quit is closed).
func (s *Store) runCheckpointer(db *sql.DB) {
	defer close(s.checkpointerDone)
	for {
		select {
		case <-s.checkpointWake:
		case <-s.quit:
			return
		}
		var busy, logFrames, copied int
		if err := db.QueryRow(`PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &logFrames, &copied); err != nil {
			// A failed checkpoint loses nothing (the WAL keeps every
			// commit); the next wake-up, or the writer's backstop, tries again.
			slog.Warn("sqlite checkpoint failed", "path", s.path, "err", err)
		}
		s.checkpoints.Add(1)
		select {
		case <-time.After(checkpointInterval):
		case <-s.quit:
			return
		}
	}
}

// wakeCheckpointer tells the checkpoint goroutine that a batch committed.
// It never blocks.
func (s *Store) wakeCheckpointer() {
	select {
	case s.checkpointWake <- struct{}{}:
	default:
	}
}
