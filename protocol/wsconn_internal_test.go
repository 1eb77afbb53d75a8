package protocol

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// rawPair returns the two ends of one WebSocket over loopback, both plain
// gorilla connections closed when the test ends.
func rawPair(t *testing.T) (client, server *websocket.Conn) {
	t.Helper()
	accepted := make(chan *websocket.Conn, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err == nil {
			accepted <- ws
		}
	}))
	t.Cleanup(srv.Close)
	client, resp, err := (&websocket.Dialer{HandshakeTimeout: 10 * time.Second}).Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	select {
	case server = <-accepted:
	case <-time.After(10 * time.Second):
		t.Fatal("the server did not accept the WebSocket")
	}
	t.Cleanup(func() {
		client.Close()
		server.Close()
	})
	return client, server
}

// TestLateTickPingsBeforeBlaming plays a liveness timer that fires long
// after the silence limit, as on a loaded machine: the Conn must send a
// ping and give it PongTimeout before it declares the peer dead, never
// blame a peer it did not ask.
func TestLateTickPingsBeforeBlaming(t *testing.T) {
	t.Parallel()
	cws, sws := rawPair(t)
	// The peer reads, counts pings and never answers them.
	pings := make(chan struct{}, 100)
	sws.SetPingHandler(func(string) error {
		pings <- struct{}{}
		return nil
	})
	peerDone := make(chan error, 1)
	go func() {
		for {
			if _, _, err := sws.ReadMessage(); err != nil {
				peerDone <- err
				return
			}
		}
	}()
	// The timer of its own would not fire within the test: every tick is
	// the test's.
	c := NewConn(cws, ConnConfig{PingInterval: time.Hour, PongTimeout: 50 * time.Millisecond})
	defer c.Close()
	readErr := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 1))
		readErr <- err
	}()
	for waited := time.Duration(0); !c.reading.Load(); waited += time.Millisecond {
		if waited > 10*time.Second {
			t.Fatal("the Read did not start")
		}
		time.Sleep(time.Millisecond)
	}
	// The last thing heard is two silence windows ago, and a ping is due.
	c.lastSeen.Store(time.Now().Add(-2 * c.silence()).UnixNano())
	c.tickMu.Lock()
	c.nextPing = time.Now()
	c.tickMu.Unlock()
	c.tick()
	select {
	case <-c.Done():
		t.Fatal("a late tick closed the Conn without sending a ping first")
	default:
	}
	// The ping goes unanswered: PongTimeout later the peer is blamed.
	select {
	case err := <-readErr:
		if !errors.Is(err, ErrPeerUnresponsive) {
			t.Fatalf("Read = %v, want ErrPeerUnresponsive", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the unanswered ping did not end the Conn")
	}
	select {
	case <-peerDone: // the close frame came after the ping
	case <-time.After(10 * time.Second):
		t.Fatal("the peer did not see the Conn close")
	}
	if len(pings) == 0 {
		t.Fatal("the peer was declared dead without having been pinged")
	}
}

// TestWindowGrantGoesAtOnce checks that a window update granting room
// (no flag) is not held back for data to ride along with: the peer may be
// blocked on it, in the middle of a large body.
func TestWindowGrantGoesAtOnce(t *testing.T) {
	t.Parallel()
	cws, sws := rawPair(t)
	c := NewConn(cws, ConnConfig{})
	t.Cleanup(func() { c.Close() })
	grant := []byte{0, 1, 0, 0, 0, 0, 0, 3, 0, 4, 0, 0} // window update of stream 3, 256 KiB, no flag
	if _, err := c.Write(grant); err != nil {
		t.Fatal(err)
	}
	c.writeMu.Lock()
	held, armed := len(c.pending), c.flushArmed
	c.writeMu.Unlock()
	if held != 0 || armed {
		t.Fatalf("after a window grant, %d bytes held (flush timer set: %v), want it sent", held, armed)
	}
	_ = sws.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, msg, err := sws.ReadMessage(); err != nil || string(msg) != string(grant) {
		t.Fatalf("message %x (%v), want %x", msg, err, grant)
	}
}
