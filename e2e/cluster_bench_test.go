package e2e

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/hookrelay/hookrelay/client"
	"github.com/hookrelay/hookrelay/server/store"
	"github.com/hookrelay/hookrelay/server/store/postgres"
	"github.com/hookrelay/hookrelay/server/store/postgres/pgtest"
)

// BenchmarkClusterPublishCost sends the load of
// BenchmarkThroughput32Senders1KiB (sync webhooks, an agent on the node)
// through two relays on PostgreSQL in one run: one alone (cluster.Local)
// and one node of a cluster (cluster.Postgres, which notifies the other
// nodes of each event: one NOTIFY statement per batch of webhooks). It
// reports both rates and cluster ÷ alone, what telling other nodes costs.
//
//	HOOKRELAY_TEST_POSTGRES=postgres://... go test ./e2e -run '^$' -bench ClusterPublishCost -benchtime 3x
func BenchmarkClusterPublishCost(b *testing.B) {
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	b.Cleanup(target.Close)
	url := pgtest.Schema(b)
	alone := startRelayOn(b, func() (store.Store, error) {
		return postgres.Open(context.Background(), url, postgres.Options{})
	})
	node := startCluster(b, 1).Nodes[0]
	runs := []*relayRun{{name: "alone"}, {name: "cluster"}}
	for i, env := range []*relayEnv{alone, node.relayEnv} {
		ch := env.channel(b, client.CreateChannel{})
		env.startAgent(b, ch, target.URL)
		runs[i].url = env.ingress(ch)
	}
	alternate(b, runs[1], runs[0])
}
