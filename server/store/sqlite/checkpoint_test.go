package sqlite

import (
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/server/store"
)

// TestCheckpointerCopiesTheWAL writes 25 MiB and checks that the
// checkpoint goroutine ran checkpoints, and that the file, reopened after
// Close (which waits for that goroutine), holds every event in pages of
// defaultPageSize.
func TestCheckpointerCopiesTheWAL(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "hookrelay.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateChannel(ctx, store.Channel{ID: "c"}); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, 256<<10)
	const n = 100 // 1,600 pages of 16 KiB: the writer wakes the checkpointer once at least
	for i := range n {
		if err := s.AppendEvent(ctx, &store.Event{ID: fmt.Sprint("e", i), ChannelID: "c", Method: "POST", Path: "/", Body: body}); err != nil {
			t.Fatal(err)
		}
	}
	// The wake-up does not wait for the checkpoint: poll for it.
	for deadline := time.Now().Add(10 * time.Second); s.checkpoints.Load() == 0; {
		if time.Now().After(deadline) {
			t.Fatal("no checkpoint ran on the checkpoint goroutine")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var count, pageSize int
	if err := db.QueryRow(`SELECT count(*), (SELECT page_size FROM pragma_page_size()) FROM events`).Scan(&count, &pageSize); err != nil {
		t.Fatal(err)
	}
	if count != n || pageSize != defaultPageSize {
		t.Errorf("%d events in %d-byte pages, want %d in %d-byte pages", count, pageSize, n, defaultPageSize)
	}
}

// TestOlderFileKeepsItsPageSize opens a file made with 4 KiB pages: it
// keeps them, and MaxSize is counted in them.
func TestOlderFileKeepsItsPageSize(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "hookrelay.db")
	old, err := Open(path, Options{pageSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	s := openTest(t, path, Options{MaxSize: 8 << 20})
	var pageSize, maxPages int64
	err = s.write(ctx, 0, func(w *writeConn) error {
		return w.row(`SELECT (SELECT page_size FROM pragma_page_size()), (SELECT max_page_count FROM pragma_max_page_count())`).
			Scan(&pageSize, &maxPages)
	})
	if err != nil {
		t.Fatal(err)
	}
	if pageSize != 4096 || maxPages != (8<<20)/4096 {
		t.Errorf("page size %d, max_page_count %d; want 4096 and %d", pageSize, maxPages, (8<<20)/4096)
	}
}
