package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// relayProc is a relay started from the binary, with its admin token.
type relayProc struct {
	*proc
	URL   string
	Token string
}

// startRelayBin starts "hookrelay server" on a free port of 127.0.0.1.
func startRelayBin(t *testing.T, args ...string) *relayProc {
	t.Helper()
	dataDir := t.TempDir()
	p := start(t, nil, append([]string{"server", "--listen", "127.0.0.1:0", "--data-dir", dataDir}, args...)...)
	addr, _ := p.waitAddr(t, 30*time.Second)
	token, err := os.ReadFile(filepath.Join(dataDir, "admin-token"))
	if err != nil {
		t.Fatal(err)
	}
	scheme := "http"
	for _, a := range args {
		if a == "--tls-cert" {
			scheme = "https"
		}
	}
	return &relayProc{proc: p, URL: scheme + "://" + addr, Token: strings.TrimSpace(string(token))}
}

// createChannel creates a channel with the admin token and returns its id.
func (r *relayProc) createChannel(t *testing.T, extra ...string) string {
	t.Helper()
	out, code := run(t, append([]string{"HOOKRELAY_SERVER=" + r.URL, "HOOKRELAY_TOKEN=" + r.Token}, extra...), "channel", "create", "--json")
	if code != 0 {
		t.Fatalf("channel create: exit %d: %s", code, out)
	}
	var ch struct{ ID string }
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &ch); err != nil {
		t.Fatalf("channel create printed %q: %v", out, err)
	}
	return ch.ID
}

