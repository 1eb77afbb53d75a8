package client

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestProxyFromEnvironment reads the proxy variables at each call: a relay
// goes through HTTPS_PROXY (or HTTP_PROXY for http://) unless NO_PROXY
// names it, and localhost never does. Not parallel: it sets the
// environment.
func TestProxyFromEnvironment(t *testing.T) {
	for _, name := range []string{"https_proxy", "http_proxy", "no_proxy"} {
		t.Setenv(name, "")
	}
	t.Setenv("HTTPS_PROXY", "http://alice:s3cret@proxy.example:3128")
	t.Setenv("HTTP_PROXY", "http://plain-proxy.example:8080")
	t.Setenv("NO_PROXY", "internal.example,.corp.example")
	proxy := ProxyFromEnvironment()
	for url, want := range map[string]string{
		"wss://relay.example.com/tunnel":   "http://alice:xxxxx@proxy.example:3128",
		"https://relay.example.com":        "http://alice:xxxxx@proxy.example:3128",
		"ws://relay.example.com/tunnel":    "http://plain-proxy.example:8080",
		"wss://internal.example/tunnel":    "",
		"wss://relay.corp.example/tunnel":  "",
		"ws://localhost:8080/tunnel":       "",
		"ws://127.0.0.1:8080/tunnel":       "",
		"https://relay.example.com:8443/x": "http://alice:xxxxx@proxy.example:3128",
	} {
		if got := ProxyFor(proxy, url); got != want {
			t.Errorf("proxy for %s = %q, want %q", url, got, want)
		}
	}
	t.Setenv("HTTPS_PROXY", "")
	if got := ProxyFor(ProxyFromEnvironment(), "wss://relay.example.com/tunnel"); got != "" {
		t.Errorf("with HTTPS_PROXY unset a new ProxyFromEnvironment still says %q", got)
	}
}

func TestRelayTLSConfig(t *testing.T) {
	t.Parallel()
	cfg, err := RelayTLSConfig("", false)
	if err != nil || cfg.RootCAs != nil || cfg.InsecureSkipVerify {
		t.Errorf("default: %+v %v", cfg, err)
	}
	if cfg, err := RelayTLSConfig("", true); err != nil || !cfg.InsecureSkipVerify {
		t.Errorf("insecure: %v", err)
	}
	if _, err := RelayTLSConfig(filepath.Join(t.TempDir(), "missing.pem"), false); err == nil || !strings.Contains(err.Error(), "--ca-file") {
		t.Errorf("missing CA file: %v", err)
	}
	notPEM := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := RelayTLSConfig(notPEM, false); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Errorf("a CA file without a certificate: %v", err)
	}
}
