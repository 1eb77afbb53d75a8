package wireheader

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestGoClient(t *testing.T) {
	t.Parallel()
	addr := startServer(t, 0, nil)
	tr := &http.Transport{ExpectContinueTimeout: 10 * time.Second}
	t.Cleanup(tr.CloseIdleConnections)
	testGoClient(t, &http.Client{Transport: tr, Timeout: 20 * time.Second}, "http://"+addr)
}

// testGoClient sends requests with Go's client, whose header order is its own,
// and checks that Headers recovers them consistently with r.Header on a reused
// connection.
func testGoClient(t *testing.T, client *http.Client, base string) {
	t.Helper()
	type request struct {
		method string
		body   io.Reader
		header http.Header
	}
	unsized := func(s string) io.Reader { return io.MultiReader(strings.NewReader(s)) } // sent chunked
	reqs := []request{
		{method: "GET", header: http.Header{"X-B": {"1"}, "X-A": {"2", "3"}}},
		{method: "POST", body: strings.NewReader(`{"a":1}`), header: http.Header{"Content-Type": {"application/json"}}},
		{method: "POST", body: unsized("chunked body"), header: http.Header{"Trailer": {"X-Sum"}}},
		{method: "PUT", body: strings.NewReader("continue"), header: http.Header{"Expect": {"100-continue"}}},
		{method: "HEAD"},
		{method: "DELETE", header: http.Header{"Pragma": {"no-cache"}}},
	}
	reused := 0
	for i, rq := range reqs {
		req, err := http.NewRequest(rq.method, fmt.Sprintf("%s/h/ch/%d?n=%d", base, i, i), rq.body)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range rq.header {
			req.Header[k] = v
		}
		if rq.header.Get("Trailer") != "" {
			req.Header.Del("Trailer")
			req.Trailer = http.Header{"X-Sum": {"42"}}
		}
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			GotConn: func(info httptrace.GotConnInfo) {
				if info.Reused {
					reused++
				}
			},
		}))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		e := decodeEcho(t, resp)
		if !e.OK {
			t.Fatalf("%s %s: Headers ok=false", rq.method, req.URL)
		}
		// Rebuild r.Header from the wire headers independently of the
		// package: canonical names, Host and framing fields set aside.
		got := http.Header{}
		host := ""
		for _, h := range e.Headers {
			switch k := textproto.CanonicalMIMEHeaderKey(h.Name); k {
			case "Host":
				host = h.Value
			case "Transfer-Encoding":
				if !slices.Equal(e.TransferEncoding, []string{h.Value}) {
					t.Errorf("wire Transfer-Encoding %q, r.TransferEncoding %q", h.Value, e.TransferEncoding)
				}
			case "Trailer":
				// net/http moves it to r.Trailer.
			default:
				got[k] = append(got[k], h.Value)
			}
		}
		// net/http adds Cache-Control for a lone Pragma: no-cache.
		if p := got["Pragma"]; len(p) > 0 && p[0] == "no-cache" && got["Cache-Control"] == nil {
			got["Cache-Control"] = []string{"no-cache"}
		}
		if host != e.Host {
			t.Errorf("wire Host %q, r.Host %q", host, e.Host)
		}
		if !equalHeader(got, e.Header) {
			t.Errorf("%s: wire headers %q, r.Header %q", rq.method, got, e.Header)
		}
		if e.Method != rq.method || e.RequestURI != req.URL.RequestURI() {
			t.Errorf("handler saw %s %s", e.Method, e.RequestURI)
		}
	}
	if reused != len(reqs)-1 {
		t.Errorf("%d of %d requests reused the connection", reused, len(reqs)-1)
	}
}

func TestTLS(t *testing.T) {
	t.Parallel()
	cert, pool := testCertificate(t)
	addr := startServer(t, 0, func(ln net.Listener) net.Listener {
		return tls.NewListener(ln, &tls.Config{
			Certificates: []tls.Certificate{cert},
			NextProtos:   []string{"http/1.1"},
		})
	})
	clientConfig := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}

	c, err := tls.Dial("tcp", addr, clientConfig)
	if err != nil {
		t.Fatal(err)
	}
	rc := newRawClient(t, c)
	for _, q := range keepAliveSequence[:3] {
		rc.write(q.String())
		if e := q.check(t, rc.read(q.method), true); e.TLS {
			t.Error("r.TLS is set; the package documentation says it is nil")
		}
	}

	tr := &http.Transport{TLSClientConfig: clientConfig, ExpectContinueTimeout: 10 * time.Second}
	t.Cleanup(tr.CloseIdleConnections)
	testGoClient(t, &http.Client{Transport: tr, Timeout: 20 * time.Second}, "https://"+addr)
}

// testCertificate makes a self-signed certificate for 127.0.0.1.
func testCertificate(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "wireheader test"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true,

		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}
