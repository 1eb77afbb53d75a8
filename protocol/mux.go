package protocol

import (
	"io"
	"log"
	"net"
	"time"

	"github.com/hashicorp/yamux"
)

// StreamWindow is the largest yamux receive window per stream the agent
// announces: how many bytes a sender may have in flight on one stream
// before the receiver reads them. A large window lets a 25 MiB body cross
// a long link without stalling on a window update every 256 KiB. yamux
// announces the whole window when a stream opens, so a receiver may buffer
// up to the window for every stream it does not read; bound the number of
// concurrent streams (Limits.MaxConcurrency) to bound memory.
const StreamWindow = 8 << 20

// MinStreamWindow is the smallest: yamux's initial window.
const MinStreamWindow = 256 << 10

// windowRate is the rate one stream should reach on a link: the window an
// agent announces is the link's round trip times this rate.
const windowRate = 128 << 20 // bytes per second

// StreamWindowFor returns the receive window an agent announces on a link
// whose round trip is about rtt: rtt × 128 MiB/s, from MinStreamWindow up
// to StreamWindow. A window larger than the link needs buys no speed and
// costs the receiver: yamux grows a stream's buffer, zeroing each new one,
// whenever the sender is ahead of the reader (the agent's app), so on a
// fast link a large window makes every large body allocate and clear
// several times its size.
func StreamWindowFor(rtt time.Duration) uint32 {
	w := max(rtt, 0).Seconds() * windowRate
	return uint32(min(max(w, MinStreamWindow), StreamWindow))
}

// RelayStreamWindow is the relay's own receive window per stream, yamux's
// smallest. The relay receives only control frames and the apps' answers,
// and it must bound what an agent can make it hold: at most this much for
// each stream it has open with an agent, of which there are at most
// Limits.MaxConcurrency deliveries and the control stream.
const RelayStreamWindow = 256 << 10

// MuxConfig returns the yamux configuration both sides use: a large stream
// window, bounded open and close times, and yamux's own log sent to
// logOutput (nil discards it). yamux's keepalives are off: Conn's
// WebSocket pings check the peer (SPEC.md, section 2), and each yamux
// keepalive would cost a goroutine per session.
func MuxConfig(logOutput io.Writer) *yamux.Config {
	cfg := yamux.DefaultConfig()
	cfg.AcceptBacklog = 512
	cfg.EnableKeepAlive = false
	cfg.ConnectionWriteTimeout = 30 * time.Second
	cfg.MaxStreamWindowSize = StreamWindow
	cfg.StreamOpenTimeout = 30 * time.Second
	cfg.StreamCloseTimeout = 30 * time.Second
	if logOutput == nil {
		logOutput = io.Discard
	}
	cfg.LogOutput = nil
	cfg.Logger = log.New(logOutput, "yamux: ", 0)
	return cfg
}

// Client starts the agent's side of a yamux session on conn, with the
// largest window (StreamWindow).
func Client(conn net.Conn, logOutput io.Writer) (*yamux.Session, error) {
	return ClientWindow(conn, logOutput, StreamWindow)
}

// ClientWindow is Client with a receive window per stream of its own,
// which StreamWindowFor chooses for the link; it is held to
// MinStreamWindow and StreamWindow.
func ClientWindow(conn net.Conn, logOutput io.Writer, window uint32) (*yamux.Session, error) {
	cfg := MuxConfig(logOutput)
	cfg.MaxStreamWindowSize = min(max(window, MinStreamWindow), StreamWindow)
	return yamux.Client(conn, cfg)
}

// Server starts the relay's side of a yamux session on conn: MuxConfig
// with the relay's receive window (RelayStreamWindow) and room for one
// stream opened by the agent, the control stream. Once the relay has
// accepted it, it calls GoAway: yamux then resets at once every further
// stream the agent opens, and an agent's yamux refuses to open one.
func Server(conn net.Conn, logOutput io.Writer) (*yamux.Session, error) {
	cfg := MuxConfig(logOutput)
	cfg.MaxStreamWindowSize = RelayStreamWindow
	cfg.AcceptBacklog = 1
	return yamux.Server(conn, cfg)
}
