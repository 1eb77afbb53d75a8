//go:build unix

// Package browsertest drives the inspector in real headless Chromium
// (Debian's chromium, through playwright-core from npm) against a real
// relay, a real agent and a target app, all in this process.
//
// The tests skip when node, chromium or node_modules are missing, unless
// HOOKRELAY_BROWSER_TESTS=1, when they fail instead (CI sets it after
// installing them; see .ci/run). Run them with
//
//	cd server/ui/browsertest && npm ci && cd - &&
//	HOOKRELAY_BROWSER_TESTS=1 go test ./server/ui/browsertest -v
//
// HOOKRELAY_SCREENSHOT_DIR keeps the screenshots (default: a temp dir), and
// HOOKRELAY_UPDATE_SCREENSHOT=1 rewrites docs/inspector.png.
package browsertest

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/hookrelay/hookrelay/client"
	"github.com/hookrelay/hookrelay/protocol"
	"github.com/hookrelay/hookrelay/server"
	"github.com/hookrelay/hookrelay/server/store/sqlite"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
	)
}

const adminToken = "hr_browser_test_admin"

// need skips the test for a missing tool, or fails it when the browser
// tests are required.
func need(t *testing.T, ok bool, what string) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("HOOKRELAY_BROWSER_TESTS") == "1" {
		t.Fatalf("%s (HOOKRELAY_BROWSER_TESTS=1 requires the browser tests to run)", what)
	}
	t.Skip(what + "; set HOOKRELAY_BROWSER_TESTS=1 to require the browser tests")
}

func nodePath(t *testing.T) string {
	node, err := exec.LookPath("node")
	need(t, err == nil, "node is not installed")
	return node
}

// runNode runs a node command in this directory, logging its output, and
// fails the test on a non-zero exit. When ctx ends, node and the browser it
// started (its process group) are killed.
func runNode(t *testing.T, ctx context.Context, env []string, args ...string) {
	t.Helper()
	cmd := exec.CommandContext(ctx, nodePath(t), args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second // then stop waiting for output from leftover processes
	out := &lineLog{t: t}
	cmd.Stdout, cmd.Stderr = out, out
	err := cmd.Run()
	out.flush()
	if err != nil {
		t.Fatalf("node %s: %v", strings.Join(args, " "), err)
	}
}

// lineLog writes a command's output to the test log, line by line.
type lineLog struct {
	t   *testing.T
	mu  sync.Mutex
	buf []byte
}

func (l *lineLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		l.t.Log(string(l.buf[:i]))
		l.buf = l.buf[i+1:]
	}
}

func (l *lineLog) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf) > 0 {
		l.t.Log(string(l.buf))
		l.buf = nil
	}
}

// TestFormatHelpers runs the unit tests of the page's pure helpers
// (static/format.js) with node's test runner; they need no browser.
func TestFormatHelpers(t *testing.T) {
	_, err := exec.LookPath("curl")
	need(t, err == nil, "curl is not installed")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	runNode(t, ctx, nil, "--test", "--test-reporter=spec", "format.test.mjs")
}

// received is one request the target app got.
type received struct {
	EventID string `json:"event_id"`
	Attempt string `json:"attempt"`
	Method  string `json:"method"`
	Path    string `json:"path"`
	SHA256  string `json:"sha256"`
	GitHub  string `json:"github_event"`
	Edited  string `json:"edited"` // X-Edited, set by the edit-and-replay step
	// SigOK: X-Hub-Signature-256 is the body's HMAC-SHA256 under the
	// secret the script signs with ("secret"), as a GitHub app checks it.
	SigOK bool `json:"sig_ok"`
}

// target is the developer's app: it records every request.
type target struct {
	mu   sync.Mutex
	reqs []received
}

// evilPage is what a hostile agent's app answers at .../evil: a script that
// uses the inspector's session to create an admin token (a synchronous
// request, so that the page has finished with it once it has loaded). At
// .../cookie it answers with a cookie meant to replace the session.
const evilPage = `<!doctype html><title>relayed</title>
<script>
try {
  const x = new XMLHttpRequest();
  x.open('POST', '/api/v1/tokens', false);
  x.setRequestHeader('Content-Type', 'application/json');
  x.send(JSON.stringify({ team: 'alpha', role: 'admin', name: 'stolen' }));
  document.title = 'ran: ' + x.status;
} catch (e) {
  document.title = 'ran: ' + e;
}
</script>
<p>after the script</p>`

