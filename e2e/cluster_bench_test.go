package e2e

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/hookrelay/hookrelay/client"
	"github.com/hookrelay/hookrelay/server/store"
	"github.com/hookrelay/hookrelay/server/store/postgres"
	"github.com/hookrelay/hookrelay/server/store/postgres/pgtest"
	"github.com/hookrelay/hookrelay/server/store/sqlite"
)

// BenchmarkClusterNodeVsAlone sends the load of
// BenchmarkThroughput32Senders1KiB (sync webhooks, an agent on the node)
// through two relays on PostgreSQL in one run: one alone (cluster.Local)
// and one node of a cluster (cluster.Postgres: a NOTIFY per batch of
// webhooks, and a claim and a finish per batch of deliveries). It reports
// both rates and cluster ÷ alone, what being ready for other nodes costs
// one node (hookrelay server on PostgreSQL always runs as a cluster node).
//
//	HOOKRELAY_TEST_POSTGRES=postgres://... go test ./e2e -run '^$' -bench ClusterNodeVsAlone -benchtime 3x
func BenchmarkClusterNodeVsAlone(b *testing.B) {
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

// BenchmarkClusterTwoNodesVsOne sends the load of
// BenchmarkThroughput32Senders1KiB (32 senders, sync webhooks answered 200)
// through a cluster of one node and one of two nodes in one run, each
// behind the harness's balancer, which spreads the senders' connections
// over the nodes. The two-node cluster's channel has one group with an
// agent on each node, so webhooks posted to either node are delivered by
// either (claims, notifications and answers between the nodes). It
// reports both rates and two ÷ one. Both clusters share this machine's
// cores, so it measures what coordinating costs, not what a second machine
// adds.
//
//	HOOKRELAY_TEST_POSTGRES=postgres://... go test ./e2e -run '^$' -bench ClusterTwoNodesVsOne -benchtime 3x
func BenchmarkClusterTwoNodesVsOne(b *testing.B) {
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	b.Cleanup(target.Close)
	runs := []*relayRun{{name: "two"}, {name: "one"}}
	for i, n := range []int{2, 1} {
		c := startCluster(b, n)
		ch := c.Nodes[0].channel(b, client.CreateChannel{})
		for _, nd := range c.Nodes {
			nd.startAgent(b, ch, target.URL, group("bench"))
		}
		runs[i].url = c.LB.URL + "/h/" + ch
	}
	alternate(b, runs...)
}

// BenchmarkClusterVsSQLite measures issue 10's two ratios in one run,
// alternating the same load (BenchmarkThroughput32Senders1KiB: 32
// senders, 1 KiB sync webhooks answered 200 by an agent) over three
// relays, each behind a balancer of the harness so that they pay the same
// extra hop: two cluster nodes on PostgreSQL (senders spread over both;
// one group with an agent on each), one cluster node on PostgreSQL (what
// hookrelay server --database postgres://… runs), and one relay on
// SQLite. It reports the three rates, one/sqlite (a node on PostgreSQL ÷
// a node on SQLite) and two/one.
//
//	HOOKRELAY_TEST_POSTGRES=postgres://... go test ./e2e -run '^$' -bench ClusterVsSQLite -benchtime 3x
func BenchmarkClusterVsSQLite(b *testing.B) {
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	b.Cleanup(target.Close)
	runs := []*relayRun{{name: "two"}, {name: "one"}, {name: "sqlite"}}
	for i, n := range []int{2, 1} {
		c := startCluster(b, n)
		ch := c.Nodes[0].channel(b, client.CreateChannel{})
		for _, nd := range c.Nodes {
			nd.startAgent(b, ch, target.URL, group("bench"))
		}
		runs[i].url = c.LB.URL + "/h/" + ch
	}
	path := filepath.Join(b.TempDir(), "hookrelay.db")
	lite := startRelayOn(b, func() (store.Store, error) { return sqlite.Open(path, sqlite.Options{}) })
	ch := lite.channel(b, client.CreateChannel{})
	lite.startAgent(b, ch, target.URL, group("bench"))
	lb := newBalancer(b)
	lb.add(lite.addr)
	runs[2].url = lb.URL + "/h/" + ch
	alternate(b, runs...)
	b.ReportMetric(runs[1].rate/runs[2].rate, "one/sqlite")
}
