package protocol_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/hookrelay/hookrelay/protocol"
)

// waitLimit bounds every wait for something that should happen; tests fail
// instead of hanging when it does not.
const waitLimit = 10 * time.Second

// fastLiveness makes a silent peer show within a fraction of a second. A
// Conn blames its peer only PongTimeout after a ping it sent, however late
// its timer runs; PongTimeout leaves a pong's round trip room on a loaded
// machine running the race detector.
var fastLiveness = protocol.ConnConfig{PingInterval: 50 * time.Millisecond, PongTimeout: 500 * time.Millisecond}

// tunnelServer starts an httptest server that answers /tunnel the way the
// relay does: a bad token gets a JSON 401 before the upgrade, a good one an
// upgrade with the hookrelay subprotocol. It returns the ws:// URL and the
// server ends of the accepted WebSockets.
func tunnelServer(t testing.TB) (url string, accepted <-chan *websocket.Conn) {
	t.Helper()
	upgrader := websocket.Upgrader{Subprotocols: []string{protocol.Subprotocol}}
	ch := make(chan *websocket.Conn, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/tunnel" || r.Header.Get("Authorization") != "Bearer test-token" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"error":"the token was rejected; check --token","code":"unauthorized"}`)
			return
		}
		ws, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return // the upgrader answered
		}
		ch <- ws
	}))
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http") + "/tunnel", ch
}

// dialTunnel dials url as an agent does.
func dialTunnel(url, token string) (*websocket.Conn, *http.Response, error) {
	dialer := websocket.Dialer{Subprotocols: []string{protocol.Subprotocol}, HandshakeTimeout: waitLimit}
	return dialer.Dial(url, http.Header{"Authorization": {"Bearer " + token}})
}

// wsPair returns the two ends of one WebSocket: the agent's (client) and the
// relay's (server), dialled over loopback the way an agent dials /tunnel,
// with the hookrelay subprotocol negotiated.
func wsPair(t testing.TB) (client, server *websocket.Conn) {
	t.Helper()
	url, accepted := tunnelServer(t)
	client, resp, err := dialTunnel(url, "test-token")
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	resp.Body.Close()
	select {
	case server = <-accepted:
	case <-time.After(waitLimit):
		t.Fatal("the server did not accept the WebSocket")
	}
	if client.Subprotocol() != protocol.Subprotocol || server.Subprotocol() != protocol.Subprotocol {
		t.Fatalf("negotiated subprotocol %q (client) and %q (server), want %q", client.Subprotocol(), server.Subprotocol(), protocol.Subprotocol)
	}
	t.Cleanup(func() {
		client.Close()
		server.Close()
	})
	return client, server
}

// connPair returns two Conns on the ends of one WebSocket; both are closed
// when the test ends.
func connPair(t testing.TB, clientCfg, serverCfg protocol.ConnConfig) (client, server *protocol.Conn) {
	t.Helper()
	cws, sws := wsPair(t)
	client, server = protocol.NewConn(cws, clientCfg), protocol.NewConn(sws, serverCfg)
	t.Cleanup(func() {
		client.Close()
		server.Close()
	})
	return client, server
}

// goRead runs one Read in a goroutine and delivers its result.
func goRead(c net.Conn, size int) <-chan readResult {
	ch := make(chan readResult, 1)
	go func() {
		buf := make([]byte, size)
		n, err := c.Read(buf)
		ch <- readResult{buf[:n], err}
	}()
	return ch
}

type readResult struct {
	data []byte
	err  error
}

func waitRead(t *testing.T, ch <-chan readResult) readResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(waitLimit):
		t.Fatal("Read did not return")
		return readResult{}
	}
}

// TestHandshakeRejectsBadToken shows what an agent sees for an error before
// the upgrade: the status and the JSON {"error","code"} body.
func TestHandshakeRejectsBadToken(t *testing.T) {
	t.Parallel()
	url, _ := tunnelServer(t)
	_, resp, err := dialTunnel(url, "wrong")
	if !errors.Is(err, websocket.ErrBadHandshake) || resp == nil {
		t.Fatalf("dial with a bad token: %v", err)
	}
	defer resp.Body.Close()
	var body struct{ Error, Code string }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("error body: %v", err)
	}
	if resp.StatusCode != http.StatusUnauthorized || body.Code != protocol.CodeUnauthorized || body.Error == "" {
		t.Errorf("got %d %+v, want 401 with code %q and a message", resp.StatusCode, body, protocol.CodeUnauthorized)
	}
}

