package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/server/store/sqlite"
)

// BenchmarkIngressWithSmeeStreams measures what smee-compatible streams
// cost the senders: webhooks of 1 KiB posted by 8 senders to one channel,
// with 0, 1 and 10 streams reading it. sent/s is how fast the senders got
// their answers; streamed/s counts until every stream had every webhook.
// Compare them across the sub-benchmarks of one run (the machine is shared
// and noisy):
//
//	go test ./server -run '^$' -bench IngressWithSmeeStreams -benchtime 2000x
func BenchmarkIngressWithSmeeStreams(b *testing.B) {
	for _, streams := range []int{0, 1, 10} {
		b.Run(fmt.Sprintf("streams=%d", streams), func(b *testing.B) {
			benchSmeeStreams(b, streams)
		})
	}
}

func benchSmeeStreams(b *testing.B, streams int) {
	st, err := sqlite.Open(filepath.Join(b.TempDir(), "relay.db"), sqlite.Options{Synchronous: "NORMAL"})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	r, err := New(Config{Store: st, AdminToken: uiAdminToken, MaxSSEPerAddress: 100})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- r.Serve(ctx, ln) }()
	defer func() { cancel(); <-served }()
	base := "http://" + ln.Addr().String()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	defer client.CloseIdleConnections()

	req, _ := http.NewRequest("POST", base+"/api/v1/channels", strings.NewReader(`{"id":"bench"}`))
	req.Header.Set("Authorization", "Bearer "+uiAdminToken)
	resp, err := client.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	var ch channelJSON
	if err := decodeJSON(resp, &ch); err != nil {
		b.Fatal(err)
	}

	// Each stream counts the webhook messages it read.
	counts := make([]chan struct{}, streams)
	var readers sync.WaitGroup
	streamCtx, stopStreams := context.WithCancel(context.Background())
	defer func() { stopStreams(); readers.Wait() }()
	for i := range streams {
		req, _ := http.NewRequestWithContext(streamCtx, "GET", base+"/h/bench?key="+url.QueryEscape(ch.ReadKey), nil)
		req.Header.Set("Accept", "text/event-stream")
		resp, err := client.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("stream: %v %v", resp, err)
		}
		counts[i] = make(chan struct{}, b.N)
		readers.Add(1)
		go func() {
			defer readers.Done()
			defer resp.Body.Close()
			_ = parseSSE(resp.Body, func(m sseMessage) bool {
				if m.comment == "" && m.event == "" {
					counts[i] <- struct{}{}
				}
				return true
			})
		}()
	}
	body := bytes.Repeat([]byte("x"), 1000)
	payload := append(append([]byte(`{"pad":"`), body...), `"}`...)

	b.ResetTimer()
	start := time.Now()
	const senders = 8
	var wg sync.WaitGroup
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := s; i < b.N; i += senders {
				resp, err := client.Post(base+"/h/bench", "application/json", bytes.NewReader(payload))
				if err != nil {
					b.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	ingress := time.Since(start)
	for _, c := range counts {
		for range b.N {
			select {
			case <-c:
			case <-time.After(30 * time.Second):
				b.Fatal("a stream stopped receiving")
			}
		}
	}
	b.ReportMetric(float64(b.N)/ingress.Seconds(), "sent/s")
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "streamed/s")
}

func decodeJSON(resp *http.Response, v any) error {
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%d %s", resp.StatusCode, b)
	}
	return json.Unmarshal(b, v)
}
