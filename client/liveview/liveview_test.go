package liveview

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/client"
	"github.com/hookrelay/hookrelay/protocol"
)

// TestPausedGroupShown: the view shows "target down, next try in N s"
// under a channel whose group the relay paused, until it flows again.
func TestPausedGroupShown(t *testing.T) {
	t.Parallel()
	v := New(Config{Relay: "https://relay.example", Out: io.Discard})
	v.State(client.State{Status: client.StatusConnected,
		Channels: []protocol.ChannelInfo{{Channel: "ch1", Group: "g", URL: "https://relay.example/h/ch1"}}})
	v.GroupState(client.GroupStatus{Channel: "ch1", Group: "g", Paused: true, NextTry: time.Now().Add(7 * time.Second),
		Err: "connection refused"})
	if screen := (model{v: v}).View(); !strings.Contains(screen, "target down:") || !strings.Contains(screen, "next try in 7s") {
		t.Errorf("paused group not shown:\n%s", screen)
	}
	v.GroupState(client.GroupStatus{Channel: "ch1", Group: "g"})
	if screen := (model{v: v}).View(); strings.Contains(screen, "target down:") {
		t.Errorf("flowing group still shown paused:\n%s", screen)
	}
}
