package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/server/store"
	"github.com/hookrelay/hookrelay/server/store/sqlite"
	"github.com/hookrelay/hookrelay/server/ui"
)

const uiAdminToken = "hr_inspector_test_admin"

// uiEnv is a relay served on 127.0.0.1 with SQLite in a temp dir.
type uiEnv struct {
	t      *testing.T
	relay  *Relay
	store  *sqlite.Store
	URL    string
	client *http.Client // no cookie jar, no redirects: tests handle both
	stream *http.Client // no timeout, for streams
	stop   func()
}

func startUI(t *testing.T, mod func(*Config)) *uiEnv {
	t.Helper()
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "relay.db"), sqlite.Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Store: st, AdminToken: uiAdminToken}
	if mod != nil {
		mod(&cfg)
	}
	r, err := New(cfg)
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
	transport := &http.Transport{}
	e := &uiEnv{
		t: t, relay: r, store: st, URL: "http://" + ln.Addr().String(),
		client: &http.Client{
			Transport:     transport,
			Timeout:       10 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		stream: &http.Client{Transport: transport},
	}
	var once sync.Once
	e.stop = func() {
		once.Do(func() {
			// A connection the client dialed but never used would hold
			// graceful shutdown for 5 seconds (net/http treats it as busy).
			e.client.CloseIdleConnections()
			cancel()
			if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
				t.Errorf("serve: %v", err)
			}
			_ = r.Close()
			_ = st.Close()
			e.client.CloseIdleConnections()
		})
	}
	t.Cleanup(e.stop)
	return e
}

type reqOpt func(*http.Request)

func withCookie(c *http.Cookie) reqOpt { return func(r *http.Request) { r.AddCookie(c) } }
func withBearer(tok string) reqOpt {
	return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
}
func withHeader(k, v string) reqOpt { return func(r *http.Request) { r.Header.Set(k, v) } }

// do sends a request and returns the response with its body read.
func (e *uiEnv) do(method, path, body string, opts ...reqOpt) (*http.Response, []byte) {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for _, o := range opts {
		o(req)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp, b
}

func sessionCookieOf(resp *http.Response) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == sessionCookie {
			return c
		}
	}
	return nil
}

// login signs in with token and returns the session cookie.
func (e *uiEnv) login(token string) *http.Cookie {
	e.t.Helper()
	resp, body := e.do("POST", "/ui/login", `{"token":"`+token+`"}`, withHeader("Origin", e.URL))
	c := sessionCookieOf(resp)
	if resp.StatusCode != http.StatusOK || c == nil {
		e.t.Fatalf("login: %d %s", resp.StatusCode, body)
	}
	return c
}

// teamToken creates a team and a member token of it.
func (e *uiEnv) teamToken(team string) string {
	e.t.Helper()
	if resp, body := e.do("POST", "/api/v1/teams", `{"name":"`+team+`"}`, withBearer(uiAdminToken)); resp.StatusCode != http.StatusCreated {
		e.t.Fatalf("create team: %d %s", resp.StatusCode, body)
	}
	resp, body := e.do("POST", "/api/v1/tokens", `{"team":"`+team+`","role":"member"}`, withBearer(uiAdminToken))
	var tok struct {
		Token string `json:"token"`
		ID    string `json:"id"`
	}
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(body, &tok) != nil {
		e.t.Fatalf("create token: %d %s", resp.StatusCode, body)
	}
	return tok.Token
}

// channel creates a channel with a bearer token and returns it.
func (e *uiEnv) channel(token, id string) channelJSON {
	e.t.Helper()
	resp, body := e.do("POST", "/api/v1/channels", `{"id":"`+id+`"}`, withBearer(token))
	var ch channelJSON
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(body, &ch) != nil {
		e.t.Fatalf("create channel: %d %s", resp.StatusCode, body)
	}
	return ch
}

