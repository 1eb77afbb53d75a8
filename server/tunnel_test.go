package server

import (
	"bytes"
	"encoding/binary"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/hookrelay/hookrelay/protocol"
)

// yamux frames, written by hand so that the test agent can do what a
// well-behaved yamux refuses to: open streams after a GoAway.
const (
	yamuxData         = 0
	yamuxWindowUpdate = 1
	yamuxPing         = 2
	yamuxGoAway       = 3
	yamuxSYN          = 1
	yamuxACK          = 2
	yamuxFIN          = 4
	yamuxRST          = 8
)

// rawAgent speaks yamux on a tunnel by hand.
type rawAgent struct {
	conn    *protocol.Conn
	writeMu sync.Mutex
	control *io.PipeWriter // stream 1's bytes from the relay
	resets  atomic.Int32   // streams the relay reset
	goAway  atomic.Bool
	ctrlFIN atomic.Bool // the relay closed its side of the control stream
	pongs   chan uint32
	done    chan struct{}
}

func dialRawAgent(t *testing.T, base, token string) (*rawAgent, *io.PipeReader) {
	t.Helper()
	d := websocket.Dialer{Subprotocols: []string{protocol.Subprotocol}}
	ws, resp, err := d.Dial("ws"+strings.TrimPrefix(base, "http")+"/tunnel", http.Header{"Authorization": {"Bearer " + token}})
	if err != nil {
		t.Fatalf("dial: %v %v", resp, err)
	}
	pr, pw := io.Pipe()
	a := &rawAgent{conn: protocol.NewConn(ws, protocol.ConnConfig{}), control: pw, pongs: make(chan uint32, 16), done: make(chan struct{})}
	go a.read()
	t.Cleanup(func() {
		a.conn.Close()
		<-a.done
	})
	return a, pr
}

func (a *rawAgent) frame(typ uint8, flags uint16, stream, length uint32, payload []byte) error {
	var h [12]byte
	h[1] = typ
	binary.BigEndian.PutUint16(h[2:], flags)
	binary.BigEndian.PutUint32(h[4:], stream)
	binary.BigEndian.PutUint32(h[8:], length)
	a.writeMu.Lock()
	defer a.writeMu.Unlock()
	if _, err := a.conn.Write(h[:]); err != nil {
		return err
	}
	_, err := a.conn.Write(payload)
	return err
}

// open opens a stream and sends payload on it.
func (a *rawAgent) open(stream uint32, payload []byte) error {
	if err := a.frame(yamuxWindowUpdate, yamuxSYN, stream, 0, nil); err != nil {
		return err
	}
	return a.frame(yamuxData, 0, stream, uint32(len(payload)), payload)
}

// read answers pings and sorts what the relay sends.
func (a *rawAgent) read() {
	defer close(a.done)
	defer a.control.Close()
	var h [12]byte
	for {
		if _, err := io.ReadFull(a.conn, h[:]); err != nil {
			return
		}
		typ, flags := h[1], binary.BigEndian.Uint16(h[2:])
		stream, length := binary.BigEndian.Uint32(h[4:]), binary.BigEndian.Uint32(h[8:])
		if flags&yamuxRST != 0 && stream != 1 {
			a.resets.Add(1)
		}
		if flags&yamuxFIN != 0 && stream == 1 {
			a.ctrlFIN.Store(true)
		}
		switch typ {
		case yamuxData:
			var dst io.Writer = io.Discard
			if stream == 1 {
				dst = a.control
			}
			if _, err := io.CopyN(dst, a.conn, int64(length)); err != nil {
				return
			}
		case yamuxPing:
			if flags&yamuxSYN != 0 {
				go a.frame(yamuxPing, yamuxACK, 0, length, nil) //nolint:errcheck // the reader must not block on a write
			} else {
				a.pongs <- length
			}
		case yamuxGoAway:
			a.goAway.Store(true)
		}
	}
}

