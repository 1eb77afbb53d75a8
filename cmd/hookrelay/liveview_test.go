package main

import (
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/charmbracelet/x/ansi"
	"github.com/creack/pty"
)

// ptyOutput collects what a process writes to its pseudo-terminal.
type ptyOutput struct {
	mu  sync.Mutex
	raw strings.Builder
}

func (o *ptyOutput) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.raw.Write(p)
}

func (o *ptyOutput) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.raw.String()
}

// text is the output without escape sequences, one screen line per line.
func (o *ptyOutput) text() string {
	return strings.ReplaceAll(ansi.Strip(o.String()), "\r", "\n")
}

// waitFor polls the output until re matches its text.
func (o *ptyOutput) waitFor(t *testing.T, what string, re *regexp.Regexp) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !re.MatchString(o.text()) {
		if time.Now().After(deadline) {
			t.Fatalf("the live view never showed %s (%s); it showed:\n%s", what, re, o.text())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestLiveViewInPseudoTerminal runs connect with its output on a
// pseudo-terminal: it shows the live view, not lines, and redraws it in
// place as deliveries come (cursor movements, not a scrolling log): the
// connection, the target that refuses connections marked down, the counts
// per route by status class and the last deliveries. Ctrl-C stops it.
func TestLiveViewInPseudoTerminal(t *testing.T) {
	t.Parallel()
	relay := startRelayBin(t)
	ch := relay.createChannel(t)
	good := app(t, "app")
	dead := deadURL(t)
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "connect", ch, "--route", "path=/down/* "+dead, "--to", good.URL)
	cmd.Env = append(os.Environ(), append(noUserConfig(t), "TERM=xterm-256color",
		"HOOKRELAY_SERVER="+relay.URL, "HOOKRELAY_TOKEN="+relay.Token)...)
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 40, Cols: 160})
	if err != nil {
		t.Fatal(err)
	}
	out := &ptyOutput{}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		_, _ = io.Copy(out, tty) // ends with an error once the process has closed the terminal
	}()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-copied
		tty.Close()
	})

	out.waitFor(t, "the connection", regexp.MustCompile(`● connected to `+regexp.QuoteMeta(relay.URL)+` \(node [^)]+\) for`))
	out.waitFor(t, "the channel", regexp.MustCompile(`channel `+ch+`  `+regexp.QuoteMeta(relay.URL+"/h/"+ch)))
	out.waitFor(t, "the down target", regexp.MustCompile(`✗ `+regexp.QuoteMeta(dead)+`  DOWN connection refused`))
	out.waitFor(t, "the good target", regexp.MustCompile(`● `+regexp.QuoteMeta(good.URL)+`  up`))

	for _, path := range []string{"/ok", "/ok"} {
		if resp, body := sendWebhook(t, relay.URL+"/h/"+ch+path, nil, "x"); resp.StatusCode != http.StatusOK {
			t.Fatalf("webhook %s: %d %s", path, resp.StatusCode, body)
		}
	}
	if resp, body := sendWebhook(t, relay.URL+"/h/"+ch+"/down/x", nil, "x"); resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("webhook to the down target: %d %s", resp.StatusCode, body)
	}
	out.waitFor(t, "two 2xx on the fallback", regexp.MustCompile(`(?m)^to\s+2\s+0\s+0\s+0\s+0\s+0\s*$`))
	out.waitFor(t, "a failure on the down route", regexp.MustCompile(`(?m)^path=/down/\*\s+0\s+0\s+0\s+0\s+0\s+[1-9]\s*$`))
	out.waitFor(t, "a delivery line", regexp.MustCompile(`\d\d:\d\d:\d\d  `+ch+`  POST /ok  → to  200  [\d.]+(µs|ms|s)`))
	out.waitFor(t, "the refused delivery", regexp.MustCompile(`POST /down/x  → path=/down/\*  connection_refused`))

	raw := out.String()
	if !regexp.MustCompile(`\x1b\[\d*A`).MatchString(raw) {
		t.Errorf("the view never moved the cursor up: it scrolls instead of redrawing in place")
	}
	if strings.Contains(out.text(), "connecting to "+relay.URL+"\n") || strings.Contains(out.text(), ": channel "+ch+" (group") {
		t.Errorf("plain lines on a terminal:\n%s", out.text())
	}

	if _, err := tty.Write([]byte{3}); err != nil { // Ctrl-C
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("connect exited %d after Ctrl-C:\n%s", ee.ExitCode(), out.text())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("connect did not stop after Ctrl-C:\n%s", out.text())
	}
	out.waitFor(t, "stopped", regexp.MustCompile(`(?m)^stopped\s*$`))
}