func TestLoginSetsSessionCookie(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		publicURL string
		secure    bool
	}{
		{"http", "", false},
		{"https public URL", "https://relay.example.com", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := startUI(t, func(c *Config) { c.PublicURL = tc.publicURL })
			resp, body := e.do("POST", "/ui/login", `{"token":"`+uiAdminToken+`"}`)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("login: %d %s", resp.StatusCode, body)
			}
			c := sessionCookieOf(resp)
			if c == nil {
				t.Fatal("no session cookie")
			}
			if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Secure != tc.secure {
				t.Errorf("cookie %+v: want HttpOnly, SameSite=Strict, Path=/, Secure=%v", c, tc.secure)
			}
			if len(c.Value) < 43 || strings.Contains(c.Value, uiAdminToken) {
				t.Errorf("cookie value %q: want 256 random bits, not the token", c.Value)
			}
			if c.MaxAge <= 0 || c.MaxAge > int(sessionTTL.Seconds()) {
				t.Errorf("Max-Age %d: want (0, %v]", c.MaxAge, sessionTTL)
			}
			var s sessionJSON
			if err := json.Unmarshal(body, &s); err != nil || !s.SignedIn || !s.Admin || !s.CanManage {
				t.Errorf("session %s: want signed-in admin", body)
			}
		})
	}
}

func TestLoginRejectsWrongToken(t *testing.T) {
	t.Parallel()
	e := startUI(t, nil)
	for _, tok := range []string{"hr_wrong", "", "rk_nochannel.secret"} {
		resp, body := e.do("POST", "/ui/login", `{"token":"`+tok+`"}`)
		if resp.StatusCode != http.StatusUnauthorized || sessionCookieOf(resp) != nil {
			t.Errorf("token %q: %d %s, cookie %v: want 401 and no cookie", tok, resp.StatusCode, body, sessionCookieOf(resp))
		}
	}
	// A form post without JavaScript is sent back to the page, which shows the error.
	resp, _ := e.do("POST", "/ui/login", "", func(r *http.Request) {
		r.Body = io.NopCloser(strings.NewReader("token=hr_wrong"))
		r.ContentLength = int64(len("token=hr_wrong"))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/#/signin/rejected" || sessionCookieOf(resp) != nil {
		t.Errorf("form: %d to %q: want 303 to /#/signin/rejected, no cookie", resp.StatusCode, resp.Header.Get("Location"))
	}
	// Signing in from another site's page is refused.
	resp, _ = e.do("POST", "/ui/login", `{"token":"`+uiAdminToken+`"}`, withHeader("Origin", "https://evil.example"))
	if resp.StatusCode != http.StatusForbidden || sessionCookieOf(resp) != nil {
		t.Errorf("cross-site login: %d: want 403 and no cookie", resp.StatusCode)
	}
}

func TestSessionCookieAuthenticatesAPI(t *testing.T) {
	t.Parallel()
	e := startUI(t, nil)
	tokA := e.teamToken("alpha")
	tokB := e.teamToken("beta")
	chA := e.channel(tokA, "alpha-hooks")
	e.channel(tokB, "beta-hooks")
	cookie := e.login(tokA)

	resp, body := e.do("GET", "/api/v1/channels", "", withCookie(cookie))
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), chA.ID) || strings.Contains(string(body), "beta-hooks") {
		t.Fatalf("list with cookie: %d %s: want alpha's channel only", resp.StatusCode, body)
	}
	if resp, _ := e.do("GET", "/api/v1/channels/beta-hooks", "", withCookie(cookie)); resp.StatusCode != http.StatusNotFound {
		t.Errorf("other team's channel: %d, want 404", resp.StatusCode)
	}
	if resp, _ := e.do("GET", "/api/v1/channels", ""); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("no cookie: %d, want 401", resp.StatusCode)
	}
	// The Authorization header wins over the cookie.
	resp, body = e.do("GET", "/api/v1/channels", "", withCookie(cookie), withBearer(tokB))
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "beta-hooks") {
		t.Errorf("bearer with cookie: %d %s: want beta's channels", resp.StatusCode, body)
	}
	// A made-up cookie is refused and cleared.
	resp, _ = e.do("GET", "/api/v1/channels", "", withCookie(&http.Cookie{Name: sessionCookie, Value: "forged"}))
	if c := sessionCookieOf(resp); resp.StatusCode != http.StatusUnauthorized || c == nil || c.MaxAge >= 0 {
		t.Errorf("forged cookie: %d, cookie %v: want 401 and the cookie cleared", resp.StatusCode, c)
	}
	// The session endpoint says who the page is.
	resp, body = e.do("GET", "/ui/session", "", withCookie(cookie))
	var s sessionJSON
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &s) != nil || s.TeamName != "alpha" || s.Role != store.RoleMember || !s.CanManage {
		t.Errorf("session: %d %s", resp.StatusCode, body)
	}
	if _, body := e.do("GET", "/ui/session", ""); !strings.Contains(string(body), `"signed_in":false`) {
		t.Errorf("session without cookie: %s", body)
	}
	// The tunnel is for agents' bearer tokens only.
	if resp, _ := e.do("GET", "/tunnel", "", withCookie(cookie)); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("tunnel with a cookie: %d, want 401", resp.StatusCode)
	}
}