// sync waits until the relay has read everything sent before it.
func (a *rawAgent) sync(t *testing.T, id uint32) {
	t.Helper()
	if err := a.frame(yamuxPing, yamuxSYN, 0, id, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-a.pongs:
		if got != id {
			t.Fatalf("pong %d, want %d", got, id)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no pong")
	}
}

func heapAlloc() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestAgentOpenedStreamsAreRefused plays an agent that opens streams the
// relay never accepts and fills each with yamux's initial 256 KiB window
// (before its hello, and 200 more after the welcome): the relay resets
// them at once and holds nothing for them. Not parallel: it measures the
// heap.
func TestAgentOpenedStreamsAreRefused(t *testing.T) {
	e := startUI(t, nil)
	e.channel(uiAdminToken, "attacked")
	a, control := dialRawAgent(t, e.URL, uiAdminToken)
	window := make([]byte, 256<<10)

	var hello bytes.Buffer
	_ = protocol.WriteControl(&hello, &protocol.ControlMessage{Type: protocol.TypeHello, Hello: &protocol.Hello{
		Version: protocol.Version, Host: "attacker", Subscriptions: []protocol.Subscription{{Channel: "attacked"}}}})
	if err := a.open(1, hello.Bytes()); err != nil {
		t.Fatal(err)
	}
	if err := a.open(3, window); err != nil { // before the GoAway can have arrived
		t.Fatal(err)
	}
	msg, err := protocol.ReadControl(control)
	if err != nil || msg.Type != protocol.TypeWelcome {
		t.Fatalf("handshake: %+v %v", msg, err)
	}
	if !a.goAway.Load() {
		t.Error("the relay sent no GoAway before its welcome")
	}
	a.sync(t, 1)
	before := heapAlloc()

	const streams = 200
	for i := range streams {
		if err := a.open(uint32(5+2*i), window); err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
	}
	a.sync(t, 2)
	grew := int64(heapAlloc()) - int64(before)
	t.Logf("the relay's heap grew %d KiB while the agent pushed %d MiB into %d streams", grew>>10, streams/4, streams)
	if grew > 8<<20 {
		t.Errorf("the relay's heap grew %d MiB for %d streams of 256 KiB", grew>>20, streams)
	}
	if n := a.resets.Load(); n < streams {
		t.Errorf("%d of the %d streams opened after the welcome were reset", n, streams)
	}
	sess := e.relay.hub.sessions()
	if len(sess) != 1 {
		t.Fatalf("%d sessions, want the attacker's", len(sess))
	}
	// The control stream, and at most the one opened before the GoAway,
	// which the relay has closed (its 256 KiB go within the close timeout).
	if n := sess[0].sess.NumStreams(); n > 2 {
		t.Errorf("the relay holds %d streams of the agent", n)
	}
}

// TestGoodbyeIsAnswered: an agent says goodbye by closing its control
// stream; the relay closes its side too before it ends the session. An
// agent whose half-closed stream is never answered keeps the stream, its
// session and the WebSocket's buffers (about 150 KB) for yamux's
// StreamCloseTimeout after every reconnect (the soak test saw it).
func TestGoodbyeIsAnswered(t *testing.T) {
	t.Parallel()
	e := startUI(t, nil)
	e.channel(uiAdminToken, "goodbye")
	a, control := dialRawAgent(t, e.URL, uiAdminToken)
	var hello bytes.Buffer
	_ = protocol.WriteControl(&hello, &protocol.ControlMessage{Type: protocol.TypeHello, Hello: &protocol.Hello{
		Version: protocol.Version, Host: "leaving", Subscriptions: []protocol.Subscription{{Channel: "goodbye"}}}})
	if err := a.open(1, hello.Bytes()); err != nil {
		t.Fatal(err)
	}
	if msg, err := protocol.ReadControl(control); err != nil || msg.Type != protocol.TypeWelcome {
		t.Fatalf("handshake: %+v %v", msg, err)
	}
	if err := a.frame(yamuxWindowUpdate, yamuxFIN, 1, 0, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case <-a.done: // the relay ended the session
	case <-time.After(10 * time.Second):
		t.Fatal("the relay did not end the session after the goodbye")
	}
	if !a.ctrlFIN.Load() {
		t.Error("the relay ended the session without closing its side of the control stream")
	}
}

// TestTunnelCapHoldsUnderConcurrentHandshakes: with max_agents_per_token
// at 5, twenty agents connecting at once get exactly five tunnels; the
// others are refused with 429 before the upgrade.
func TestTunnelCapHoldsUnderConcurrentHandshakes(t *testing.T) {
	t.Parallel()
	e := startUI(t, func(c *Config) { c.MaxAgentsPerToken = 5 })
	e.channel(uiAdminToken, "capped")
	var welcomed, refused atomic.Int32
	var wg sync.WaitGroup
	hold := make(chan struct{}) // the welcomed keep their tunnels until the count is taken
	for range 20 {
		wg.Go(func() {
			d := websocket.Dialer{Subprotocols: []string{protocol.Subprotocol}}
			ws, resp, err := d.Dial("ws"+strings.TrimPrefix(e.URL, "http")+"/tunnel", http.Header{"Authorization": {"Bearer " + uiAdminToken}})
			if err != nil {
				if resp != nil && resp.StatusCode == http.StatusTooManyRequests {
					refused.Add(1)
				} else {
					t.Errorf("dial: %v %v", resp, err)
				}
				return
			}
			conn := protocol.NewConn(ws, protocol.ConnConfig{})
			defer conn.Close()
			sess, err := protocol.Client(conn, nil)
			if err != nil {
				t.Error(err)
				return
			}
			defer sess.Close()
			st, err := sess.OpenStream()
			if err != nil {
				t.Error(err)
				return
			}
			_ = protocol.WriteControl(st, &protocol.ControlMessage{Type: protocol.TypeHello, Hello: &protocol.Hello{
				Version: protocol.Version, Host: "h", Subscriptions: []protocol.Subscription{{Channel: "capped"}}}})
			msg, err := protocol.ReadControl(st)
			switch {
			case err == nil && msg.Type == protocol.TypeWelcome:
				welcomed.Add(1)
			case err == nil && msg.Type == protocol.TypeError && msg.Error.Code == protocol.CodeLimit:
				refused.Add(1)
			default:
				t.Errorf("hello answered %+v %v", msg, err)
			}
			<-hold
		})
	}
	waitFor := func(cond func() bool) {
		deadline := time.Now().Add(10 * time.Second)
		for !cond() && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond) // polling counters, with a deadline
		}
	}
	waitFor(func() bool { return welcomed.Load()+refused.Load() == 20 })
	if w, r := welcomed.Load(), refused.Load(); w != 5 || r != 15 {
		t.Errorf("%d tunnels welcomed and %d refused, want 5 and 15", w, r)
	}
	close(hold)
	wg.Wait()
}

