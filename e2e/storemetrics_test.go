package e2e

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/hookrelay/hookrelay/client"
)

// TestStoreCommitMetrics: after traffic, /metrics holds the store's group
// commits: hookrelay_store_batch_events counts every webhook once (its sum
// is the webhooks committed) in at least one and at most that many
// batches, and hookrelay_store_commit_seconds has one observation per
// batch. Both stores.
func TestStoreCommitMetrics(t *testing.T) {
	t.Parallel()
	for _, sc := range commitStores {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			relay := startRelayOn(t, sc.open(t))
			ch := relay.channel(t, client.CreateChannel{})
			const senders, each = 8, 10
			var wg sync.WaitGroup
			for i := range senders {
				wg.Go(func() {
					for j := range each {
						resp, body := post(t, relay.ingress(ch), "application/json", fmt.Appendf(nil, `{"sender":%d,"n":%d}`, i, j))
						if resp.StatusCode != http.StatusAccepted {
							t.Errorf("post: %d %s", resp.StatusCode, body)
						}
					}
				})
			}
			wg.Wait()
			text := metricsText(t, relay)
			sum := metricValue(t, text, "hookrelay_store_batch_events_sum")
			batches := metricValue(t, text, "hookrelay_store_batch_events_count")
			commits := metricValue(t, text, "hookrelay_store_commit_seconds_count")
			seconds := metricValue(t, text, "hookrelay_store_commit_seconds_sum")
			if sum != senders*each || batches < 1 || batches > senders*each || commits != batches || seconds <= 0 {
				t.Errorf("after %d webhooks: batch_events sum %v in %v batches, commit_seconds %v commits taking %vs; want the sum %d, commits = batches",
					senders*each, sum, batches, commits, seconds, senders*each)
			}
			if f := metricValue(t, text, "hookrelay_store_commit_failures_total"); f != 0 {
				t.Errorf("hookrelay_store_commit_failures_total %v, want 0", f)
			}
		})
	}
}

// metricValue is the value of the sample named exactly name (no labels).
func metricValue(t *testing.T, text, name string) float64 {
	t.Helper()
	for line := range strings.Lines(text) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			return f
		}
	}
	t.Fatalf("/metrics has no %s", name)
	return 0
}