func TestSessionCookieNeedsSameOriginToChangeState(t *testing.T) {
	t.Parallel()
	e := startUI(t, nil)
	tok := e.teamToken("alpha")
	cookie := e.login(tok)
	create := func(id string, opts ...reqOpt) int {
		resp, _ := e.do("POST", "/api/v1/channels", `{"id":"`+id+`"}`, opts...)
		return resp.StatusCode
	}
	if got := create("no-origin", withCookie(cookie)); got != http.StatusForbidden {
		t.Errorf("cookie, no Origin: %d, want 403", got)
	}
	if got := create("cross-origin", withCookie(cookie), withHeader("Origin", "https://evil.example")); got != http.StatusForbidden {
		t.Errorf("cookie, cross-site Origin: %d, want 403", got)
	}
	if got := create("null-origin", withCookie(cookie), withHeader("Origin", "null")); got != http.StatusForbidden {
		t.Errorf("cookie, Origin null: %d, want 403", got)
	}
	if got := create("same-origin", withCookie(cookie), withHeader("Origin", e.URL)); got != http.StatusCreated {
		t.Errorf("cookie, same Origin: %d, want 201", got)
	}
	if got := create("same-referer", withCookie(cookie), withHeader("Referer", e.URL+"/")); got != http.StatusCreated {
		t.Errorf("cookie, same-origin Referer: %d, want 201", got)
	}
	if got := create("bearer", withBearer(tok)); got != http.StatusCreated {
		t.Errorf("bearer, no Origin: %d, want 201 (no cookie, no CSRF)", got)
	}
	if resp, _ := e.do("DELETE", "/api/v1/channels/same-origin", "", withCookie(cookie), withHeader("Origin", "https://evil.example")); resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site DELETE: %d, want 403", resp.StatusCode)
	}
	if resp, _ := e.do("DELETE", "/api/v1/channels/same-origin", "", withCookie(cookie), withHeader("Origin", e.URL)); resp.StatusCode != http.StatusNoContent {
		t.Errorf("same-origin DELETE: %d, want 204", resp.StatusCode)
	}
}

func TestLogoutEndsSession(t *testing.T) {
	t.Parallel()
	e := startUI(t, nil)
	cookie := e.login(uiAdminToken)
	resp, _ := e.do("POST", "/ui/logout", "", withCookie(cookie), withHeader("Origin", "https://evil.example"))
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site logout: %d, want 403", resp.StatusCode)
	}
	resp, _ = e.do("POST", "/ui/logout", "", withCookie(cookie), withHeader("Origin", e.URL))
	if c := sessionCookieOf(resp); resp.StatusCode != http.StatusOK || c == nil || c.MaxAge >= 0 {
		t.Fatalf("logout: %d, cookie %v: want 200 and the cookie cleared", resp.StatusCode, c)
	}
	if resp, _ := e.do("GET", "/api/v1/channels", "", withCookie(cookie)); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("after logout: %d, want 401", resp.StatusCode)
	}
}

