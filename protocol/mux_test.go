package protocol_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
	"golang.org/x/sync/errgroup"

	"github.com/hookrelay/hookrelay/protocol"
)

// sessionPair runs a yamux session over a Conn pair: the agent is the yamux
// client, the relay the server. Both end with the test.
func sessionPair(t testing.TB) (agent, relay *yamux.Session) {
	t.Helper()
	clientConn, serverConn := connPair(t, protocol.ConnConfig{}, protocol.ConnConfig{})
	agent, err := protocol.Client(clientConn, nil)
	if err != nil {
		t.Fatal(err)
	}
	relay, err = protocol.Server(serverConn, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		agent.Close()
		relay.Close()
	})
	return agent, relay
}

// handler answers one delivery on the agent's side.
type handler func(req *protocol.DeliveryRequest, body io.Reader) (*protocol.DeliveryResponse, []byte, error)

// serveDeliveries accepts the relay's delivery streams on the agent's
// session until it closes, answering each with h on its own goroutine.
// Errors go to t; the goroutines are waited for when the test ends.
func serveDeliveries(t testing.TB, agent *yamux.Session, h handler) {
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait) // runs after the session is closed
	wg.Go(func() {
		for {
			st, err := agent.AcceptStream()
			if err != nil {
				return // the session ended
			}
			wg.Go(func() {
				defer st.Close()
				_ = st.SetDeadline(time.Now().Add(waitLimit))
				req, err := protocol.ReadRequest(st)
				if err != nil {
					t.Errorf("agent: ReadRequest: %v", err)
					return
				}
				resp, body, err := h(req, io.LimitReader(st, req.BodyLength))
				if err != nil {
					t.Errorf("agent: %v", err)
					return
				}
				// yamux may report a write whose bytes the relay has read as
				// failed when the test closes the session before the writer
				// saw its result; only a write that failed before counts.
				if err := protocol.WriteResponse(st, resp, body); err != nil && !agent.IsClosed() {
					t.Errorf("agent: WriteResponse: %v", err)
				}
			})
		}
	})
	t.Cleanup(func() { agent.Close() }) // ends the accept loop before wg.Wait
}

// deliver runs one delivery from the relay's side, as the relay does.
func deliver(relay *yamux.Session, req *protocol.DeliveryRequest, body []byte) (*protocol.DeliveryResponse, []byte, error) {
	st, err := relay.OpenStream()
	if err != nil {
		return nil, nil, fmt.Errorf("open stream: %w", err)
	}
	defer st.Close()
	_ = st.SetDeadline(time.Now().Add(waitLimit))
	if err := protocol.WriteRequest(st, req, body); err != nil {
		return nil, nil, fmt.Errorf("write request: %w", err)
	}
	resp, err := protocol.ReadResponse(st)
	if err != nil {
		return nil, nil, fmt.Errorf("read response: %w", err)
	}
	respBody := make([]byte, resp.BodyLength)
	if _, err := io.ReadFull(st, respBody); err != nil {
		return nil, nil, fmt.Errorf("read response body: %w", err)
	}
	return resp, respBody, nil
}

// handshake runs hello → welcome on a control stream the agent opens.
func handshake(t *testing.T, agent, relay *yamux.Session) {
	t.Helper()
	hello := validHello()
	welcome := &protocol.ControlMessage{Type: protocol.TypeWelcome, Welcome: &protocol.Welcome{
		SessionID: "ses_1",
		Channels: []protocol.ChannelInfo{
			{Channel: "ch_1", Group: protocol.DefaultGroup("tok_1", hello.Hello.Host), URL: "https://relay.example/h/ch_1"},
			{Channel: "ch_2", Group: "ci", URL: "https://relay.example/h/ch_2"},
		},
		Limits: protocol.Limits{MaxBody: 25 << 20, MaxConcurrency: 64},
	}}

	var g errgroup.Group
	g.Go(func() error { // the relay
		ctrl, err := relay.AcceptStream()
		if err != nil {
			return fmt.Errorf("relay: accept control stream: %w", err)
		}
		got, err := protocol.ReadControl(ctrl)
		if err != nil {
			return fmt.Errorf("relay: read hello: %w", err)
		}
		if !reflect.DeepEqual(got, hello) {
			return fmt.Errorf("relay: hello = %+v, want %+v", got.Hello, hello.Hello)
		}
		return protocol.WriteControl(ctrl, welcome)
	})
	ctrl, err := agent.OpenStream()
	if err != nil {
		t.Fatalf("agent: open control stream: %v", err)
	}
	_ = ctrl.SetDeadline(time.Now().Add(waitLimit))
	if err := protocol.WriteControl(ctrl, hello); err != nil {
		t.Fatalf("agent: write hello: %v", err)
	}
	got, err := protocol.ReadControl(ctrl)
	if err != nil {
		t.Fatalf("agent: read welcome: %v", err)
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, welcome) {
		t.Fatalf("agent: welcome = %+v, want %+v", got.Welcome, welcome.Welcome)
	}
	if ctrl.StreamID() != 1 {
		t.Errorf("control stream id = %d, want 1 (the agent's first stream)", ctrl.StreamID())
	}
}

