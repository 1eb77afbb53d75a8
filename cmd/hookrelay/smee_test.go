package main

import (
	"bufio"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestChannelCreatePrintsAStreamURL reads the smee-compatible stream URL
// that channel create prints, on a relay whose stream caps come from flags.
func TestChannelCreatePrintsAStreamURL(t *testing.T) {
	t.Parallel()
	server := start(t, nil, "server", "--listen", "127.0.0.1:0", "--data-dir", t.TempDir(),
		"--admin-token", "hr_cli_smee_admin", "--max-sse-per-channel", "1", "--sse-buffer", "1MiB")
	addr, _ := server.waitAddr(t, 30*time.Second)

	env := []string{"HOOKRELAY_SERVER=http://" + addr, "HOOKRELAY_TOKEN=hr_cli_smee_admin"}
	out, code := run(t, env, "channel", "create", "smee-cli")
	if code != 0 {
		t.Fatalf("channel create: exit %d: %s", code, out)
	}
	var streamURL string
	for line := range strings.SplitSeq(out, "\n") {
		if rest, ok := strings.CutPrefix(line, "stream  "); ok {
			streamURL, _, _ = strings.Cut(rest, " ")
		}
	}
	if !strings.HasPrefix(streamURL, "http://"+addr+"/h/smee-cli?key=rk_smee-cli.") {
		t.Fatalf("channel create printed no stream URL:\n%s", out)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	get := func() *http.Response {
		req, _ := http.NewRequestWithContext(ctx, "GET", streamURL, nil)
		req.Header.Set("Accept", "text/event-stream")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	resp := get()
	defer resp.Body.Close()
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if resp.StatusCode != http.StatusOK || err != nil || !strings.HasPrefix(line, "retry:") {
		t.Fatalf("stream: %d %q %v", resp.StatusCode, line, err)
	}
	second := get()
	second.Body.Close()
	if second.StatusCode != http.StatusTooManyRequests {
		t.Errorf("a second stream with --max-sse-per-channel 1: %d, want 429", second.StatusCode)
	}

	out, code = run(t, nil, "server", "--listen", "127.0.0.1:0", "--data-dir", t.TempDir(), "--sse-buffer", "lots")
	if code == 0 || !strings.Contains(out, "sse_buffer") {
		t.Errorf("--sse-buffer lots: exit %d: %s", code, out)
	}
}