func TestRevokedTokenEndsSessionAtOnce(t *testing.T) {
	t.Parallel()
	e := startUI(t, nil)
	tok := e.teamToken("alpha")
	cookie := e.login(tok)
	if resp, _ := e.do("GET", "/api/v1/channels", "", withCookie(cookie)); resp.StatusCode != http.StatusOK {
		t.Fatalf("before revoking: %d", resp.StatusCode)
	}
	_, body := e.do("GET", "/api/v1/tokens", "", withBearer(uiAdminToken))
	var toks struct {
		Tokens []struct{ ID string } `json:"tokens"`
	}
	if err := json.Unmarshal(body, &toks); err != nil || len(toks.Tokens) != 1 {
		t.Fatalf("tokens: %s", body)
	}
	if resp, body := e.do("DELETE", "/api/v1/tokens/"+toks.Tokens[0].ID, "", withBearer(uiAdminToken)); resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke: %d %s", resp.StatusCode, body)
	}
	if resp, _ := e.do("GET", "/api/v1/channels", "", withCookie(cookie)); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("after revoking: %d, want 401", resp.StatusCode)
	}
}

func TestReadKeySessionSeesOneChannel(t *testing.T) {
	t.Parallel()
	e := startUI(t, nil)
	tok := e.teamToken("alpha")
	ch := e.channel(tok, "alpha-one")
	e.channel(tok, "alpha-two")
	cookie := e.login(ch.ReadKey)
	_, body := e.do("GET", "/ui/session", "", withCookie(cookie))
	var s sessionJSON
	if err := json.Unmarshal(body, &s); err != nil || s.Channel != "alpha-one" || s.CanManage {
		t.Errorf("session: %s: want the read key's channel, no managing", body)
	}
	_, body = e.do("GET", "/api/v1/channels", "", withCookie(cookie))
	if !strings.Contains(string(body), "alpha-one") || strings.Contains(string(body), "alpha-two") {
		t.Errorf("channels: %s: want alpha-one only", body)
	}
	if resp, _ := e.do("POST", "/api/v1/channels", `{"id":"new-one"}`, withCookie(cookie), withHeader("Origin", e.URL)); resp.StatusCode != http.StatusForbidden {
		t.Errorf("create with a read key: %d, want 403", resp.StatusCode)
	}
}

func TestSessionStoreIsBounded(t *testing.T) {
	t.Parallel()
	s := sessionStore{max: 3, ttl: time.Hour}
	now := time.Now()
	first, _ := s.create(credentialOf("a"), now)
	var last string
	for i := range 5 {
		last, _ = s.create(credentialOf("b"), now.Add(time.Duration(i+1)*time.Second))
	}
	if n := s.count(); n != 3 {
		t.Errorf("%d sessions, want the cap of 3", n)
	}
	if _, ok := s.lookup(first, now); ok {
		t.Error("the oldest session survived the cap")
	}
	if sess, ok := s.lookup(last, now); !ok || sess.cred != credentialOf("b") {
		t.Error("the newest session is gone")
	}
	if _, ok := s.lookup(last, now.Add(2*time.Hour)); ok {
		t.Error("an expired session was found")
	}
}

// sseEvent is one Server-Sent Event.
type sseEvent struct{ name, data string }

// openStream opens a channel's stream and returns its events as they come.
func (e *uiEnv) openStream(path string, opts ...reqOpt) <-chan sseEvent {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "GET", e.URL+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, o := range opts {
		o(req)
	}
	resp, err := e.stream.Do(req)
	if err != nil {
		cancel()
		e.t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		resp.Body.Close()
		cancel()
		e.t.Fatalf("stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	out := make(chan sseEvent, 1024)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(out)
		sc := bufio.NewScanner(resp.Body)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "" && ev.name != "":
				select {
				case out <- ev:
				case <-ctx.Done():
					return
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, "event: "):
				ev.name = line[len("event: "):]
			case strings.HasPrefix(line, "data: "):
				ev.data += line[len("data: "):]
			}
		}
	}()
	e.t.Cleanup(func() {
		cancel()
		resp.Body.Close()
		<-done
	})
	return out
}

