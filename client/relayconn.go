package client

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"

	"golang.org/x/net/http/httpproxy"
)

// ProxyFunc picks the proxy for a request to the relay; nil means none.
type ProxyFunc func(*http.Request) (*url.URL, error)

// ProxyFromEnvironment returns the proxy settings of HTTPS_PROXY,
// HTTP_PROXY and NO_PROXY (and their lower-case forms) as they are now.
// Like net/http it sends no request for localhost or a loopback address
// through a proxy; unlike http.ProxyFromEnvironment it reads the
// environment at each call rather than once per process. A proxy URL holds
// its credentials (http://user:password@proxy:3128); they travel in
// Proxy-Authorization. Proxies are http:// (HTTP CONNECT) or socks5://.
func ProxyFromEnvironment() ProxyFunc {
	fn := httpproxy.FromEnvironment().ProxyFunc()
	return func(req *http.Request) (*url.URL, error) { return fn(req.URL) }
}

// RelayTLSConfig is the TLS configuration for reaching a relay: the
// system's roots plus the PEM certificates in caFile (a private CA), or no
// verification at all when insecure is set, which only a test relay should
// need: anyone on the path can then read and change the webhooks.
func RelayTLSConfig(caFile string, insecure bool) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("read --ca-file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--ca-file %s holds no PEM certificate", caFile)
		}
		cfg.RootCAs = pool
	}
	cfg.InsecureSkipVerify = insecure
	return cfg, nil
}

// RelayHTTPClient is an HTTP client for the relay's API that uses tlsConfig
// (nil: the system's roots) and proxy (nil: no proxy), with a timeout for
// each request.
func RelayHTTPClient(tlsConfig *tls.Config, proxy ProxyFunc, timeout time.Duration) *http.Client {
	transport := &http.Transport{
		Proxy:                 proxy,
		DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tlsConfig,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          10,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	return &http.Client{Transport: transport, Timeout: timeout}
}

// ProxyFor describes the proxy that proxy picks for a request to rawURL
// (http, https, ws or wss), "" when none; its password is left out.
func ProxyFor(proxy ProxyFunc, rawURL string) string {
	if proxy == nil {
		return ""
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return ""
	}
	switch u.Scheme { // as the WebSocket dialer asks
	case "ws":
		u.Scheme = "http"
	case "wss":
		u.Scheme = "https"
	}
	p, err := proxy(&http.Request{URL: u})
	if err != nil || p == nil {
		return ""
	}
	return p.Redacted()
}
