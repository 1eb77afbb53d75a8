package storetest

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/hookrelay/hookrelay/server/store"
)

// BenchmarkAppend appends 1 KiB events to s from 16 goroutines per CPU,
// spread over the given number of channels (which it creates), and reports
// events/s: one load for every implementation, so their figures compare.
func BenchmarkAppend(b *testing.B, s store.Store, channels int) {
	ctx := b.Context()
	for c := range channels {
		if err := s.CreateChannel(ctx, store.Channel{ID: fmt.Sprint("c", c)}); err != nil {
			b.Fatal(err)
		}
	}
	body := make([]byte, 1024)
	for i := range body {
		body[i] = byte(i)
	}
	headers := []store.Header{{Name: "Content-Type", Value: "application/json"}, {Name: "X-Request-Id", Value: "abc"}}
	var n atomic.Int64
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			e := &store.Event{ID: fmt.Sprint("e", i), ChannelID: fmt.Sprint("c", i%int64(channels)),
				Method: "POST", Path: "/hook", Headers: headers, Body: body, RemoteAddr: "192.0.2.1:1234"}
			if err := s.AppendEvent(ctx, e); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