// next waits for the stream's next event named name, skipping others.
func next(t *testing.T, events <-chan sseEvent, name string, within time.Duration) sseEvent {
	t.Helper()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("the stream ended before %q", name)
			}
			if ev.name == name {
				return ev
			}
		case <-deadline.C:
			t.Fatalf("no %q event within %s", name, within)
		}
	}
}

func TestStreamDeliversNewEventsAndDeliveries(t *testing.T) {
	t.Parallel()
	e := startUI(t, nil)
	tok := e.teamToken("alpha")
	e.channel(tok, "alpha-live")
	cookie := e.login(tok)
	events := e.openStream("/api/v1/channels/alpha-live/stream", withCookie(cookie))
	next(t, events, "ready", 5*time.Second)

	start := time.Now()
	resp, _ := e.do("POST", "/h/alpha-live/gh?x=1", `{"action":"opened"}`, withHeader("X-GitHub-Event", "pull_request"))
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("ingress: %d", resp.StatusCode)
	}
	msg := next(t, events, "event", time.Second)
	var le liveEvent
	if err := json.Unmarshal([]byte(msg.data), &le); err != nil {
		t.Fatalf("event data %s: %v", msg.data, err)
	}
	if le.ID != resp.Header.Get("Hookrelay-Event-Id") || le.Method != "POST" || le.Path != "/gh" || le.Query != "x=1" ||
		le.EventName != "pull_request" || le.Size != len(`{"action":"opened"}`) || le.Cursor == "" {
		t.Errorf("event %+v", le)
	}
	t.Logf("event on the stream %s after the webhook", time.Since(start))

	d := store.Delivery{ID: "dlv_x", EventID: le.ID, ChannelID: "alpha-live", GroupName: "g", AgentID: "ses_x", Attempt: 1, Status: 204, Duration: 1500 * time.Microsecond, Done: true}
	e.relay.hub.publishDelivery(d)
	msg = next(t, events, "delivery", time.Second)
	var ld liveDelivery
	if err := json.Unmarshal([]byte(msg.data), &ld); err != nil || ld.EventID != le.ID || ld.Status != 204 || ld.DurationMS != 1.5 || ld.Group != "g" {
		t.Errorf("delivery %s", msg.data)
	}
	// Other channels' news stays out.
	e.channel(tok, "alpha-other")
	e.do("POST", "/h/alpha-other/x", `{}`)
	e.do("POST", "/h/alpha-live/y", `{}`)
	if got := next(t, events, "event", time.Second); !strings.Contains(got.data, `"path":"/y"`) {
		t.Errorf("next event %s: want /y of this channel", got.data)
	}
}

func TestStreamRefusesOtherTeams(t *testing.T) {
	t.Parallel()
	e := startUI(t, nil)
	tokA := e.teamToken("alpha")
	tokB := e.teamToken("beta")
	e.channel(tokA, "alpha-private")
	for _, path := range []string{"/api/v1/channels/alpha-private/stream", "/api/v1/channels/alpha-private/event-summaries?ids=x"} {
		if resp, _ := e.do("GET", path, "", withBearer(tokB)); resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s as another team: %d, want 404", path, resp.StatusCode)
		}
		if resp, _ := e.do("GET", path, ""); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s without a token: %d, want 401", path, resp.StatusCode)
		}
	}
}

