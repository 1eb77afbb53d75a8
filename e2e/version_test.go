package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/hookrelay/hookrelay/client"
	"github.com/hookrelay/hookrelay/protocol"
)

// TestAgentOfVersion1IsToldToUpgrade speaks to the relay as an agent of
// protocol version 1 does (same subprotocol, same control stream, a hello
// of version 1) and checks that the answer names the side to upgrade and
// ends the session.
func TestAgentOfVersion1IsToldToUpgrade(t *testing.T) {
	t.Parallel()
	relay := startRelay(t)
	ch := relay.channel(t, client.CreateChannel{})
	dialer := websocket.Dialer{Subprotocols: []string{protocol.Subprotocol}, HandshakeTimeout: 10 * time.Second}
	ws, resp, err := dialer.Dial("ws"+strings.TrimPrefix(relay.URL, "http")+"/tunnel",
		http.Header{"Authorization": {"Bearer " + adminToken}})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	resp.Body.Close()
	conn := protocol.NewConn(ws, protocol.ConnConfig{})
	sess, err := protocol.Client(conn, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	ctrl, err := sess.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	_ = ctrl.SetDeadline(time.Now().Add(10 * time.Second))
	hello := &protocol.ControlMessage{Type: protocol.TypeHello, Hello: &protocol.Hello{
		Version: 1, AgentVersion: "0.9.0", Host: "old-laptop", Subscriptions: []protocol.Subscription{{Channel: ch}},
	}}
	if err := protocol.WriteControl(ctrl, hello); err != nil {
		t.Fatal(err)
	}
	m, err := protocol.ReadControl(ctrl)
	if err != nil {
		t.Fatalf("read the answer to hello: %v", err)
	}
	want := "agent speaks protocol version 1, relay speaks 2: upgrade hookrelay on this machine (the agent) to a release that speaks version 2"
	if m.Type != protocol.TypeError || m.Error.Code != protocol.CodeVersionMismatch || m.Error.Message != want {
		t.Fatalf("answer to a hello of version 1: %+v %+v, want error %s %q", m, m.Error, protocol.CodeVersionMismatch, want)
	}
	select {
	case <-sess.CloseChan():
	case <-time.After(10 * time.Second):
		t.Fatal("the relay kept the session of an agent it refused")
	}
	if n := relay.agentCount(t, ch); n != 0 {
		t.Errorf("the relay lists %d agents after refusing the only one", n)
	}
}
