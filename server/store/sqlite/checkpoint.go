package sqlite

import (
	"database/sql"
	"log/slog"
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
// connection of its own. The writer counts the pages its commits add to
// the WAL (an estimate: the payload's pages and a few for the rows and
// indexes of each batch) and wakes the goroutine, without waiting, every
// checkpointPages; the goroutine then runs a PASSIVE checkpoint, which
// copies what is committed without blocking the writer or readers. The
// writer restarts the WAL from its beginning at its next transaction once
// everything is copied, so the file stays small. The writer's own
// automatic checkpoint stays on with a higher threshold (walBackstopPages)
// for when the goroutine falls behind.

const (
	// checkpointPages is how many WAL pages wake the checkpoint goroutine:
	// the threshold of SQLite's automatic checkpoint.
	checkpointPages = 1000
	// batchPages is the estimate of the pages a batch writes besides its
	// payload: the rows and index entries of its jobs, on a few pages.
	batchPages = 8
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
	}
}

// committed counts a committed batch of payload bytes in the WAL and
// wakes the checkpoint goroutine, without blocking, once checkpointPages
// have gathered. Only the writer goroutine calls it.
func (s *Store) committed(payload int) {
	s.walPages += batchPages + payload/s.pageSize
	if s.walPages < checkpointPages {
		return
	}
	s.walPages = 0
	select {
	case s.checkpointWake <- struct{}{}:
	default:
	}
}
