package server

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/server/store"
	"github.com/hookrelay/hookrelay/server/store/memstore"
)

// slowCommitStore is a real store whose StartAppend first waits for its
// caller to give up, as a writer too busy to take the append before the
// sender stops waiting.
type slowCommitStore struct {
	store.Store
	entered chan struct{}
}

func (s *slowCommitStore) StartAppend(ctx context.Context, ev *store.Event) (*store.Commit, error) {
	s.entered <- struct{}{}
	<-ctx.Done()
	return s.Store.StartAppend(ctx, ev)
}

// syncBuffer is a log destination safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestSenderGoneBeforeCommitIsNoStoreFailure: a sender that disconnects
// while its webhook waits for the store to take it is logged at debug
// level, not as a store failure at error level.
func TestSenderGoneBeforeCommitIsNoStoreFailure(t *testing.T) {
	t.Parallel()
	mem := memstore.New(store.Limits{})
	if err := mem.CreateChannel(context.Background(), store.Channel{ID: "slow-commit"}); err != nil {
		t.Fatal(err)
	}
	st := &slowCommitStore{Store: mem, entered: make(chan struct{}, 1)}
	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	_, base := serveRelay(t, Config{Store: st, Logger: logger})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, "POST", base+"/h/slow-commit/x", strings.NewReader("x"))
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	<-st.entered
	cancel()
	if err := <-done; err == nil {
		t.Fatal("the request was answered although its sender left")
	}
	// The handler logs once the store call returns: poll for either line.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if out := logs.String(); strings.Contains(out, "went away") || strings.Contains(out, "store failure") {
			break
		}
	}
	out := logs.String()
	if strings.Contains(out, "level=ERROR") || strings.Contains(out, "store failure") {
		t.Errorf("a sender that left was logged as a store failure:\n%s", out)
	}
	if !strings.Contains(out, "level=DEBUG") || !strings.Contains(out, "went away") {
		t.Errorf("want a debug line saying the sender went away:\n%s", out)
	}
}
