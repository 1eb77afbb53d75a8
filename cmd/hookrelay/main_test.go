package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"go.uber.org/goleak"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// buildBinary compiles cmd/hookrelay once per test run.
var buildBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "hookrelay-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "hookrelay")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

func TestMain(m *testing.M) {
	code := m.Run()
	if bin, err := buildBinary(); err == nil {
		os.RemoveAll(filepath.Dir(bin))
	}
	if code == 0 {
		// Every process's output reader and waiter must have ended.
		if err := goleak.Find(goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
			goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop")); err != nil {
			fmt.Fprintln(os.Stderr, "goroutines leaked:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// proc is a running hookrelay process whose output is collected.
type proc struct {
	addr  string // a relay's: the address it bound, once it listens
	cmd   *exec.Cmd
	mu    sync.Mutex
	out   strings.Builder
	lines chan string
	done  chan struct{}
}

func start(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: exec.Command(bin, args...), lines: make(chan string, 1000), done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), env...)
	pr, pw := io.Pipe()
	p.cmd.Stdout, p.cmd.Stderr = pw, pw
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			p.mu.Lock()
			p.out.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			select {
			case p.lines <- sc.Text():
			default:
			}
		}
	}()
	go func() {
		_ = p.cmd.Wait()
		pw.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(os.Interrupt)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// waitLine waits for an output line containing s and returns it.
func (p *proc) waitLine(t *testing.T, s string, d time.Duration) string {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case l := <-p.lines:
			if strings.Contains(l, s) {
				return l
			}
		case <-timeout:
			t.Fatalf("no line with %q after %s; output:\n%s", s, d, p.output())
		}
	}
}

func run(t *testing.T, env []string, args ...string) (string, int) {
	t.Helper()
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

// listeningOn matches the relay's "listening on" line; its group is the
// host:port the relay bound.
var listeningOn = regexp.MustCompile(`relay listening on https?://([^\s,]+)`)

// waitAddr waits for the relay's "listening on" line and returns the
// address it bound (the tests start relays on 127.0.0.1:0) and the line.
func (p *proc) waitAddr(t *testing.T, d time.Duration) (addr, line string) {
	t.Helper()
	line = p.waitLine(t, "relay listening on", d)
	m := listeningOn.FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("no address in the listening line %q", line)
	}
	return m[1], line
}

// deadAddr returns a loopback address nothing listens on: a connection to
// it is refused.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	return ln.Addr().String()
}

// TestBinaryAsAUserWouldUseIt builds hookrelay and drives server, channel
// create and connect over loopback, then sends a webhook.
func TestBinaryAsAUserWouldUseIt(t *testing.T) {
	t.Parallel()
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Seen-Path", r.URL.Path)
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, "app got %s", body)
	}))
	defer target.Close()

	dataDir := t.TempDir()
	server := start(t, nil, "server", "--listen", "127.0.0.1:0", "--data-dir", dataDir)
	tokenLine := server.waitLine(t, "hr_", 30*time.Second)
	token := strings.TrimSpace(tokenLine)
	if !strings.HasPrefix(token, "hr_") {
		t.Fatalf("first start did not print the token alone on a line: %q", tokenLine)
	}
	connectLine := server.waitLine(t, "hookrelay connect", 5*time.Second)
	if !strings.Contains(connectLine, "--token "+token) {
		t.Fatalf("connect line lacks the token: %q", connectLine)
	}
	saved, err := os.ReadFile(filepath.Join(dataDir, "admin-token"))
	if err != nil || strings.TrimSpace(string(saved)) != token {
		t.Fatalf("admin token not saved in the data dir: %q %v", saved, err)
	}
	addr, _ := server.waitAddr(t, 5*time.Second)

	env := []string{"HOOKRELAY_SERVER=http://" + addr, "HOOKRELAY_TOKEN=" + token}
	out, code := run(t, env, "channel", "create", "--json")
	if code != 0 {
		t.Fatalf("channel create: exit %d: %s", code, out)
	}
	var ch struct{ ID, URL string }
	if err := json.Unmarshal([]byte(out), &ch); err != nil || ch.ID == "" || ch.URL != "http://"+addr+"/h/"+ch.ID {
		t.Fatalf("channel create --json printed %q (%v)", out, err)
	}

	agent := start(t, env, "connect", ch.ID, "--to", target.URL+"/hooks")
	agent.waitLine(t, "connected", 15*time.Second)

	resp, err := http.Post(ch.URL+"/github?x=1", "application/json", strings.NewReader(`{"a":1}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || string(body) != `app got {"a":1}` || resp.Header.Get("X-Seen-Path") != "/hooks/github" {
		t.Fatalf("sender got %d %q path %q", resp.StatusCode, body, resp.Header.Get("X-Seen-Path"))
	}
	line := agent.waitLine(t, "/github", 5*time.Second)
	if !strings.Contains(line, "POST") || !strings.Contains(line, "201") {
		t.Fatalf("agent's delivery line: %q", line)
	}

	out, code = run(t, env, "channel", "list")
	if code != 0 || !strings.Contains(out, ch.ID) {
		t.Fatalf("channel list: exit %d: %s", code, out)
	}
	out, code = run(t, env, "channel", "rotate-key", ch.ID)
	if code != 0 || !strings.Contains(out, "read key rk_"+ch.ID+".") {
		t.Fatalf("channel rotate-key: exit %d: %s", code, out)
	}
	out, code = run(t, []string{"HOOKRELAY_SERVER=http://" + addr, "HOOKRELAY_TOKEN=wrong"}, "channel", "list")
	if code == 0 || !strings.Contains(out, "401") {
		t.Fatalf("wrong token: exit %d: %s", code, out)
	}

	// A page's cursor stays good across a restart (the relay's secret is
	// kept in the data dir).
	if resp, err := http.Post(ch.URL+"/second", "text/plain", strings.NewReader("2")); err == nil {
		resp.Body.Close()
	}
	out, code = run(t, env, "events", "list", ch.ID, "--limit", "1", "--json")
	var page struct {
		NextCursor string `json:"next_cursor"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &page) != nil || page.NextCursor == "" {
		t.Fatalf("events list --limit 1: exit %d: %s", code, out)
	}
	if fi, err := os.Stat(filepath.Join(dataDir, "relay-secret")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("relay-secret in the data dir: %v %v", fi, err)
	}

	// A second start on the same data dir keeps the token and prints no new
	// one. It takes the port the first start had: the cursor's URLs name it.
	_ = server.cmd.Process.Signal(os.Interrupt)
	<-server.done
	again := start(t, nil, "server", "--listen", addr, "--data-dir", dataDir)
	again.waitAddr(t, 30*time.Second)
	if strings.Contains(again.output(), "hr_") {
		t.Fatalf("second start printed a token again:\n%s", again.output())
	}
	out, code = run(t, env, "events", "list", ch.ID, "--before", page.NextCursor, "--json")
	if code != 0 || !strings.Contains(out, `"/github"`) || strings.Contains(out, `"/second"`) {
		t.Fatalf("events list --before a cursor from before the restart: exit %d: %s", code, out)
	}
}

