package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/server/store"
	"github.com/hookrelay/hookrelay/server/store/memstore"
)

// countingStore is a real store that counts channel lookups by id.
type countingStore struct {
	store.Store
	mu      sync.Mutex
	lookups map[string]int
}

func (s *countingStore) GetChannel(ctx context.Context, id string) (store.Channel, error) {
	s.mu.Lock()
	s.lookups[id]++
	s.mu.Unlock()
	return s.Store.GetChannel(ctx, id)
}

func (s *countingStore) count(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lookups[id]
}

// serveRelay serves a relay built from cfg on 127.0.0.1 until cleanup.
func serveRelay(t *testing.T, cfg Config) (*Relay, string) {
	t.Helper()
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r, serveBuilt(t, r)
}

// serveBuilt serves r on 127.0.0.1 until cleanup and returns its base URL.
func serveBuilt(t *testing.T, r *Relay) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- r.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
		_ = r.Close()
	})
	return "http://" + ln.Addr().String()
}

// manualClock is a clock that moves only when the test moves it.
type manualClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *manualClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// TestUnknownChannelFloodReadsTheStoreOnce: concurrent and repeated
// webhooks to a channel that does not exist are answered 404 from one
// store read within the cache's TTL, however long the flood takes (the
// cache's clock is the test's); past the TTL the store is asked again;
// creating the channel makes it known at once.
func TestUnknownChannelFloodReadsTheStoreOnce(t *testing.T) {
	t.Parallel()
	st := &countingStore{Store: memstore.New(store.Limits{}), lookups: map[string]int{}}
	clock := &manualClock{now: time.Now()}
	r, err := New(Config{Store: st, AdminToken: uiAdminToken})
	if err != nil {
		t.Fatal(err)
	}
	r.channels.now = clock.Now // before the relay serves a request
	base := serveBuilt(t, r)
	post := func(id string) int {
		resp, err := http.Post(base+"/h/"+id+"/x", "text/plain", strings.NewReader("x"))
		if err != nil {
			t.Error(err)
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	var wg sync.WaitGroup
	for range 100 {
		wg.Go(func() {
			if got := post("no-such-channel"); got != http.StatusNotFound {
				t.Errorf("status %d, want 404", got)
			}
		})
	}
	wg.Wait()
	for range 100 {
		post("no-such-channel")
	}
	if n := st.count("no-such-channel"); n != 1 {
		t.Errorf("200 webhooks to an unknown channel read the store %d times, want once", n)
	}
	clock.advance(channelCacheTTL)
	for range 10 {
		post("no-such-channel")
	}
	if n := st.count("no-such-channel"); n != 2 {
		t.Errorf("after the TTL, 10 more webhooks brought the store reads to %d, want 2", n)
	}

	req, _ := http.NewRequest("POST", base+"/api/v1/channels", strings.NewReader(`{"id":"no-such-channel"}`))
	req.Header.Set("Authorization", "Bearer "+uiAdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("create the channel: %v %v", resp, err)
	}
	resp.Body.Close()
	if got := post("no-such-channel"); got != http.StatusAccepted {
		t.Errorf("the channel just created: %d, want 202", got)
	}
}

// TestIdleRateLimitersAreDropped: a channel's token bucket is kept only
// while it is not full again.
func TestIdleRateLimitersAreDropped(t *testing.T) {
	t.Parallel()
	var l limiters
	for i := range 1000 {
		l.allow(fmt.Sprintf("ch-%d", i), 10)
	}
	for range 20 { // empty one bucket
		l.allow("busy", 10)
	}
	if n := l.size(); n != 1001 {
		t.Fatalf("%d limiters, want 1001", n)
	}
	// At 10/s a bucket used once is full again after 0.1 s, an emptied one
	// after 2 s.
	l.sweep(time.Now().Add(500 * time.Millisecond))
	if n := l.size(); n != 1 {
		t.Errorf("after a sweep half a second later: %d limiters, want only the emptied bucket", n)
	}
	if ok, _ := l.allow("busy", 10); ok {
		t.Errorf("the swept limiters lost the busy channel's state")
	}
	l.sweep(time.Now().Add(10 * time.Second))
	if n := l.size(); n != 0 {
		t.Errorf("after the buckets refilled: %d limiters, want none", n)
	}
}