func (a *target) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case strings.HasSuffix(r.URL.Path, "/evil"):
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, evilPage)
		return
	case strings.HasSuffix(r.URL.Path, "/cookie"):
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Add("Set-Cookie", "hookrelay_session=forged-by-the-app; Path=/; HttpOnly")
		io.WriteString(w, "<p>cookie</p>")
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	sum := sha256.Sum256(body)
	mac := hmac.New(sha256.New, []byte("secret"))
	mac.Write(body)
	sigOK := hmac.Equal([]byte(r.Header.Get("X-Hub-Signature-256")), []byte("sha256="+hex.EncodeToString(mac.Sum(nil))))
	a.mu.Lock()
	a.reqs = append(a.reqs, received{
		EventID: r.Header.Get("Hookrelay-Event-Id"), Attempt: r.Header.Get("Hookrelay-Delivery-Attempt"),
		Method: r.Method, Path: r.URL.RequestURI(), SHA256: hex.EncodeToString(sum[:]), GitHub: r.Header.Get("X-GitHub-Event"),
		Edited: r.Header.Get("X-Edited"), SigOK: sigOK,
	})
	n := len(a.reqs)
	a.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-App", "browser-test")
	fmt.Fprintf(w, `{"ok":true,"received":%d}`, n)
}

func (a *target) list() []received {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]received(nil), a.reqs...)
}

// agents starts agents on demand for the browser script, which creates
// the channel they subscribe to.
type agents struct {
	t        *testing.T
	relayURL string
	target   string
	wg       sync.WaitGroup
	mu       sync.Mutex
	cancels  []context.CancelFunc
}