func TestCLIErrors(t *testing.T) {
	t.Parallel()
	out, code := run(t, []string{"HOOKRELAY_TOKEN="}, "channel", "list", "--server", "http://127.0.0.1:1")
	if code == 0 || !strings.Contains(out, "no token") {
		t.Fatalf("no token: exit %d: %s", code, out)
	}
	out, code = run(t, nil, "connect", "x", "--token", "t")
	if code == 0 || !strings.Contains(out, "--to is required") {
		t.Fatalf("connect without --to: exit %d: %s", code, out)
	}
	out, code = run(t, nil, "server", "--max-body", "lots")
	if code == 0 || !strings.Contains(out, "max_body") {
		t.Fatalf("bad max-body: exit %d: %s", code, out)
	}
	out, code = run(t, nil, "server", "--max-rejected-bytes-per-channel", "lots")
	if code == 0 || !strings.Contains(out, "max_rejected_bytes_per_channel") {
		t.Fatalf("bad max-rejected-bytes-per-channel: exit %d: %s", code, out)
	}
	out, code = run(t, nil, "server", "--max-rejected-per-channel", "-1")
	if code == 0 || !strings.Contains(out, "max_rejected_per_channel") {
		t.Fatalf("bad max-rejected-per-channel: exit %d: %s", code, out)
	}
	out, code = run(t, nil, "server", "--help")
	for _, key := range []string{"listen", "public_url", "data_dir", "database", "admin_token", "response_timeout", "max_body",
		"max_rejected_per_channel", "max_rejected_bytes_per_channel"} {
		if code != 0 || !strings.Contains(out, key) {
			t.Fatalf("server --help does not document %s:\n%s", key, out)
		}
	}
}

// TestServerAdminListen starts a relay with --admin-listen and fetches a
// profile there; the public listener does not serve it.
func TestServerAdminListen(t *testing.T) {
	t.Parallel()
	server := start(t, nil, "server", "--listen", "127.0.0.1:0", "--data-dir", t.TempDir(),
		"--admin-token", "hr_admin_listen_test", "--admin-listen", "127.0.0.1:0")
	adminLine := server.waitLine(t, "admin listener (pprof) on http://", 30*time.Second)
	admin := strings.TrimSuffix(strings.TrimPrefix(adminLine[strings.Index(adminLine, "http://"):], "http://"), "/debug/pprof/")
	if strings.HasSuffix(admin, ":0") || !strings.HasPrefix(admin, "127.0.0.1:") {
		t.Fatalf("the admin line does not name the port bound: %q", adminLine)
	}
	addr, _ := server.waitAddr(t, 5*time.Second)
	resp, err := http.Get("http://" + admin + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "goroutine profile:") {
		t.Fatalf("GET /debug/pprof/goroutine on the admin listener = %d %.200q", resp.StatusCode, body)
	}
	resp, err = http.Get("http://" + addr + "/debug/pprof/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /debug/pprof/ on the public listener = %d, want 404", resp.StatusCode)
	}

	// An address already taken stops the relay with a message.
	out, code := run(t, nil, "server", "--listen", "127.0.0.1:0", "--data-dir", t.TempDir(),
		"--admin-token", "hr_admin_listen_test", "--admin-listen", admin)
	if code == 0 || !strings.Contains(out, "admin_listen "+admin) {
		t.Errorf("a taken admin address: exit %d, %q", code, out)
	}
}