func TestStreamResyncsWhenMessagesDrop(t *testing.T) {
	t.Parallel()
	e := startUI(t, nil)
	e.channel(uiAdminToken, "slow-reader")
	events := e.openStream("/api/v1/channels/slow-reader/stream", withBearer(uiAdminToken))
	next(t, events, "ready", 5*time.Second)
	ws := e.relay.hub.liveWatchers("slow-reader")
	if len(ws) != 1 {
		t.Fatalf("%d live watchers, want 1", len(ws))
	}
	// Fill the queue as a browser that stopped reading would, with the
	// handler held off by the queue's lock.
	q := ws[0].live
	q.mu.Lock()
	for len(q.msgs) < liveQueueSize {
		q.msgs = append(q.msgs, liveMessage{name: "delivery", data: []byte(`{"event_id":"evt_filler"}`)})
	}
	q.mu.Unlock()
	publishDone := make(chan struct{})
	go func() {
		defer close(publishDone)
		for range 10 {
			e.relay.hub.publishDelivery(store.Delivery{ChannelID: "slow-reader", EventID: "evt_x"})
		}
	}()
	select {
	case <-publishDone:
	case <-time.After(time.Second):
		t.Fatal("publishing blocked on a full stream queue")
	}
	next(t, events, "resync", 2*time.Second)
	// The stream goes on afterwards.
	e.relay.hub.publishDelivery(store.Delivery{ChannelID: "slow-reader", EventID: "evt_after"})
	for {
		if got := next(t, events, "delivery", time.Second); strings.Contains(got.data, "evt_after") {
			break
		}
	}
}

func TestLiveQueueDropsWhenFull(t *testing.T) {
	t.Parallel()
	var q liveQueue
	for range liveQueueSize + 10 {
		q.push(liveMessage{name: "event"})
	}
	msgs, dropped := q.take()
	if len(msgs) != liveQueueSize || !dropped {
		t.Errorf("take: %d msgs, dropped %v: want %d, true", len(msgs), dropped, liveQueueSize)
	}
	if msgs, dropped := q.take(); len(msgs) != 0 || dropped {
		t.Errorf("second take: %d msgs, dropped %v: want an empty queue", len(msgs), dropped)
	}
}

func TestLongPollWorksBesideStreams(t *testing.T) {
	t.Parallel()
	e := startUI(t, nil)
	e.channel(uiAdminToken, "both-ways")
	events := e.openStream("/api/v1/channels/both-ways/stream", withBearer(uiAdminToken))
	next(t, events, "ready", 5*time.Second)
	type result struct {
		status int
		body   string
	}
	got := make(chan result, 1)
	go func() {
		req, _ := http.NewRequest("GET", e.URL+"/api/v1/channels/both-ways/events?wait=20s", nil)
		req.Header.Set("Authorization", "Bearer "+uiAdminToken)
		resp, err := e.client.Do(req)
		if err != nil {
			got <- result{body: err.Error()}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		got <- result{resp.StatusCode, string(b)}
	}()
	// Post until the long-poll (which may not have started waiting yet) answers.
	deadline := time.Now().Add(10 * time.Second)
	for {
		e.do("POST", "/h/both-ways/lp", `{}`)
		select {
		case r := <-got:
			if r.status != http.StatusOK || !strings.Contains(r.body, `"path":"/lp"`) {
				t.Fatalf("long-poll: %d %s", r.status, r.body)
			}
			next(t, events, "event", time.Second)
			return
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("the long-poll did not answer")
		}
	}
}

func TestShutdownEndsStreams(t *testing.T) {
	t.Parallel()
	e := startUI(t, nil)
	e.channel(uiAdminToken, "closing")
	events := e.openStream("/api/v1/channels/closing/stream", withBearer(uiAdminToken))
	next(t, events, "ready", 5*time.Second)
	start := time.Now()
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		e.stop()
	}()
	if ev := next(t, events, "end", 5*time.Second); !strings.Contains(ev.data, "stopping") {
		t.Errorf("end: %s", ev.data)
	}
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("the relay did not stop within 5s with a stream open")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("shutdown took %s with a stream open; graceful shutdown waited for it", d)
	}
}