func (g *agents) start(channel, token string) error {
	a, err := client.New(client.Config{
		ServerURL:     g.relayURL,
		Token:         token,
		Subscriptions: []protocol.Subscription{{Channel: channel}},
		Target:        g.target + "/webhooks",
		Out:           io.Discard,
		Host:          "browser-test-host",
		AgentVersion:  "test",
		MaxBackoff:    500 * time.Millisecond,
		ShutdownGrace: 2 * time.Second,
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	g.mu.Lock()
	g.cancels = append(g.cancels, cancel)
	g.mu.Unlock()
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		if err := a.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			g.t.Logf("agent: %v", err)
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		var out struct {
			Agents []json.RawMessage `json:"agents"`
		}
		if err := client.NewAPI(g.relayURL, token).Do(ctx, http.MethodGet, "/api/v1/channels/"+channel+"/agents", nil, &out); err == nil && len(out.Agents) > 0 {
			return nil
		}
		time.Sleep(20 * time.Millisecond) // polling the relay for the agent, with a deadline
	}
	return errors.New("the agent did not connect within 10s")
}

func (g *agents) stop() {
	g.mu.Lock()
	for _, c := range g.cancels {
		c()
	}
	g.mu.Unlock()
	g.wg.Wait()
}

// stack is a relay with teams alpha and beta, the app, and the control
// server the browser scripts use to start agents and read what the app got.
type stack struct {
	chromium   string
	relayURL   string
	controlURL string
	tokens     map[string]string // member token by team
}

// startStack starts the stack, or skips the test when node, chromium or
// playwright are missing; it is stopped at cleanup.
func startStack(t *testing.T) *stack {
	t.Helper()
	nodePath(t)
	chromium := os.Getenv("HOOKRELAY_CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	_, err := os.Stat(chromium)
	need(t, err == nil, chromium+" is missing (apt-get install chromium)")
	_, err = os.Stat("node_modules/playwright-core/package.json")
	need(t, err == nil, "playwright-core is not installed (npm ci in server/ui/browsertest)")
	_, err = exec.LookPath("curl")
	need(t, err == nil, "curl is not installed")

	st, err := sqlite.Open(filepath.Join(t.TempDir(), "relay.db"), sqlite.Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	relay, err := server.New(server.Config{Store: st, AdminToken: adminToken})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveCtx, stopServe := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- relay.Serve(serveCtx, ln) }()
	relayURL := "http://" + ln.Addr().String()

	app := &target{}
	appSrv := httptest.NewServer(app)
	ag := &agents{t: t, relayURL: relayURL, target: appSrv.URL}
	control := http.NewServeMux()
	control.HandleFunc("POST /agents", func(w http.ResponseWriter, r *http.Request) {
		if err := ag.start(r.URL.Query().Get("channel"), r.URL.Query().Get("token")); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	control.HandleFunc("GET /requests", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(app.list())
	})
	controlSrv := httptest.NewServer(control)
	t.Cleanup(func() {
		controlSrv.Close()
		ag.stop()
		appSrv.Close()
		stopServe()
		if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("relay: %v", err)
		}
		_ = relay.Close()
		_ = st.Close()
	})

	admin := client.NewAPI(relayURL, adminToken)
	tokens := map[string]string{}
	for _, team := range []string{"alpha", "beta"} {
		ctx := context.Background()
		if err := admin.Do(ctx, http.MethodPost, "/api/v1/teams", map[string]string{"name": team}, nil); err != nil {
			t.Fatalf("create team %s: %v", team, err)
		}
		var tok struct {
			Token string `json:"token"`
		}
		if err := admin.Do(ctx, http.MethodPost, "/api/v1/tokens", map[string]string{"team": team, "role": "member"}, &tok); err != nil {
			t.Fatalf("create token for %s: %v", team, err)
		}
		tokens[team] = tok.Token
	}
	return &stack{chromium: chromium, relayURL: relayURL, controlURL: controlSrv.URL, tokens: tokens}
}

// TestInspectorInChromium signs in, creates a channel, watches webhooks
// arrive live, opens, replays, edits and replays (re-signed) and copies one
// as curl, and checks that teams do not see each other's channels: all in a
// real browser.
func TestInspectorInChromium(t *testing.T) {
	s := startStack(t)
	shots := os.Getenv("HOOKRELAY_SCREENSHOT_DIR")
	if shots == "" {
		shots = t.TempDir()
	}
	docsShot := ""
	if os.Getenv("HOOKRELAY_UPDATE_SCREENSHOT") == "1" {
		docsShot, _ = filepath.Abs("../../../docs/inspector.png")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	runNode(t, ctx, []string{
		"BASE_URL=" + s.relayURL,
		"CONTROL_URL=" + s.controlURL,
		"TEAM_A_TOKEN=" + s.tokens["alpha"],
		"TEAM_B_TOKEN=" + s.tokens["beta"],
		"CHROMIUM=" + s.chromium,
		"SCREENSHOT_DIR=" + shots,
		"DOCS_SCREENSHOT=" + docsShot,
	}, "inspector.test.mjs")
	t.Logf("browser script took %s; screenshots in %s", time.Since(start).Round(time.Millisecond), shots)
}

// TestRelayedPageCannotActAsInspector plays the attack of an agent that
// answers a delivery with an HTML page whose script, served at the relay's
// origin, uses a signed-in admin's session cookie to create a token, and
// whose Set-Cookie replaces that cookie. The page must run no script, no
// token may appear, and the session cookie must stay the admin's.
func TestRelayedPageCannotActAsInspector(t *testing.T) {
	s := startStack(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	runNode(t, ctx, []string{
		"BASE_URL=" + s.relayURL,
		"CONTROL_URL=" + s.controlURL,
		"ADMIN_TOKEN=" + adminToken,
		"CHROMIUM=" + s.chromium,
	}, "attack.test.mjs")
	var list struct {
		Tokens []struct {
			Name string `json:"name"`
		} `json:"tokens"`
	}
	if err := client.NewAPI(s.relayURL, adminToken).Do(ctx, http.MethodGet, "/api/v1/tokens", nil, &list); err != nil {
		t.Fatal(err)
	}
	for _, tok := range list.Tokens {
		if tok.Name == "stolen" {
			t.Fatalf("the relayed page created a token with the inspector's session")
		}
	}
}
