package sqlite

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/hookrelay/hookrelay/server/store"
)

// TestWALBytesPerDelivery measures the WAL bytes that recording the first
// delivery of a 1 MiB event writes, and fails when a delivery rewrites the
// body: with the delivery summary in the row holding the body, SQLite
// rewrote that row with its overflow pages, about 1 MiB of WAL per delivery
// (and as much again at the checkpoint). Run with -v to see the figure.
func TestWALBytesPerDelivery(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "hookrelay.db")
	s := openTest(t, path, Options{noCheckpointer: true})
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	// No checkpoint resets the WAL while measuring: its size only grows.
	must(s.write(ctx, 0, func(w *writeConn) error { _, err := w.exec("PRAGMA wal_autocheckpoint = 0"); return err }))
	must(s.CreateChannel(ctx, store.Channel{ID: "c"}))
	g, err := s.EnsureGroup(ctx, "c", "g", store.FromResume)
	must(err)
	body := make([]byte, 1<<20)
	for i := range body {
		body[i] = byte(i * 7)
	}
	walSize := func() int64 {
		fi, err := os.Stat(path + "-wal")
		must(err)
		return fi.Size()
	}
	const n = 10
	var total int64
	for i := range n {
		id := fmt.Sprint("e", i)
		must(s.AppendEvent(ctx, &store.Event{ID: id, ChannelID: "c", Method: "POST", Path: "/", Body: body}))
		before := walSize()
		must(s.RecordProgress(ctx, store.Progress{GroupID: g.ID, Deliveries: []store.Delivery{{
			ID: fmt.Sprint("d", i), EventID: id, Attempt: 1, Status: 200, ResponseBody: []byte("ok"), Done: true}}}))
		total += walSize() - before
	}
	per := total / n
	t.Logf("WAL bytes per delivery of a 1 MiB event: %d (%.3f MiB)", per, float64(per)/(1<<20))
	// A few 16 KiB pages (the delivery's row, its indexes, the status and
	// the group) are expected; a rewritten body is about 1 MiB.
	if per > 256<<10 {
		t.Errorf("recording a delivery wrote %d bytes of WAL: the body was rewritten", per)
	}
}
