package sqlite

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/server/store"
)

// crashHelperEnv names the database file when the test binary runs as the
// child process of TestCrashKeepsAppendedEvents.
const crashHelperEnv = "HOOKRELAY_SQLITE_CRASH_HELPER_DB"

// runCrashHelper appends events from several goroutines until it is
// killed, printing "- seq" for each seq it was handed (before the commit)
// and "id seq" for each append whose commit succeeded.
func runCrashHelper(path string) int {
	ctx := context.Background()
	s, err := Open(path, Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := s.CreateChannel(ctx, store.Channel{ID: "c"}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var (
		mu sync.Mutex // one line per write to stdout
		wg sync.WaitGroup
	)
	for g := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				e := &store.Event{ID: fmt.Sprintf("g%d-%d", g, i), ChannelID: "c",
					Body: []byte(strings.Repeat("x", 1024))}
				commit, err := s.StartAppend(ctx, e)
				if err == nil {
					mu.Lock()
					fmt.Fprintf(os.Stdout, "- %d\n", e.Seq)
					mu.Unlock()
					err = commit.Wait(ctx)
				}
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(1)
				}
				mu.Lock()
				fmt.Fprintf(os.Stdout, "%s %d\n", e.ID, e.Seq)
				mu.Unlock()
			}
		})
	}
	wg.Wait() // never: the parent kills this process
	return 0
}

// TestCrashKeepsAppendedEvents kills (SIGKILL) a process that is appending
// events and checks that every event whose commit had succeeded is in the
// database, with its seq, and that no seq handed out before the crash is
// handed out again.
func TestCrashKeepsAppendedEvents(t *testing.T) {
	t.Parallel()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "hookrelay.db")
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), crashHelperEnv+"="+path)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}

	// Read acknowledgements until there are enough, kill the process mid-stream,
	// then read the ones already in the pipe too: all of them were acknowledged.
	acked := make(map[string]int64)
	var handedOut int64 // the highest seq the helper was given
	lines := bufio.NewScanner(stdout)
	killed := false
	for lines.Scan() {
		id, seqText, ok := strings.Cut(lines.Text(), " ")
		seq, err := strconv.ParseInt(seqText, 10, 64)
		if !ok || err != nil {
			t.Fatalf("helper printed %q", lines.Text())
		}
		if id == "-" {
			handedOut = max(handedOut, seq)
			continue
		}
		acked[id] = seq
		if len(acked) == 2000 && !killed {
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			killed = true
		}
	}
	err = cmd.Wait()
	if !killed {
		t.Fatalf("helper stopped after %d events: %v\n%s", len(acked), err, stderr.String())
	}
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitCode() != -1 {
		t.Fatalf("helper did not die of the signal: %v", err)
	}

	s := openTest(t, path, Options{})
	for id, seq := range acked {
		e, err := s.GetEvent(t.Context(), id)
		if err != nil {
			t.Errorf("acknowledged event %s lost in the crash: %v", id, err)
			continue
		}
		if e.Seq != seq {
			t.Errorf("event %s: seq %d, acknowledged as %d", id, e.Seq, seq)
		}
	}
	next := &store.Event{ID: "after-crash", ChannelID: "c"}
	if err := s.AppendEvent(t.Context(), next); err != nil {
		t.Fatal(err)
	}
	if next.Seq <= handedOut {
		t.Errorf("first seq after the crash %d, but seqs up to %d were handed out before it", next.Seq, handedOut)
	}
	t.Logf("%d acknowledged events survived SIGKILL; seqs went on at %d after %d", len(acked), next.Seq, handedOut)
}
