package dispatch

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/server/store"
)

// faultyNode is a node of a MemCluster whose Finish and Renew fail while
// told to, and which counts the outcomes of its calls.
type faultyNode struct {
	Cluster
	failFinish, failRenew atomic.Bool
	held, won, done       atomic.Int32 // Claim outcomes
	finished, finishFails atomic.Int32 // Finish calls
}

var errInjected = errors.New("injected: the cluster is unreachable")

func (n *faultyNode) Claim(ctx context.Context, groupID int64, seqs []int64, lease time.Duration) ([]Claim, error) {
	cs, err := n.Cluster.Claim(ctx, groupID, seqs, lease)
	for _, c := range cs {
		switch c.State {
		case ClaimHeld:
			n.held.Add(1)
		case ClaimWon:
			n.won.Add(1)
		case ClaimDone:
			n.done.Add(1)
		}
	}
	return cs, err
}

func (n *faultyNode) Renew(ctx context.Context, groupID int64, seqs []int64, lease time.Duration) error {
	if n.failRenew.Load() {
		return errInjected
	}
	return n.Cluster.Renew(ctx, groupID, seqs, lease)
}

func (n *faultyNode) Finish(ctx context.Context, groupID int64, seqs []int64) error {
	if n.failFinish.Load() {
		n.finishFails.Add(1)
		return errInjected
	}
	n.finished.Add(1)
	return n.Cluster.Finish(ctx, groupID, seqs)
}

// gatedStore holds RecordProgress until its gate opens.
type gatedStore struct {
	store.Store
	g *gate
}

func (s *gatedStore) RecordProgress(ctx context.Context, p store.Progress) error {
	s.g.wait()
	return s.Store.RecordProgress(ctx, p)
}

// twoNodes is one group with an agent on node a, whose record of the one
// event it delivered is held (its store write waits at gate), and an agent
// on node b, which has found a's claim on that event held.
type twoNodes struct {
	mc     *MemCluster
	a, b   *faultyNode
	ea     *env
	gate   *gate
	agentA *fakeAgent
	agentB *fakeAgent
	group  store.Group
	seq    int64
}

func newTwoNodes(t *testing.T) *twoNodes {
	t.Helper()
	// Short enough to lapse many times over while the test waits; long
	// enough that renewing every third of it is not missed on a busy machine.
	const lease = 600 * time.Millisecond
	tn := &twoNodes{mc: NewMemCluster(), gate: newGate()}
	tn.a = &faultyNode{Cluster: tn.mc.Node("a")}
	tn.b = &faultyNode{Cluster: tn.mc.Node("b")}
	tn.ea = newEnvWrapped(t, Config{Cluster: tn.a, Lease: lease}, func(s store.Store) store.Store {
		return &gatedStore{Store: s, g: tn.gate}
	})
	t.Cleanup(tn.gate.release) // before the hubs close (cleanups run last first)
	hb := New(context.Background(), Config{Store: tn.ea.mem, Cluster: tn.b, Lease: lease})
	t.Cleanup(func() { hb.Close(hb.Unregister) })

	tn.agentA = newFakeAgent("ses_a", 4)
	tn.ea.connect(tn.agentA, "g")
	ids := tn.ea.post(1)
	tn.seq = tn.ea.seq(ids[0])
	tn.group = tn.ea.group("g")
	eventually(t, "node a delivered the event and is writing its record", func() bool {
		return tn.agentA.count() == 1 && tn.gate.held() == 1
	})
	tn.agentB = newFakeAgent("ses_b", 4)
	if !hb.Register(tn.agentB, []store.Group{tn.group}) {
		t.Fatal("hub b closed")
	}
	eventually(t, "node b found a's claim held", func() bool { return tn.b.held.Load() >= 1 || tn.agentB.count() > 0 })
	return tn
}

// TestDeliveredClaimRenewedUntilFinished: node a delivered an event and its
// record is slow to be written (the store is failing); node b has the event
// too. a keeps its claim while the write is under way, so b does not take
// the event after a's lease and deliver it a second time.
func TestDeliveredClaimRenewedUntilFinished(t *testing.T) {
	t.Parallel()
	tn := newTwoNodes(t)
	// Each time b finds the claim held it waits until the lease's end:
	// three times is well past a lease that was not renewed.
	eventually(t, "node b found the claim held three times (or took it)", func() bool {
		return tn.b.held.Load() >= 3 || tn.agentB.count() > 0
	})
	if n := tn.agentB.count(); n > 0 {
		t.Fatalf("node b delivered the event %d times while a's record was being written", n)
	}
	tn.gate.release()
	eventually(t, "node b sees the event done", func() bool { return tn.b.done.Load() >= 1 })
	if node, done, _ := tn.mc.ClaimOf(tn.group.ID, tn.seq); node != "a" || !done {
		t.Errorf("claim: node %q done %v, want finished by a", node, done)
	}
	if n := tn.agentA.count() + tn.agentB.count(); n != 1 {
		t.Errorf("%d deliveries, want 1", n)
	}
}

// TestFinishRetriedAndStoreChecked: node a delivered and recorded an event
// but cannot finish its claim nor renew it (its cluster calls fail). Node
// b, which held the event, wins the lapsed claim, finds the event done in
// the store and does not deliver it again; a tries Finish again until it
// works.
func TestFinishRetriedAndStoreChecked(t *testing.T) {
	t.Parallel()
	tn := newTwoNodes(t)
	tn.a.failFinish.Store(true)
	tn.a.failRenew.Store(true)
	tn.gate.release()
	eventually(t, "a's Finish failed twice (tried again)", func() bool { return tn.a.finishFails.Load() >= 2 })
	eventually(t, "node b took the lapsed claim and finished it", func() bool {
		node, done, _ := tn.mc.ClaimOf(tn.group.ID, tn.seq)
		return tn.b.won.Load() >= 1 && node == "b" && done || tn.agentB.count() > 0
	})
	if n := tn.agentB.count(); n > 0 {
		t.Fatalf("node b delivered the event %d times; a had recorded it done", n)
	}
	tn.a.failFinish.Store(false)
	tn.a.failRenew.Store(false)
	eventually(t, "a finished its claim once the cluster answered", func() bool { return tn.a.finished.Load() >= 1 })
	if p := tn.ea.pending("g"); len(p) != 0 {
		t.Errorf("still pending: %v", p)
	}
}