// runIn runs the binary with stdin and returns its combined output and
// exit code.
func runIn(t *testing.T, env []string, stdin string, args ...string) (string, int) {
	t.Helper()
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

// app is a local app that answers every request with its name and path.
func app(t *testing.T, name string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-App", name)
		fmt.Fprintf(w, "%s got %s %s", name, r.URL.Path, body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// deadURL is an http URL on which nothing listens.
func deadURL(t *testing.T) string {
	t.Helper()
	return "http://" + deadAddr(t)
}

// noUserConfig keeps the user's own config and relay settings out of a
// command: an empty XDG_CONFIG_HOME and no HOOKRELAY_* or proxy variables.
func noUserConfig(t *testing.T) []string {
	return []string{"XDG_CONFIG_HOME=" + t.TempDir(), "HOOKRELAY_SERVER=", "HOOKRELAY_TOKEN=",
		"HTTPS_PROXY=", "https_proxy=", "HTTP_PROXY=", "http_proxy=", "NO_PROXY=", "no_proxy="}
}

func sendWebhook(t *testing.T, url string, headers map[string]string, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// TestLoginThenConnectUsesSavedToken logs in with a token piped to stdin:
// the config file is written with mode 0600, and a later connect with no
// server or token in its flags or environment uses it. A rejected token
// writes nothing; logout removes the token.
func TestLoginThenConnectUsesSavedToken(t *testing.T) {
	t.Parallel()
	relay := startRelayBin(t)
	ch := relay.createChannel(t)
	env := noUserConfig(t)
	xdg := strings.TrimPrefix(env[0], "XDG_CONFIG_HOME=")
	path := filepath.Join(xdg, "hookrelay", "config.yaml")

	out, code := runIn(t, env, "hr_not_a_real_token\n", "login", "--server", relay.URL)
	if code == 0 || !strings.Contains(out, "rejected the token") {
		t.Fatalf("login with a bad token: exit %d: %s", code, out)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("a rejected login wrote %s (%v)", path, err)
	}

	out, code = runIn(t, env, relay.Token+"\n", "login", "--server", relay.URL)
	if code != 0 || !strings.Contains(out, "logged in to "+relay.URL) || !strings.Contains(out, path) {
		t.Fatalf("login: exit %d: %s", code, out)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("config file mode %v, want 0600", info.Mode().Perm())
	}
	data, _ := os.ReadFile(path)
	if !strings.Contains(string(data), "server: "+relay.URL) || !strings.Contains(string(data), "token: "+relay.Token) {
		t.Errorf("config file:\n%s", data)
	}

	target := app(t, "app")
	agent := start(t, env, "connect", ch, "--to", target.URL)
	agent.waitLine(t, "connected to "+relay.URL, 30*time.Second)
	resp, body := sendWebhook(t, relay.URL+"/h/"+ch+"/hook", nil, "hi")
	if resp.StatusCode != http.StatusOK || body != "app got /hook hi" {
		t.Fatalf("webhook through the logged-in agent: %d %q", resp.StatusCode, body)
	}

	out, code = runIn(t, env, "", "logout")
	if code != 0 || !strings.Contains(out, "removed the token from "+path) {
		t.Fatalf("logout: exit %d: %s", code, out)
	}
	data, _ = os.ReadFile(path)
	if strings.Contains(string(data), "token") || !strings.Contains(string(data), "server: "+relay.URL) {
		t.Errorf("config file after logout:\n%s", data)
	}
}

// TestLoginCreatesConfigFile logs in with --config naming a file that does
// not exist yet, in a directory that does not exist either: login creates
// both, the file with mode 0600, and a later command reads it.
func TestLoginCreatesConfigFile(t *testing.T) {
	t.Parallel()
	relay := startRelayBin(t)
	env := noUserConfig(t)
	path := filepath.Join(t.TempDir(), "new", "relay.yaml")

	out, code := runIn(t, env, relay.Token+"\n", "login", "--server", relay.URL, "--config", path)
	if code != 0 || !strings.Contains(out, "saved server and token to "+path) {
		t.Fatalf("login --config %s: exit %d: %s", path, code, out)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatalf("login did not create %s: %v", path, err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("config file mode %v, want 0600", info.Mode().Perm())
	}
	data, _ := os.ReadFile(path)
	if !strings.Contains(string(data), "server: "+relay.URL) || !strings.Contains(string(data), "token: "+relay.Token) {
		t.Errorf("config file:\n%s", data)
	}
	// A second login reads the server from the file it wrote.
	out, code = runIn(t, env, relay.Token+"\n", "login", "--config", path)
	if code != 0 || !strings.Contains(out, "logged in to "+relay.URL) {
		t.Fatalf("second login --config %s: exit %d: %s", path, code, out)
	}
}

// TestDoctorExitCodes runs doctor against a good setup, then with a bad
// token, an unreachable relay and a target that is down.
func TestDoctorExitCodes(t *testing.T) {
	t.Parallel()
	relay := startRelayBin(t)
	ch := relay.createChannel(t)
	target := app(t, "app")
	good := append(noUserConfig(t), "HOOKRELAY_SERVER="+relay.URL, "HOOKRELAY_TOKEN="+relay.Token)

	out, code := runIn(t, good, "", "doctor", ch, "--to", target.URL)
	for _, want := range []string{
		"PASS  config: no file", "token     " + relay.Token[:6], "from env HOOKRELAY_TOKEN", "from flag --to",
		"PASS  relay reachable: " + relay.URL, "PASS  clock: within", "PASS  token: valid",
		"PASS  channel " + ch, "PASS  tunnel: WebSocket upgrade to ws://", "(direct)",
		"PASS  target " + target.URL + " accepts connections", "all 7 checks passed",
	} {
		if code != 0 || !strings.Contains(out, want) {
			t.Fatalf("doctor on a good setup: exit %d, no %q in:\n%s", code, want, out)
		}
	}
	if strings.Contains(out, relay.Token) {
		t.Errorf("doctor printed the whole token:\n%s", out)
	}

	for _, tt := range []struct {
		name string
		env  []string
		args []string
		want []string
	}{
		{"bad token", []string{"HOOKRELAY_TOKEN=hr_wrong"}, []string{"--to", target.URL},
			[]string{"FAIL  token: the relay rejected it", "FAIL  tunnel", "401", "PASS  target", "2 of 6 checks failed"}},
		{"unreachable relay", []string{"HOOKRELAY_SERVER=" + deadURL(t)}, []string{"--to", target.URL},
			[]string{"FAIL  relay reachable", "connection refused", "SKIP  token, clock and tunnel"}},
		{"down target", nil, []string{ch, "--to", deadURL(t)},
			[]string{"PASS  token: valid", "FAIL  target http://127.0.0.1:", "connection refused", "1 of 7 checks failed"}},
	} {
		env := append(append([]string{}, good...), tt.env...)
		out, code := runIn(t, env, "", append([]string{"doctor"}, tt.args...)...)
		if code != 1 {
			t.Errorf("doctor with a %s: exit %d, want 1:\n%s", tt.name, code, out)
		}
		for _, want := range tt.want {
			if !strings.Contains(out, want) {
				t.Errorf("doctor with a %s: no %q in:\n%s", tt.name, want, out)
			}
		}
	}
}

// TestCompletionScripts checks that each shell gets a completion script.
func TestCompletionScripts(t *testing.T) {
	t.Parallel()
	for shell, want := range map[string]string{
		"bash": "complete -o default -F __start_hookrelay hookrelay", "zsh": "#compdef hookrelay",
		"fish": "complete -c hookrelay", "powershell": "Register-ArgumentCompleter",
	} {
		out, code := run(t, nil, "completion", shell)
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("completion %s: exit %d, no %q", shell, code, want)
		}
	}
}

// TestAgentMetrics checks the agent's metric names after traffic on
// --metrics-listen.
func TestAgentMetrics(t *testing.T) {
	t.Parallel()
	relay := startRelayBin(t)
	ch := relay.createChannel(t)
	target := app(t, "app")
	env := append(noUserConfig(t), "HOOKRELAY_SERVER="+relay.URL, "HOOKRELAY_TOKEN="+relay.Token)
	agent := start(t, env, "connect", ch, "--route", "path=/gh/* "+target.URL, "--route", "path=/down/* "+deadURL(t),
		"--metrics-listen", "127.0.0.1:0")
	metricsLine := agent.waitLine(t, "agent metrics on http://", 30*time.Second)
	addr := strings.TrimSuffix(metricsLine[strings.Index(metricsLine, "http://")+len("http://"):], "/metrics")
	agent.waitLine(t, "connected to", 30*time.Second)
	if resp, body := sendWebhook(t, relay.URL+"/h/"+ch+"/gh/push", nil, "x"); resp.StatusCode != 200 {
		t.Fatalf("routed webhook: %d %s", resp.StatusCode, body)
	}
	if resp, body := sendWebhook(t, relay.URL+"/h/"+ch+"/down/x", nil, "x"); resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("webhook to a down target: %d %s", resp.StatusCode, body)
	}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var lines []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	text := strings.Join(lines, "\n")
	for _, want := range []string{
		`hookrelay_agent_deliveries_total{channel="` + ch + `",route="path=/gh/*",status="2xx"} 1`,
		`hookrelay_agent_deliveries_total{channel="` + ch + `",route="path=/down/*",status="connection_refused"}`,
		`hookrelay_agent_delivery_duration_seconds_bucket{channel="` + ch + `",route="path=/gh/*",le=`,
		`hookrelay_agent_delivery_duration_seconds_count{channel="` + ch + `",route="path=/gh/*"} 1`,
		"hookrelay_agent_deliveries_in_flight ",
		"hookrelay_agent_reconnects_total 0",
		"hookrelay_agent_connected 1",
		`hookrelay_agent_target_up{target="` + target.URL + `"} 1`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %q:\n%s", want, text)
		}
	}
}
