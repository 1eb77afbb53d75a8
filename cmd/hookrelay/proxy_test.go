package main

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// privateCA writes a CA certificate and a certificate for host signed by
// it, as PEM files in dir, and returns their paths and the CA's pool.
func privateCA(t *testing.T, dir, host string) (caFile, certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "hookrelay test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, kind string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pool = x509.NewCertPool()
	pool.AddCert(ca)
	return write("ca.pem", "CERTIFICATE", caDER), write("relay.pem", "CERTIFICATE", leafDER), write("relay-key.pem", "EC PRIVATE KEY", keyDER), pool
}

// connectProxy is an HTTP CONNECT proxy on 127.0.0.1 that wants the
// credentials user:password and knows one name the machine cannot
// resolve: name:port leads to 127.0.0.1:port, as a corporate proxy
// reaches hosts its clients cannot.
type connectProxy struct {
	t        *testing.T
	ln       net.Listener
	name     string
	wantAuth string

	mu      sync.Mutex
	tunnels []string // host:port of each CONNECT it let through
	refused int      // CONNECTs refused for their credentials
	wg      sync.WaitGroup
}

func newConnectProxy(t *testing.T, name, user, password string) *connectProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &connectProxy{t: t, ln: ln, name: name,
		wantAuth: "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))}
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Go(func() { p.serve(c) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		p.wg.Wait()
	})
	return p
}

func (p *connectProxy) serve(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Minute))
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	if req.Method != http.MethodConnect {
		io.WriteString(c, "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
		return
	}
	if req.Header.Get("Proxy-Authorization") != p.wantAuth {
		p.mu.Lock()
		p.refused++
		p.mu.Unlock()
		io.WriteString(c, "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"test\"\r\nContent-Length: 0\r\n\r\n")
		return
	}
	host, port, err := net.SplitHostPort(req.Host)
	if err != nil || host != p.name {
		io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
		return
	}
	upstream, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", port))
	if err != nil {
		io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
		return
	}
	defer upstream.Close()
	p.mu.Lock()
	p.tunnels = append(p.tunnels, req.Host)
	p.mu.Unlock()
	_ = c.SetDeadline(time.Time{})
	io.WriteString(c, "HTTP/1.1 200 Connection Established\r\n\r\n")
	done := make(chan struct{})
	go func() {
		io.Copy(upstream, br) // what the client sent, buffered bytes first
		upstream.(*net.TCPConn).CloseWrite()
		close(done)
	}()
	io.Copy(c, upstream)
	c.Close()
	<-done
}

func (p *connectProxy) counts() (tunnels []string, refused int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.tunnels...), p.refused
}

// TestConnectThroughProxyWithPrivateCA runs the CLI against a TLS relay
// whose certificate comes from a private CA and whose name only an HTTP
// CONNECT proxy with credentials can reach: the API client and the tunnel
// both go through the proxy of HTTPS_PROXY, trust --ca-file, and webhooks
// flow. Wrong proxy credentials and a missing --ca-file fail clearly.
func TestConnectThroughProxyWithPrivateCA(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	caFile, cert, key, pool := privateCA(t, dir, "relay.test")
	relay := startRelayBin(t, "--tls-cert", cert, "--tls-key", key)
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(relay.URL, "https://"))
	server := "https://relay.test:" + port
	proxy := newConnectProxy(t, "relay.test", "alice", "s3cret")
	proxyURL := "http://alice:s3cret@" + proxy.ln.Addr().String()
	env := append(noUserConfig(t), "HOOKRELAY_SERVER="+server, "HOOKRELAY_TOKEN="+relay.Token,
		"HTTPS_PROXY="+proxyURL, "HOOKRELAY_CA_FILE="+caFile)

	out, code := runIn(t, env, "", "channel", "create", "--json")
	if code != 0 {
		t.Fatalf("channel create through the proxy: exit %d: %s", code, out)
	}
	ch := out[strings.Index(out, `"id": "`)+7:]
	ch = ch[:strings.Index(ch, `"`)]

	target := app(t, "app")
	agent := start(t, env, "connect", ch, "--to", target.URL, "--plain")
	agent.waitLine(t, "connected to "+server, 30*time.Second)
	sender := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "relay.test"}}}
	defer sender.CloseIdleConnections()
	resp, err := sender.Post("https://127.0.0.1:"+port+"/h/"+ch+"/pay", "text/plain", strings.NewReader("hi"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "app got /pay hi" {
		t.Fatalf("webhook through the proxied agent: %d %q", resp.StatusCode, body)
	}
	tunnels, refused := proxy.counts()
	if len(tunnels) < 2 || refused != 0 {
		t.Errorf("the proxy let through %v and refused %d, want the API call and the tunnel", tunnels, refused)
	}
	for _, h := range tunnels {
		if h != "relay.test:"+port {
			t.Errorf("the proxy was asked for %s", h)
		}
	}

	out, code = runIn(t, env, "", "doctor", ch, "--to", target.URL)
	if code != 0 || !strings.Contains(out, "through proxy http://alice:xxxxx@") || !strings.Contains(out, "PASS  tunnel: WebSocket upgrade to wss://relay.test:"+port) ||
		strings.Contains(out, "s3cret") {
		t.Errorf("doctor through the proxy: exit %d:\n%s", code, out)
	}

	wrong := append(append([]string{}, env...), "HTTPS_PROXY=http://alice:wrong@"+proxy.ln.Addr().String())
	out, code = runIn(t, wrong, "", "doctor", ch, "--to", target.URL)
	if code != 1 || !strings.Contains(out, "FAIL  relay reachable") || !strings.Contains(out, "Proxy Authentication Required") {
		t.Errorf("doctor with wrong proxy credentials: exit %d:\n%s", code, out)
	}
	agentWrong := start(t, wrong, "connect", ch, "--to", target.URL, "--plain")
	agentWrong.waitLine(t, "Proxy Authentication Required", 30*time.Second)
	if _, refused := proxy.counts(); refused < 2 {
		t.Errorf("the proxy refused %d requests with wrong credentials", refused)
	}

	noCA := append(append([]string{}, env...), "HOOKRELAY_CA_FILE=")
	out, code = runIn(t, noCA, "", "channel", "list")
	if code == 0 || !strings.Contains(out, "certificate") {
		t.Errorf("channel list without the CA: exit %d: %s", code, out)
	}
	out, code = runIn(t, noCA, "", "channel", "list", "--insecure")
	if code != 0 || !strings.Contains(out, "warning: --insecure") || !strings.Contains(out, ch) {
		t.Errorf("channel list --insecure: exit %d: %s", code, out)
	}
}