func TestEventSummaries(t *testing.T) {
	t.Parallel()
	e := startUI(t, nil)
	e.channel(uiAdminToken, "summaries")
	post := func(hdr map[string]string, body string) string {
		opts := []reqOpt{}
		for k, v := range hdr {
			opts = append(opts, withHeader(k, v))
		}
		resp, _ := e.do("POST", "/h/summaries/", body, opts...)
		return resp.Header.Get("Hookrelay-Event-Id")
	}
	gh := post(map[string]string{"X-GitHub-Event": "push"}, `{"ref":"main"}`)
	stripe := post(map[string]string{"Stripe-Signature": "t=1,v1=x"}, `{"id":"evt_1","object":"event","type":"invoice.paid"}`)
	if err := e.store.RecordProgress(context.Background(), store.Progress{Deliveries: []store.Delivery{{
		ID: "dlv_1", EventID: gh, GroupName: "laptop", AgentID: "ses_1", Attempt: 1, StartedAt: time.Now(), Duration: 3 * time.Millisecond, Status: 200, Done: true,
	}}}); err != nil {
		t.Fatal(err)
	}
	e.channel(uiAdminToken, "elsewhere")
	resp, _ := e.do("POST", "/h/elsewhere/", `{}`)
	foreign := resp.Header.Get("Hookrelay-Event-Id")

	resp, body := e.do("GET", "/api/v1/channels/summaries/event-summaries?ids="+url.QueryEscape(strings.Join([]string{stripe, gh, foreign, "evt_missing"}, ",")), "", withBearer(uiAdminToken))
	var out struct {
		Summaries []eventSummaryJSON `json:"summaries"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &out) != nil || len(out.Summaries) != 2 {
		t.Fatalf("summaries: %d %s: want 2 (other channels' and missing events left out)", resp.StatusCode, body)
	}
	s0, s1 := out.Summaries[0], out.Summaries[1]
	if s0.ID != stripe || s0.EventName != "invoice.paid" || s0.Deliveries != 0 || s0.LastDelivery != nil {
		t.Errorf("stripe summary %+v", s0)
	}
	if s1.ID != gh || s1.EventName != "push" || s1.Deliveries != 1 || s1.LastDelivery == nil || s1.LastDelivery.Status != 200 || s1.LastDelivery.DurationMS != 3 {
		t.Errorf("github summary %+v", s1)
	}
	var ids []string
	for i := range maxSummaryIDs + 1 {
		ids = append(ids, "evt_"+strings.Repeat("x", i+1))
	}
	if resp, _ := e.do("GET", "/api/v1/channels/summaries/event-summaries?ids="+strings.Join(ids, ","), "", withBearer(uiAdminToken)); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("%d ids: %d, want 400", len(ids), resp.StatusCode)
	}
}

func TestEventName(t *testing.T) {
	t.Parallel()
	h := func(kv ...string) []store.Header {
		var out []store.Header
		for i := 0; i < len(kv); i += 2 {
			out = append(out, store.Header{Name: kv[i], Value: kv[i+1]})
		}
		return out
	}
	for _, tc := range []struct {
		name    string
		headers []store.Header
		body    string
		want    string
	}{
		{"github", h("X-GitHub-Event", "push", "Content-Type", "application/json"), `{"type":"nope"}`, "push"},
		{"github lower case", h("x-github-event", "issues"), ``, "issues"},
		{"gitlab", h("X-Gitlab-Event", "Push Hook"), `{}`, "Push Hook"},
		{"stripe", h("Content-Type", "application/json; charset=utf-8", "Stripe-Signature", "t=1"), `{"id":"evt_1","object":"event","data":{"object":{"type":"card"}},"type":"charge.succeeded"}`, "charge.succeeded"},
		{"slack event callback", h("Content-Type", "application/json", "X-Slack-Signature", "v0=1"), `{"type":"event_callback","event":{"type":"app_mention","text":"hi"}}`, "app_mention"},
		{"slack url verification", h("Content-Type", "application/json"), `{"type":"url_verification","challenge":"x"}`, "url_verification"},
		{"slack interactivity", h("Content-Type", "application/x-www-form-urlencoded"), "payload=" + url.QueryEscape(`{"type":"block_actions"}`), "block_actions"},
		{"slack command", h("Content-Type", "application/x-www-form-urlencoded"), "command=%2Fdeploy&text=prod", "/deploy"},
		{"standard webhooks with type", h("webhook-id", "msg_1", "Content-Type", "application/json"), `{"type":"user.created","data":{}}`, "user.created"},
		{"standard webhooks id only", h("webhook-id", "msg_2", "Content-Type", "application/octet-stream"), "\x00\x01", "msg_2"},
		{"json without content type", nil, `{"type":"ping"}`, "ping"},
		{"type not a string", h("Content-Type", "application/json"), `{"type":{"a":1}}`, ""},
		{"not json", h("Content-Type", "application/json"), `{"type":`, ""},
		{"nothing", h("Content-Type", "text/plain"), `hello`, ""},
		{"array", h("Content-Type", "application/json"), `[{"type":"x"}]`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := eventName(tc.headers, []byte(tc.body)); got != tc.want {
				t.Errorf("eventName = %q, want %q", got, tc.want)
			}
		})
	}
	big := `{"type":"big","pad":"` + strings.Repeat("x", maxNameBody) + `"}`
	if got := eventName(h("Content-Type", "application/json"), []byte(big)); got != "" {
		t.Errorf("body over %d bytes: %q, want it left unread", maxNameBody, got)
	}
}

func TestInspectorPageHeaders(t *testing.T) {
	t.Parallel()
	e := startUI(t, nil)
	for _, tc := range []struct{ path, ctype string }{
		{"/", "text/html; charset=utf-8"},
		{"/ui/", "text/html; charset=utf-8"},
		{"/ui/assets/app.js", "text/javascript; charset=utf-8"},
		{"/ui/assets/format.js", "text/javascript; charset=utf-8"},
		{"/ui/assets/app.css", "text/css; charset=utf-8"},
		{"/ui/assets/icon.svg", "image/svg+xml"},
	} {
		resp, body := e.do("GET", tc.path, "")
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != tc.ctype || len(body) == 0 {
			t.Errorf("%s: %d %q, want 200 %q", tc.path, resp.StatusCode, resp.Header.Get("Content-Type"), tc.ctype)
		}
		for k, want := range map[string]string{
			"Content-Security-Policy": ui.ContentSecurityPolicy,
			"X-Content-Type-Options":  "nosniff",
			"Referrer-Policy":         "no-referrer",
			"X-Frame-Options":         "DENY",
		} {
			if got := resp.Header.Get(k); got != want {
				t.Errorf("%s: %s = %q, want %q", tc.path, k, got, want)
			}
		}
		if etag := resp.Header.Get("ETag"); etag != "" {
			if resp, _ := e.do("GET", tc.path, "", withHeader("If-None-Match", etag)); resp.StatusCode != http.StatusNotModified {
				t.Errorf("%s with its ETag: %d, want 304", tc.path, resp.StatusCode)
			}
		}
	}
	if !strings.Contains(ui.ContentSecurityPolicy, "default-src 'self'") || strings.Contains(ui.ContentSecurityPolicy, "unsafe-inline") {
		t.Errorf("CSP %q: want default-src 'self' and no unsafe-inline", ui.ContentSecurityPolicy)
	}
	if resp, _ := e.do("GET", "/ui/assets/nope.js", ""); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown asset: %d, want 404", resp.StatusCode)
	}
}

// TestDeleteChannelWhileAgentsAreConnected: the browser tests found that
// deleting a channel while any agent was connected deadlocked the hub
// (closeSessions held hub.mu while its matcher took it again).
func TestDeleteChannelWhileAgentsAreConnected(t *testing.T) {
	t.Parallel()
	e := startUI(t, nil)
	e.channel(uiAdminToken, "doomed")
	h := e.relay.hub
	fake := &agentSession{id: "ses_elsewhere", relay: e.relay} // connected to other channels
	h.d.Register(fake, nil)
	t.Cleanup(func() { h.d.Unregister(fake) })
	status := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest("DELETE", e.URL+"/api/v1/channels/doomed", nil)
		req.Header.Set("Authorization", "Bearer "+uiAdminToken)
		resp, err := e.client.Do(req)
		if err != nil {
			status <- 0
			return
		}
		resp.Body.Close()
		status <- resp.StatusCode
	}()
	select {
	case got := <-status:
		if got != http.StatusNoContent {
			t.Errorf("delete: %d, want 204", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("deleting a channel with an agent connected hung")
	}
}
