package e2e

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/hookrelay/hookrelay/client"
	"github.com/hookrelay/hookrelay/protocol"
	"github.com/hookrelay/hookrelay/server"
	"github.com/hookrelay/hookrelay/server/store/sqlite"
)

func TestAgentsPerTokenAndChannelsPerTeamAreCapped(t *testing.T) {
	t.Parallel()
	relay := startRelay(t, func(c *server.Config) {
		c.MaxAgentsPerToken = 2
		c.MaxChannelsPerTeam = 1
	})
	s := setupTeams(t, relay) // each team's member created one channel already
	if _, err := client.NewAPI(relay.URL, s.tokens["A-member"]).CreateChannel(t.Context(), client.CreateChannel{}); !client.IsStatus(err, http.StatusTooManyRequests) || !strings.Contains(err.Error(), "max_channels_per_team") {
		t.Fatalf("second channel of a team capped at 1: %v", err)
	}
	target := hashTarget(t)
	token := func(c *client.Config) { c.Token = s.tokens["A-agent"] }
	relay.startAgent(t, s.chanA, target.URL, token, func(c *client.Config) { c.Host = "one" })
	relay.startAgent(t, s.chanA, target.URL, token, func(c *client.Config) { c.Host = "two" })
	var sawLimit bool
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	third, err := client.New(client.Config{ServerURL: relay.URL, Token: s.tokens["A-agent"], Target: target.URL,
		Subscriptions: []protocol.Subscription{{Channel: s.chanA}}, Out: io.Discard, Host: "three",
		MaxBackoff: 100 * time.Millisecond, OnState: func(st client.State) {
			if st.Err != nil && strings.Contains(st.Err.Error(), "max_agents_per_token") {
				sawLimit = true
				cancel()
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	_ = third.Run(ctx)
	if !sawLimit {
		t.Fatal("a third agent on a token capped at 2 was not refused with a clear message")
	}
	if n := relay.agentCount(t, s.chanA); n != 2 {
		t.Fatalf("%d agents connected, want 2", n)
	}
}

func TestSlowSenderIsCutOff(t *testing.T) {
	t.Parallel()
	relay := startRelay(t, func(c *server.Config) { c.ReadTimeout = 300 * time.Millisecond })
	ch := relay.channel(t, client.CreateChannel{})
	conn, err := net.Dial("tcp", relay.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Announce 10 bytes, send 1, then stall.
	fmt.Fprintf(conn, "POST /h/%s HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nx", ch)
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 512)
	_, err = io.ReadAtLeast(conn, buf, 1)
	for err == nil {
		_, err = conn.Read(buf)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("the relay kept waiting for a stalled body")
	}
	page, _ := relay.api().ListEvents(t.Context(), ch, nil)
	if len(page.Events) != 0 {
		t.Fatalf("a cut-off request was stored: %+v", page.Events)
	}
}

// TestBrowserOriginCannotOpenTunnel: a page of another origin may not open
// a tunnel; the relay's own origins (its Host, its public URL behind a proxy
// that rewrites Host) are judged as everywhere else in the relay.
func TestBrowserOriginCannotOpenTunnel(t *testing.T) {
	t.Parallel()
	relay := startRelay(t, func(c *server.Config) { c.PublicURL = "https://relay.example.com" })
	relay.channel(t, client.CreateChannel{})
	d := websocket.Dialer{Subprotocols: []string{protocol.Subprotocol}}
	for origin, want := range map[string]int{
		"https://evil.example":      http.StatusForbidden,
		"https://relay.example.com": http.StatusSwitchingProtocols,
		"http://" + relay.addr:      http.StatusSwitchingProtocols,
	} {
		h := http.Header{"Authorization": {"Bearer " + adminToken}, "Origin": {origin}}
		ws, resp, err := d.Dial("ws://"+relay.addr+"/tunnel", h)
		if resp == nil || resp.StatusCode != want {
			t.Errorf("tunnel from origin %s: %v %v, want %d", origin, resp, err, want)
		}
		if ws != nil {
			ws.Close()
		}
	}
}

// selfSigned returns a certificate for 127.0.0.1 and a pool trusting it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "hookrelay test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

func TestTLSEndToEnd(t *testing.T) {
	t.Parallel()
	cert, pool := selfSigned(t)
	st, err := sqlite.Open(t.TempDir()+"/hookrelay.db", sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	relay, err := server.New(server.Config{Store: st, AdminToken: adminToken, TLS: true})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := tls.NewListener(raw, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}})
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- relay.Serve(ctx, ln) }()
	defer func() {
		cancel()
		<-served
		relay.Close()
	}()
	base := "https://" + raw.Addr().String()
	api := client.NewAPI(base, adminToken)
	api.HTTP.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	ch, err := api.CreateChannel(t.Context(), client.CreateChannel{})
	if err != nil || !strings.HasPrefix(ch.URL, "https://") {
		t.Fatalf("create over TLS: %+v %v", ch, err)
	}
	target := hashTarget(t)
	agent, err := client.New(client.Config{ServerURL: base, Token: adminToken, Target: target.URL,
		Subscriptions: []protocol.Subscription{{Channel: ch.ID}}, Out: io.Discard,
		Dialer: &websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: pool}, Subprotocols: []string{protocol.Subprotocol}}})
	if err != nil {
		t.Fatal(err)
	}
	actx, acancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- agent.Run(actx) }()
	defer func() {
		acancel()
		<-done
	}()
	select {
	case <-agent.Connected():
	case <-time.After(10 * time.Second):
		t.Fatalf("agent did not connect over wss: %+v", agent.State())
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := hc.Post(ch.URL+"/x", "text/plain", strings.NewReader("over tls"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || len(body) != 64 {
		t.Fatalf("webhook over TLS: %d %s", resp.StatusCode, body)
	}
}

// TestOversizeBodyAnswerReachesAWriteFirstSender: a sender that writes its
// whole body before reading (Python's urllib does) reads the 413 for a
// 26 MiB body, and the 404 of an unknown channel for a large one, instead
// of a connection reset; a sender that asks for 100 Continue gets the 413
// without sending its body.
func TestOversizeBodyAnswerReachesAWriteFirstSender(t *testing.T) {
	t.Parallel()
	relay := startRelay(t)
	ch := relay.channel(t, client.CreateChannel{})
	body := make([]byte, 26<<20)
	for _, tc := range []struct {
		name, path, framing string
		want                int
		code                string
	}{
		{"Content-Length over max_body", "/h/" + ch, "length", http.StatusRequestEntityTooLarge, "body_too_large"},
		{"chunked over max_body", "/h/" + ch, "chunked", http.StatusRequestEntityTooLarge, "body_too_large"},
		{"unknown channel", "/h/no-such-channel", "length", http.StatusNotFound, "channel_not_found"},
		{"Expect: 100-continue", "/h/" + ch, "expect", http.StatusRequestEntityTooLarge, "body_too_large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			conn, err := net.Dial("tcp", relay.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
			head := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/octet-stream\r\n", tc.path, relay.addr)
			switch tc.framing {
			case "length":
				head += fmt.Sprintf("Content-Length: %d\r\n\r\n", len(body))
			case "chunked":
				head += "Transfer-Encoding: chunked\r\n\r\n"
			case "expect":
				head += fmt.Sprintf("Content-Length: %d\r\nExpect: 100-continue\r\n\r\n", len(body))
			}
			if _, err := io.WriteString(conn, head); err != nil {
				t.Fatal(err)
			}
			switch tc.framing {
			case "length":
				_, err = conn.Write(body)
			case "chunked":
				for off := 0; off < len(body) && err == nil; off += 1 << 20 {
					_, err = fmt.Fprintf(conn, "%x\r\n%s\r\n", 1<<20, body[off:off+1<<20])
				}
				if err == nil {
					_, err = io.WriteString(conn, "0\r\n\r\n")
				}
			}
			if err != nil {
				t.Fatalf("writing the whole body before reading: %v", err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatalf("reading the answer: %v", err)
			}
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.want || !strings.Contains(string(b), tc.code) {
				t.Fatalf("got %d %s, want %d %s", resp.StatusCode, b, tc.want, tc.code)
			}
		})
	}
}
