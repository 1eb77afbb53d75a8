// Package smeeclient runs the real smee-client from npm (pinned in
// package.json) against a relay started in the test, through a TCP proxy
// the test can cut, and checks what reaches a local app.
//
// It runs only with HOOKRELAY_SMEE_TESTS=1 (.ci/run sets it after
// installing the client):
//
//	cd e2e/smeeclient && npm ci && cd - &&
//	HOOKRELAY_SMEE_TESTS=1 go test ./e2e/smeeclient -count=1 -v
package smeeclient

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
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/hookrelay/hookrelay/server"
	"github.com/hookrelay/hookrelay/server/store/sqlite"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
	)
}

const (
	adminToken = "hr_smee_client_test_admin"
	secret     = "It's a Secret to Everybody" // the webhook secret of GitHub's docs
)

// smeeBin is the smee CLI as npm installed it, or the test is skipped
// (without HOOKRELAY_SMEE_TESTS=1) or fails (with it).
func smeeBin(t *testing.T) (node, bin string) {
	t.Helper()
	if os.Getenv("HOOKRELAY_SMEE_TESTS") != "1" {
		t.Skip("set HOOKRELAY_SMEE_TESTS=1 (after npm ci in e2e/smeeclient) to run the real smee-client")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is not installed; HOOKRELAY_SMEE_TESTS=1 needs it")
	}
	bin, err = filepath.Abs(filepath.Join("node_modules", "smee-client", "bin", "smee.js"))
	if err == nil {
		_, err = os.Stat(bin)
	}
	if err != nil {
		t.Fatalf("smee-client is not installed (run npm ci in e2e/smeeclient): %v", err)
	}
	return node, bin
}

// startRelay serves a relay on loopback with SQLite in a temp dir.
func startRelay(t *testing.T) string {
	t.Helper()
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "relay.db"), sqlite.Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	r, err := server.New(server.Config{Store: st, AdminToken: adminToken})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- r.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
		_ = r.Close()
		_ = st.Close()
	})
	return "http://" + ln.Addr().String()
}

// received is one request as the local app saw it.
type received struct {
	path   string
	header http.Header
	body   []byte
}

// smee is a running smee CLI process.
type smee struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
	err  error // set when done is closed
}

func (s *smee) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.Write(p)
}

func (s *smee) output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.String()
}

// startSmee runs the smee CLI with args; it is killed when the test ends.
func startSmee(t *testing.T, args ...string) *smee {
	t.Helper()
	node, bin := smeeBin(t)
	s := &smee{cmd: exec.Command(node, append([]string{bin}, args...)...), done: make(chan struct{})}
	// No proxy between the client and loopback, whatever the environment says.
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); !strings.EqualFold(name, "http_proxy") &&
			!strings.EqualFold(name, "https_proxy") && !strings.EqualFold(name, "no_proxy") {
			s.cmd.Env = append(s.cmd.Env, kv)
		}
	}
	s.cmd.Env = append(s.cmd.Env, "NO_PROXY=*")
	s.cmd.Stdout, s.cmd.Stderr = s, s
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		s.err = s.cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() {
		_ = s.cmd.Process.Kill()
		<-s.done
		if t.Failed() {
			t.Logf("smee %s output:\n%s", strings.Join(args, " "), s.output())
		}
	})
	return s
}