// echo answers a delivery with the request body, and its method and
// SHA-256 in headers.
func echo(req *protocol.DeliveryRequest, body io.Reader) (*protocol.DeliveryResponse, []byte, error) {
	b, err := io.ReadAll(body)
	if err != nil {
		return nil, nil, fmt.Errorf("read body: %w", err)
	}
	if int64(len(b)) != req.BodyLength {
		return nil, nil, fmt.Errorf("body of %d bytes, want %d", len(b), req.BodyLength)
	}
	sum := sha256.Sum256(b)
	return &protocol.DeliveryResponse{
		Status: 200,
		Headers: []protocol.Header{
			{Name: "X-Delivery", Value: req.DeliveryID},
			{Name: "X-Body-Sha256", Value: hex.EncodeToString(sum[:])},
		},
		BodyLength: int64(len(b)),
		Duration:   time.Millisecond,
	}, b, nil
}

func TestSessionHandshakeAndConcurrentDeliveries(t *testing.T) {
	t.Parallel()
	agent, relay := sessionPair(t)
	handshake(t, agent, relay)
	serveDeliveries(t, agent, echo)

	const deliveries = 50
	var g errgroup.Group
	for i := range deliveries {
		g.Go(func() error {
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			body := randomBytes(uint64(i), rng.IntN(300<<10)) // up to 300 KiB, some across several windows' worth of frames
			req := validRequest(int64(len(body)))
			req.DeliveryID = fmt.Sprintf("dlv_%d", i)
			resp, got, err := deliver(relay, req, body)
			if err != nil {
				return fmt.Errorf("delivery %d: %w", i, err)
			}
			sum := sha256.Sum256(body)
			switch {
			case resp.Status != 200:
				return fmt.Errorf("delivery %d: status %d", i, resp.Status)
			case resp.Headers[0].Value != req.DeliveryID:
				return fmt.Errorf("delivery %d: answered for %s", i, resp.Headers[0].Value)
			case resp.Headers[1].Value != hex.EncodeToString(sum[:]):
				return fmt.Errorf("delivery %d: the agent saw another body", i)
			case !bytes.Equal(got, body):
				return fmt.Errorf("delivery %d: response body differs", i)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
}

// TestSessionLargeBody sends a 25 MiB body (the relay's default max_body)
// through one stream and checks it arrives intact.
func TestSessionLargeBody(t *testing.T) {
	t.Parallel()
	agent, relay := sessionPair(t)
	serveDeliveries(t, agent, func(req *protocol.DeliveryRequest, body io.Reader) (*protocol.DeliveryResponse, []byte, error) {
		h := sha256.New()
		n, err := io.Copy(h, body)
		if err != nil || n != req.BodyLength {
			return nil, nil, fmt.Errorf("read %d of %d body bytes: %v", n, req.BodyLength, err)
		}
		return &protocol.DeliveryResponse{Status: 200, Headers: []protocol.Header{
			{Name: "X-Body-Sha256", Value: hex.EncodeToString(h.Sum(nil))},
		}}, nil, nil
	})

	const size = 25 << 20
	body := make([]byte, size)
	_, _ = rand.NewChaCha8([32]byte{1}).Read(body)
	resp, _, err := deliver(relay, validRequest(size), body)
	if err != nil {
		t.Fatal(err)
	}
	sent := sha256.Sum256(body)
	if got, want := resp.Headers[0].Value, hex.EncodeToString(sent[:]); got != want {
		t.Fatalf("the agent's SHA-256 is %s, the relay sent %s", got, want)
	}
}

// TestSessionEndsWhenConnCloses checks that closing the WebSocket ends the
// yamux session on both sides, as a dead peer detected by Conn does.
func TestSessionEndsWhenConnCloses(t *testing.T) {
	t.Parallel()
	clientConn, serverConn := connPair(t, protocol.ConnConfig{}, protocol.ConnConfig{})
	agent, err := protocol.Client(clientConn, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer agent.Close()
	relay, err := protocol.Server(serverConn, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	serverConn.Close()
	for _, s := range []*yamux.Session{relay, agent} {
		select {
		case <-s.CloseChan():
		case <-time.After(waitLimit):
			t.Fatal("the session outlived its connection")
		}
	}
}

func TestMuxConfig(t *testing.T) {
	t.Parallel()
	var log bytes.Buffer
	cfg := protocol.MuxConfig(&log)
	if err := yamux.VerifyConfig(cfg); err != nil {
		t.Fatalf("MuxConfig is not valid: %v", err)
	}
	if cfg.MaxStreamWindowSize != protocol.StreamWindow || cfg.EnableKeepAlive {
		t.Errorf("MuxConfig = %+v", cfg)
	}
	cfg.Logger.Printf("hello")
	if log.String() != "yamux: hello\n" {
		t.Errorf("yamux log went to %q", log.String())
	}
	if err := yamux.VerifyConfig(protocol.MuxConfig(nil)); err != nil {
		t.Fatalf("MuxConfig(nil) is not valid: %v", err)
	}
}

// TestRelayAcceptsOnlyTheControlStream: the relay's session takes one
// stream from the agent; after its GoAway the agent cannot open another,
// while the relay still opens delivery streams.
func TestRelayAcceptsOnlyTheControlStream(t *testing.T) {
	t.Parallel()
	agent, relay := sessionPair(t)
	ctrl, err := agent.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ctrl.Write([]byte("x")); err != nil { // yamux opens a stream with its first write
		t.Fatal(err)
	}
	accepted, err := relay.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer accepted.Close()
	if err := relay.GoAway(); err != nil {
		t.Fatal(err)
	}
	if _, err := relay.Ping(); err != nil { // the agent has seen the GoAway once its pong is back
		t.Fatal(err)
	}
	if _, err := agent.OpenStream(); !errors.Is(err, yamux.ErrRemoteGoAway) {
		t.Errorf("the agent opened a stream after the relay's GoAway: %v", err)
	}
	serveDeliveries(t, agent, func(req *protocol.DeliveryRequest, body io.Reader) (*protocol.DeliveryResponse, []byte, error) {
		return &protocol.DeliveryResponse{Status: 204}, nil, nil
	})
	resp, _, err := deliver(relay, validRequest(0), nil)
	if err != nil || resp.Status != 204 {
		t.Errorf("a delivery after the GoAway: %+v %v", resp, err)
	}
}

func TestStreamWindowFor(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		rtt  time.Duration
		want uint32
	}{
		{-time.Second, protocol.MinStreamWindow},
		{0, protocol.MinStreamWindow},
		{100 * time.Microsecond, protocol.MinStreamWindow}, // loopback
		{time.Millisecond, protocol.MinStreamWindow},       // 128 KiB, below yamux's least
		{4 * time.Millisecond, 536870},                     // 512 KiB and a bit
		{20 * time.Millisecond, 2684354},                   // 2.56 MiB
		{64 * time.Millisecond, protocol.StreamWindow},
		{time.Hour, protocol.StreamWindow},
	} {
		if got := protocol.StreamWindowFor(tc.rtt); got != tc.want {
			t.Errorf("StreamWindowFor(%v) = %d, want %d", tc.rtt, got, tc.want)
		}
	}
}

// TestClientWindowBoundsWhatTheRelaySends: with the smallest window, the
// relay can put only that much on a stream the agent does not read.
func TestClientWindowBoundsWhatTheRelaySends(t *testing.T) {
	t.Parallel()
	clientConn, serverConn := connPair(t, protocol.ConnConfig{}, protocol.ConnConfig{})
	agent, err := protocol.ClientWindow(clientConn, nil, protocol.MinStreamWindow)
	if err != nil {
		t.Fatal(err)
	}
	defer agent.Close()
	relay, err := protocol.Server(serverConn, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	accepted := make(chan *yamux.Stream, 1)
	go func() {
		st, err := agent.AcceptStream()
		if err == nil {
			accepted <- st // accepted (acknowledged) and never read
		}
	}()
	st, err := relay.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// The write gives up after a moment; by then a larger window would
	// have let more than MinStreamWindow through.
	_ = st.SetWriteDeadline(time.Now().Add(500 * time.Millisecond))
	n, err := st.Write(make([]byte, 4*protocol.MinStreamWindow))
	if n != protocol.MinStreamWindow || !errors.Is(err, yamux.ErrTimeout) {
		t.Fatalf("Write to an unread stream = %d, %v; want %d bytes, then a timeout", n, err, protocol.MinStreamWindow)
	}
	select {
	case st := <-accepted:
		st.Close()
	case <-time.After(waitLimit):
		t.Fatal("the agent did not accept the stream")
	}
}