// dialStatus tries to open a tunnel and returns the HTTP status of the
// upgrade and the error body; a tunnel that opens is closed at cleanup.
func dialStatus(t *testing.T, base, token string) (int, string) {
	t.Helper()
	d := websocket.Dialer{Subprotocols: []string{protocol.Subprotocol}}
	ws, resp, err := d.Dial("ws"+strings.TrimPrefix(base, "http")+"/tunnel", http.Header{"Authorization": {"Bearer " + token}})
	if err != nil {
		if resp == nil {
			t.Fatalf("dial: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	t.Cleanup(func() { ws.Close() })
	return resp.StatusCode, ""
}

// TestReadKeyTunnelsAreCapped: one read key (which anyone gets on a relay
// with anonymous channels) holds at most max_agents_per_read_key tunnels.
func TestReadKeyTunnelsAreCapped(t *testing.T) {
	t.Parallel()
	e := startUI(t, func(c *Config) { c.MaxAgentsPerReadKey = 2 })
	ch := e.channel(uiAdminToken, "read-key-capped")
	for i := range 2 {
		if code, body := dialStatus(t, e.URL, ch.ReadKey); code != http.StatusSwitchingProtocols {
			t.Fatalf("tunnel %d with the read key: %d %s", i, code, body)
		}
	}
	code, body := dialStatus(t, e.URL, ch.ReadKey)
	if code != http.StatusTooManyRequests || !strings.Contains(body, "max_agents_per_read_key") {
		t.Errorf("a third tunnel with the read key: %d %s, want 429 naming max_agents_per_read_key", code, body)
	}
	if code, body := dialStatus(t, e.URL, uiAdminToken); code != http.StatusSwitchingProtocols {
		t.Errorf("a token's tunnel beside them: %d %s", code, body)
	}
}

// TestControlReadOnDemand: an idle session reads its control stream with
// no goroutine waiting on it; a control message that comes later is
// answered, again and again, and a connection that drops while the session
// is idle ends the session.
func TestControlReadOnDemand(t *testing.T) {
	t.Parallel()
	e := startUI(t, nil)
	e.channel(uiAdminToken, "ondemand")
	e.channel(uiAdminToken, "ondemand-2")
	a, control := dialRawAgent(t, e.URL, uiAdminToken)
	var hello bytes.Buffer
	_ = protocol.WriteControl(&hello, &protocol.ControlMessage{Type: protocol.TypeHello, Hello: &protocol.Hello{
		Version: protocol.Version, Host: "idle", Subscriptions: []protocol.Subscription{{Channel: "ondemand"}}}})
	if err := a.open(1, hello.Bytes()); err != nil {
		t.Fatal(err)
	}
	if msg, err := protocol.ReadControl(control); err != nil || msg.Type != protocol.TypeWelcome {
		t.Fatalf("handshake: %+v %v", msg, err)
	}
	session := func() *agentSession {
		ss := e.relay.hub.sessions()
		if len(ss) != 1 {
			t.Fatalf("%d sessions, want 1", len(ss))
		}
		return ss[0]
	}
	idle := func() {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for session().ctrlReading.Load() {
			if time.Now().After(deadline) {
				t.Fatal("the session still reads its control stream, idle")
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	for _, sub := range []protocol.Subscription{{Channel: "ondemand-2"}, {Channel: "ondemand", Group: "other"}} {
		idle()
		var m bytes.Buffer
		_ = protocol.WriteControl(&m, &protocol.ControlMessage{Type: protocol.TypeSubscribe, Subscribe: []protocol.Subscription{sub}})
		if err := a.frame(yamuxData, 0, 1, uint32(m.Len()), m.Bytes()); err != nil {
			t.Fatal(err)
		}
		msg, err := protocol.ReadControl(control)
		if err != nil || msg.Type != protocol.TypeSubscribed || len(msg.Subscribed) != 1 || msg.Subscribed[0].Channel != sub.Channel {
			t.Fatalf("subscribe %+v: %+v %v", sub, msg, err)
		}
	}
	idle()
	_ = a.conn.Close() // no goodbye: the connection just ends
	deadline := time.Now().Add(20 * time.Second)
	for e.relay.hub.d.AgentCount() > 0 {
		if time.Now().After(deadline) {
			t.Fatal("the relay kept the session of a closed connection")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