func TestConnRoundTripAcrossMessages(t *testing.T) {
	t.Parallel()
	for _, dir := range []string{"agent to relay", "relay to agent"} {
		t.Run(dir, func(t *testing.T) {
			t.Parallel()
			client, server := connPair(t, protocol.ConnConfig{}, protocol.ConnConfig{})
			w, r := net.Conn(client), net.Conn(server)
			if dir == "relay to agent" {
				w, r = r, w
			}
			want := randomBytes(3, 1<<20) // 16 messages of MaxMessage
			written := make(chan error, 1)
			go func() {
				n, err := w.Write(want)
				if err == nil && n != len(want) {
					err = io.ErrShortWrite
				}
				written <- err
			}()
			got := make([]byte, 0, len(want))
			chunk := make([]byte, 1000) // not a divisor of MaxMessage
			for len(got) < len(want) {
				n, err := r.Read(chunk[:min(len(chunk), len(want)-len(got))])
				if err != nil {
					t.Fatalf("Read after %d bytes: %v", len(got), err)
				}
				got = append(got, chunk[:n]...)
			}
			if err := <-written; err != nil {
				t.Fatalf("Write: %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatal("bytes differ after the round trip")
			}
		})
	}
}

// TestConnConcurrentWrites checks that concurrent Writes all arrive, and
// that the bytes of each Write stay together.
func TestConnConcurrentWrites(t *testing.T) {
	t.Parallel()
	client, server := connPair(t, protocol.ConnConfig{}, protocol.ConnConfig{})
	const writers, writesEach, size = 16, 4, 100 << 10 // each Write spans two messages
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for id := range writers {
		wg.Go(func() {
			block := bytes.Repeat([]byte{byte(id)}, size)
			for range writesEach {
				if _, err := client.Write(block); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	got := make([]byte, writers*writesEach*size)
	if _, err := io.ReadFull(server, got); err != nil {
		t.Fatalf("ReadFull: %v", err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Write: %v", err)
	}
	count := map[byte]int{}
	for off := 0; off < len(got); off += size {
		block := got[off : off+size]
		if !bytes.Equal(block, bytes.Repeat(block[:1], size)) {
			t.Fatalf("block at %d mixes the bytes of several Writes", off)
		}
		count[block[0]]++
	}
	for id := range writers {
		if count[byte(id)] != writesEach {
			t.Errorf("writer %d: %d blocks arrived, want %d", id, count[byte(id)], writesEach)
		}
	}
}

func TestConnReadDeadline(t *testing.T) {
	t.Parallel()
	client, _ := connPair(t, protocol.ConnConfig{}, protocol.ConnConfig{})
	if err := client.SetReadDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	res := waitRead(t, goRead(client, 10))
	var ne net.Error
	if !errors.Is(res.err, os.ErrDeadlineExceeded) || !errors.As(res.err, &ne) || !ne.Timeout() {
		t.Fatalf("Read past the deadline = %v, want a timeout wrapping os.ErrDeadlineExceeded", res.err)
	}
	if errors.Is(res.err, protocol.ErrPeerUnresponsive) {
		t.Fatalf("the user's deadline was reported as a silent peer: %v", res.err)
	}
	select {
	case <-client.Done():
		t.Fatal("the Conn closed itself over the user's read deadline")
	default:
	}
	// Reading stays broken, and says so every time: gorilla/websocket
	// panics after 1000 reads of a failed connection, Conn must not reach it.
	for range 1500 {
		if _, err := client.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Read after the timeout = %v", err)
		}
	}
}

func TestConnReadDeadlineInPast(t *testing.T) {
	t.Parallel()
	client, server := connPair(t, protocol.ConnConfig{}, protocol.ConnConfig{})
	if _, err := server.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := client.SetDeadline(time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read with a deadline in the past = %v", err)
	}
}

// TestConnDetectsSilentPeer uses a raw peer that never reads, so it never
// answers a ping: the Conn must give up on it by itself.
func TestConnDetectsSilentPeer(t *testing.T) {
	t.Parallel()
	cws, _ := wsPair(t) // the server end stays unread
	client := protocol.NewConn(cws, fastLiveness)
	defer client.Close()
	start := time.Now()
	res := waitRead(t, goRead(client, 10))
	if !errors.Is(res.err, protocol.ErrPeerUnresponsive) {
		t.Fatalf("Read from a silent peer = %v, want ErrPeerUnresponsive", res.err)
	}
	if elapsed, min := time.Since(start), fastLiveness.PingInterval+fastLiveness.PongTimeout; elapsed < min {
		t.Errorf("declared dead after %v, before PingInterval+PongTimeout = %v", elapsed, min)
	}
	select {
	case <-client.Done():
	case <-time.After(waitLimit):
		t.Fatal("the Conn did not close itself")
	}
	if _, err := client.Write([]byte("x")); err == nil {
		t.Error("Write on a Conn closed for silence succeeded")
	}
}

// TestConnLivePeerStaysUp checks that pongs keep an idle connection alive
// well past PingInterval + PongTimeout.
func TestConnLivePeerStaysUp(t *testing.T) {
	t.Parallel()
	client, server := connPair(t, fastLiveness, fastLiveness)
	clientRead, serverRead := goRead(client, 10), goRead(server, 10)
	idle := time.NewTimer(4 * (fastLiveness.PingInterval + fastLiveness.PongTimeout))
	defer idle.Stop()
	select {
	case r := <-clientRead:
		t.Fatalf("agent's Read returned while idle: %q, %v", r.data, r.err)
	case r := <-serverRead:
		t.Fatalf("relay's Read returned while idle: %q, %v", r.data, r.err)
	case <-idle.C: // the idle time passed with both ends up
	}
	if _, err := server.Write([]byte("still here")); err != nil {
		t.Fatal(err)
	}
	if r := waitRead(t, clientRead); r.err != nil || string(r.data) != "still here" {
		t.Fatalf("Read = %q, %v", r.data, r.err)
	}
}

// TestConnPausedReaderIsNotDeadPeer checks that a caller that stops
// reading for longer than the liveness window can read again: the pongs it
// did not read were not the peer's fault.
func TestConnPausedReaderIsNotDeadPeer(t *testing.T) {
	t.Parallel()
	client, server := connPair(t, fastLiveness, fastLiveness)
	serverRead := goRead(server, 10) // the relay end answers pings
	pause := time.NewTimer(3 * (fastLiveness.PingInterval + fastLiveness.PongTimeout))
	defer pause.Stop()
	select {
	case r := <-serverRead:
		t.Fatalf("relay's Read returned: %q, %v", r.data, r.err)
	case <-pause.C: // the agent end did not read all this time
	}
	if _, err := server.Write([]byte("late")); err != nil {
		t.Fatal(err)
	}
	if r := waitRead(t, goRead(client, 10)); r.err != nil || string(r.data) != "late" {
		t.Fatalf("Read after a pause = %q, %v", r.data, r.err)
	}
}

func TestConnPeerCloseIsEOF(t *testing.T) {
	t.Parallel()
	client, server := connPair(t, protocol.ConnConfig{}, protocol.ConnConfig{})
	if _, err := server.Write([]byte("last")); err != nil {
		t.Fatal(err)
	}
	if err := server.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	got, err := io.ReadAll(client)
	if err != nil || string(got) != "last" {
		t.Fatalf("ReadAll after the peer closed = %q, %v; want the data, then io.EOF", got, err)
	}
}

func TestConnClose(t *testing.T) {
	t.Parallel()
	client, _ := connPair(t, protocol.ConnConfig{}, protocol.ConnConfig{})
	blocked := goRead(client, 10)
	if err := client.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if r := waitRead(t, blocked); !errors.Is(r.err, net.ErrClosed) {
		t.Errorf("Read blocked during Close = %v, want net.ErrClosed", r.err)
	}
	if _, err := client.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Read after Close = %v, want net.ErrClosed", err)
	}
	if _, err := client.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Write after Close = %v, want net.ErrClosed", err)
	}
	select {
	case <-client.Done():
	default:
		t.Error("Done is open after Close")
	}
	client.Close() // a second Close returns at once
	if client.LocalAddr() == nil || client.RemoteAddr() == nil {
		t.Error("no addresses")
	}
}

func TestConnTextMessageIsError(t *testing.T) {
	t.Parallel()
	cws, sws := wsPair(t)
	client := protocol.NewConn(cws, protocol.ConnConfig{})
	defer client.Close()
	if err := sws.WriteMessage(websocket.TextMessage, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := client.Read(make([]byte, 10)); err == nil || !strings.Contains(err.Error(), "text message") {
			t.Fatalf("Read of a text message = %v", err)
		}
	}
}

func TestConnOversizedMessage(t *testing.T) {
	t.Parallel()
	cws, sws := wsPair(t)
	client := protocol.NewConn(cws, protocol.ConnConfig{})
	defer client.Close()
	go func() { _ = sws.WriteMessage(websocket.BinaryMessage, make([]byte, protocol.MaxMessage+1)) }()
	if _, err := io.ReadAll(client); !errors.Is(err, websocket.ErrReadLimit) {
		t.Fatalf("Read of a message over MaxMessage = %v, want websocket.ErrReadLimit", err)
	}
}

// TestConnWriteDeadline blocks a Write on a peer that does not read and
// checks that SetWriteDeadline ends it.
func TestConnWriteDeadline(t *testing.T) {
	t.Parallel()
	cws, _ := wsPair(t) // the server end stays unread
	client := protocol.NewConn(cws, protocol.ConnConfig{})
	defer client.Close()
	written := make(chan error, 1)
	go func() {
		_, err := client.Write(make([]byte, 256<<20)) // more than the socket buffers hold
		written <- err
	}()
	if err := client.SetWriteDeadline(time.Now().Add(100 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-written:
		var ne net.Error
		if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("Write past the deadline = %v", err)
		}
	case <-time.After(waitLimit):
		t.Fatal("Write blocked past its deadline")
	}
}

// gateConn is a connection whose writes, once it is armed, act as if the
// peer stopped reading right after one more frame: the first Write waits
// until the test lets it go and then goes through; every later one blocks
// until its write deadline, as a full socket does.
type gateConn struct {
	net.Conn
	armed   atomic.Bool
	first   sync.Once
	entered chan struct{}
	release chan struct{}

	mu       sync.Mutex
	deadline time.Time
	changed  chan struct{} // closed and replaced when the deadline changes
}

func newGateConn() *gateConn {
	return &gateConn{entered: make(chan struct{}), release: make(chan struct{}), changed: make(chan struct{})}
}

func (g *gateConn) Write(p []byte) (int, error) {
	if !g.armed.Load() {
		return g.Conn.Write(p)
	}
	passed := false
	g.first.Do(func() {
		close(g.entered)
		<-g.release
		passed = true
	})
	if passed {
		return g.Conn.Write(p)
	}
	for {
		g.mu.Lock()
		deadline, changed := g.deadline, g.changed
		g.mu.Unlock()
		if deadline.IsZero() {
			<-changed
			continue
		}
		wait := time.Until(deadline)
		if wait <= 0 {
			return 0, os.ErrDeadlineExceeded
		}
		timer := time.NewTimer(wait)
		select {
		case <-changed:
		case <-timer.C:
		}
		timer.Stop()
	}
}

func (g *gateConn) SetWriteDeadline(t time.Time) error {
	g.mu.Lock()
	g.deadline = t
	close(g.changed)
	g.changed = make(chan struct{})
	g.mu.Unlock()
	return g.Conn.SetWriteDeadline(t)
}

func (g *gateConn) SetDeadline(t time.Time) error {
	if err := g.SetWriteDeadline(t); err != nil {
		return err
	}
	return g.Conn.SetReadDeadline(t)
}

// TestConnWriteDeadlineHoldsMidMessage sets the write deadline while a
// message is half written, to a peer that does not read. gorilla sets the
// deadline a message began with (none) before each of its frames; the
// deadline set in the middle must still end the Write.
func TestConnWriteDeadlineHoldsMidMessage(t *testing.T) {
	t.Parallel()
	url, accepted := tunnelServer(t)
	gate := newGateConn()
	dialer := websocket.Dialer{
		Subprotocols:     []string{protocol.Subprotocol},
		HandshakeTimeout: waitLimit,
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			gate.Conn = conn
			return gate, err
		},
	}
	cws, resp, err := dialer.Dial(url, http.Header{"Authorization": {"Bearer test-token"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	select {
	case sws := <-accepted: // stays unread
		t.Cleanup(func() { sws.Close() })
	case <-time.After(waitLimit):
		t.Fatal("the server did not accept the WebSocket")
	}
	client := protocol.NewConn(cws, protocol.ConnConfig{})
	defer client.Close()
	gate.armed.Store(true)
	written := make(chan error, 1)
	go func() {
		_, err := client.Write(make([]byte, 256<<20)) // more than the socket buffers hold
		written <- err
	}()
	select {
	case <-gate.entered: // the first frame of the first message is on its way; the next one sticks
	case <-time.After(waitLimit):
		t.Fatal("the Write did not start")
	}
	if err := client.SetWriteDeadline(time.Now().Add(100 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	close(gate.release)
	select {
	case err := <-written:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Write past the deadline = %v", err)
		}
	case <-time.After(waitLimit):
		t.Fatal("Write blocked past a deadline set in the middle of a message")
	}
}

// TestConnJoinsMuxFrames checks how yamux's writes become messages: a
// data-frame header goes with its body, and frames without a body wait for
// data to ride along with, or go together after a moment.
func TestConnJoinsMuxFrames(t *testing.T) {
	t.Parallel()
	cws, sws := wsPair(t)
	c := protocol.NewConn(cws, protocol.ConnConfig{})
	t.Cleanup(func() { c.Close() })
	dataHdr := []byte{0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 5}   // version 0, data, stream 1, length 5
	windowHdr := []byte{0, 1, 0, 1, 0, 0, 0, 3, 0, 4, 0, 0} // window update opening stream 3: no body follows
	emptyData := []byte{0, 0, 0, 4, 0, 0, 0, 1, 0, 0, 0, 0} // data with FIN, length 0: no body
	notMux := []byte("twelve bytes")                        // not a yamux header: goes at once
	join := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	steps := []struct {
		writes [][]byte
		want   [][]byte // messages that arrive
	}{
		{[][]byte{dataHdr, []byte("hello")}, [][]byte{join(dataHdr, []byte("hello"))}},
		{[][]byte{windowHdr, dataHdr, []byte("hello")}, [][]byte{join(windowHdr, dataHdr, []byte("hello"))}},
		{[][]byte{windowHdr, emptyData}, [][]byte{join(windowHdr, emptyData)}}, // after a moment, together
		{[][]byte{notMux}, [][]byte{notMux}},
	}
	_ = sws.SetReadDeadline(time.Now().Add(waitLimit))
	for i, step := range steps {
		for _, w := range step.writes {
			if n, err := c.Write(w); err != nil || n != len(w) {
				t.Fatalf("step %d: Write(%d bytes) = %d, %v", i, len(w), n, err)
			}
		}
		for _, w := range step.want {
			kind, msg, err := sws.ReadMessage()
			if err != nil || kind != websocket.BinaryMessage || !bytes.Equal(msg, w) {
				t.Fatalf("step %d: message %v %x (%v), want %x", i, kind, msg, err, w)
			}
		}
	}
}

// TestConnLastHeardFollowsPings checks that LastHeard moves with the peer's
// pings and pongs while nothing else is sent, so a relay can show when it
// last heard from an idle agent.
func TestConnLastHeardFollowsPings(t *testing.T) {
	t.Parallel()
	client, server := connPair(t, fastLiveness, fastLiveness)
	goRead(client, 10)
	goRead(server, 10)
	first := server.LastHeard()
	deadline := time.Now().Add(waitLimit)
	for !server.LastHeard().After(first) {
		if time.Now().After(deadline) {
			t.Fatalf("LastHeard stayed at %v while the peer pinged", first)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if d := time.Since(server.LastHeard()); d < 0 || d > waitLimit {
		t.Fatalf("LastHeard is %v ago", d)
	}
}

// TestConnCloseSendsHeldFrames checks that frames held back for data go out
// before the Conn closes.
func TestConnCloseSendsHeldFrames(t *testing.T) {
	t.Parallel()
	cws, sws := wsPair(t)
	c := protocol.NewConn(cws, protocol.ConnConfig{})
	goAway := []byte{0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	if _, err := c.Write(goAway); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	_ = sws.SetReadDeadline(time.Now().Add(waitLimit))
	if kind, msg, err := sws.ReadMessage(); err != nil || kind != websocket.BinaryMessage || !bytes.Equal(msg, goAway) {
		t.Fatalf("message %v %x (%v), want the go-away frame %x", kind, msg, err, goAway)
	}
}