// waitOutput waits until the client printed want.
func (s *smee) waitOutput(t *testing.T, want string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !strings.Contains(s.output(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("smee did not print %q within %s; output:\n%s", want, within, s.output())
		}
		select {
		case <-s.done:
			t.Fatalf("smee exited (%v) before printing %q; output:\n%s", s.err, want, s.output())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// webhook is a GitHub-style delivery.
type webhook struct {
	event, delivery string
	body            string
}

// post sends w to the channel as GitHub does, signed, and checks the 202.
func post(t *testing.T, channelURL string, w webhook) {
	t.Helper()
	req, err := http.NewRequest("POST", channelURL, strings.NewReader(w.body))
	if err != nil {
		t.Fatal(err)
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(w.body))
	req.Header.Set("User-Agent", "GitHub-Hookshot/044aadd")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", w.event)
	req.Header.Set("X-GitHub-Delivery", w.delivery)
	req.Header.Set("X-GitHub-Hook-ID", "292430182")
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("post %s: %d %s", w.delivery, resp.StatusCode, b)
	}
}

// TestRealSmeeClient runs smee-client against a channel: signed GitHub
// webhooks reach the app with equal JSON and the event headers, webhooks
// sent while its stream is cut arrive after it reconnects with
// Last-Event-ID, and a stream URL without the read key is refused.
func TestRealSmeeClient(t *testing.T) {
	t.Parallel()
	relay := startRelay(t)
	ch := createChannel(t, relay, "smee-real")
	proxy := newCutProxy(t, strings.TrimPrefix(relay, "http://"))

	arrived := make(chan received, 100)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		arrived <- received{path: r.URL.Path, header: r.Header.Clone(), body: body}
		w.WriteHeader(http.StatusOK)
	}))
	defer app.Close()

	streamURL := "http://" + proxy.addr() + "/h/" + ch.ID + "?key=" + url.QueryEscape(ch.ReadKey)
	client := startSmee(t, "--url", streamURL, "--target", app.URL+"/webhooks/github")
	client.waitOutput(t, "Connected", 20*time.Second)

	got := map[string]received{}
	expect := func(ws ...webhook) {
		t.Helper()
		deadline := time.After(30 * time.Second)
		for _, w := range ws {
			for {
				if _, ok := got[w.delivery]; ok {
					break
				}
				select {
				case r := <-arrived:
					if _, dup := got[r.header.Get("X-GitHub-Delivery")]; dup {
						t.Errorf("delivery %s arrived twice", r.header.Get("X-GitHub-Delivery"))
					}
					got[r.header.Get("X-GitHub-Delivery")] = r
				case <-deadline:
					t.Fatalf("delivery %s did not reach the app; smee printed:\n%s", w.delivery, client.output())
				}
			}
			r := got[w.delivery]
			var want, have any
			if err := json.Unmarshal([]byte(w.body), &want); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(r.body, &have); err != nil || !reflect.DeepEqual(want, have) {
				t.Errorf("%s: the app got %s, want JSON equal to %s", w.delivery, r.body, w.body)
			}
			if r.path != "/webhooks/github" || r.header.Get("X-GitHub-Event") != w.event ||
				r.header.Get("X-GitHub-Hook-ID") != "292430182" || !strings.HasPrefix(r.header.Get("X-Hub-Signature-256"), "sha256=") {
				t.Errorf("%s: the app got path %s and headers %v", w.delivery, r.path, r.header)
			}
		}
	}
	verifies := func(r received) bool {
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write(r.body)
		return r.header.Get("X-Hub-Signature-256") == "sha256="+hex.EncodeToString(mac.Sum(nil))
	}

	live := []webhook{
		{"push", "d-push-1", `{"ref":"refs/heads/main","before":"6113728f27ae82c7b1a177c8d03f9e96e0adf246","commits":[{"id":"1","message":"Fix, \"quoted\"","added":["a.go"]}],"repository":{"id":1296269,"full_name":"octo/hello","private":false},"sender":{"login":"octocat"}}`},
		{"issues", "d-issues-2", `{"action":"opened","issue":{"number":1347,"title":"Found a bug","labels":[],"body":null},"installation":{"id":2}}`},
		{"pull_request", "d-pr-3", `{"action":"synchronize","number":2,"pull_request":{"head":{"sha":"abc"},"draft":false,"additions":10.5}}`},
	}
	for _, w := range live {
		post(t, ch.URL, w)
	}
	expect(live...)
	for _, w := range live {
		if !verifies(got[w.delivery]) {
			t.Errorf("%s: the signature over the forwarded body does not verify: %s", w.delivery, got[w.delivery].body)
		}
	}

	// What docs/migrating.md warns of: smee-client re-serializes JSON, so a
	// pretty-printed body (Stripe's style) arrives as equal JSON in other
	// bytes, and a signature over the raw body no longer verifies there.
	pretty := webhook{"push", "d-pretty-4", "{\n  \"id\": \"evt_1\",\n  \"object\": \"event\"\n}"}
	post(t, ch.URL, pretty)
	expect(pretty)
	if verifies(got[pretty.delivery]) {
		t.Errorf("smee-client forwarded a pretty-printed body byte for byte (%q); docs/migrating.md says it does not", got[pretty.delivery].body)
	}

	// Cut the stream and keep it cut (the proxy refuses connections) while
	// webhooks come; then let the client reconnect.
	proxy.cut()
	missed := []webhook{
		{"push", "d-missed-5", `{"ref":"refs/heads/cut","commits":[]}`},
		{"check_run", "d-missed-6", `{"action":"completed","check_run":{"conclusion":"success"}}`},
	}
	for _, w := range missed {
		post(t, ch.URL, w)
	}
	proxy.waitRefused(t, 1, 20*time.Second) // the client tried while cut
	proxy.restore()
	expect(missed...)
	if !proxy.sawHeader("Last-Event-ID:") {
		t.Errorf("the client never reconnected with Last-Event-ID; requests:\n%s", proxy.requestHeads())
	}

	// Without the key the relay refuses the stream; smee-client gives up.
	refused := startSmee(t, "--url", "http://"+proxy.addr()+"/h/"+ch.ID, "--target", app.URL+"/webhooks/other")
	select {
	case <-refused.done:
		if refused.err == nil {
			t.Errorf("smee without the read key exited 0; output:\n%s", refused.output())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("smee without the read key kept running; output:\n%s", refused.output())
	}
	if !proxy.sawAnswer("HTTP/1.1 401 ") {
		t.Errorf("the relay did not answer 401 to the stream without a key; answers:\n%s", proxy.answerLines())
	}
	last := webhook{"ping", "d-last-7", `{"zen":"Keep it logically awesome."}`}
	post(t, ch.URL, last)
	expect(last)
	for delivery, r := range got {
		if r.path != "/webhooks/github" {
			t.Errorf("%s reached %s: the refused client forwarded it", delivery, r.path)
		}
	}
	if len(got) != len(live)+1+len(missed)+1 {
		t.Errorf("the app got %d deliveries, want %d", len(got), len(live)+len(missed)+2)
	}
}

// channel is what the API answers on creation.
type channel struct {
	ID      string `json:"id"`
	URL     string `json:"url"`
	ReadKey string `json:"read_key"`
}

func createChannel(t *testing.T, relay, id string) channel {
	t.Helper()
	req, _ := http.NewRequest("POST", relay+"/api/v1/channels", strings.NewReader(fmt.Sprintf(`{"id":%q}`, id)))
	req.Header.Set("Authorization", "Bearer "+adminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ch channel
	if resp.StatusCode != http.StatusCreated || json.NewDecoder(resp.Body).Decode(&ch) != nil || ch.ReadKey == "" {
		t.Fatalf("create channel: %d", resp.StatusCode)
	}
	return ch
}
