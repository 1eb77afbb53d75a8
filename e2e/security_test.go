package e2e

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/client"
	"github.com/hookrelay/hookrelay/protocol"
	"github.com/hookrelay/hookrelay/server"
	"github.com/hookrelay/hookrelay/server/store"
	"github.com/hookrelay/hookrelay/server/store/sqlite"
)

// teamSetup makes two teams with admin, member and agent tokens and a
// channel each (created by their members), plus a read key of team A's.
type teamSetup struct {
	tokens           map[string]string // role name → secret
	chanA, chanB     string
	readKeyA         string
	tokenIDs         map[string]string
	teamAID, teamBID string
}

func setupTeams(t *testing.T, relay *relayEnv) *teamSetup {
	t.Helper()
	ctx := t.Context()
	admin := relay.api()
	s := &teamSetup{tokens: map[string]string{"admin": adminToken}, tokenIDs: map[string]string{}}
	for _, team := range []string{"A", "B"} {
		tm, err := admin.CreateTeam(ctx, "team-"+team)
		if err != nil {
			t.Fatal(err)
		}
		if team == "A" {
			s.teamAID = tm.ID
		} else {
			s.teamBID = tm.ID
		}
		for _, role := range []string{"admin", "member", "agent"} {
			tok, err := admin.CreateToken(ctx, client.CreateToken{Team: tm.Name, Role: role})
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(tok.Token, "hr_") || len(tok.Token) < 40 {
				t.Fatalf("token secret %q is not a 256-bit value", tok.Token)
			}
			s.tokens[team+"-"+role] = tok.Token
			s.tokenIDs[team+"-"+role] = tok.ID
		}
		ch, err := client.NewAPI(relay.URL, s.tokens[team+"-member"]).CreateChannel(ctx, client.CreateChannel{})
		if err != nil {
			t.Fatal(err)
		}
		if team == "A" {
			s.chanA, s.readKeyA = ch.ID, ch.ReadKey
		} else {
			s.chanB = ch.ID
		}
	}
	// One event on each channel.
	for _, ch := range []string{s.chanA, s.chanB} {
		post(t, relay.ingress(ch), "text/plain", []byte("hello"))
	}
	s.tokens["readkey-A"] = s.readKeyA
	return s
}

func TestAccessByRoleAndTeam(t *testing.T) {
	t.Parallel()
	relay := startRelay(t)
	s := setupTeams(t, relay)
	evA, err := relay.api().ListEvents(t.Context(), s.chanA, nil)
	if err != nil || len(evA.Events) != 1 {
		t.Fatal(err)
	}
	evB, _ := relay.api().ListEvents(t.Context(), s.chanB, nil)
	eventA, eventB := evA.Events[0].ID, evB.Events[0].ID

	type route struct {
		name, method, path, body string
	}
	readA := []route{
		{"get channel", "GET", "/api/v1/channels/" + s.chanA, ""},
		{"list events", "GET", "/api/v1/channels/" + s.chanA + "/events", ""},
		{"agents", "GET", "/api/v1/channels/" + s.chanA + "/agents", ""},
		{"get event", "GET", "/api/v1/events/" + eventA, ""},
		{"event body", "GET", "/api/v1/events/" + eventA + "/body", ""},
		{"deliveries", "GET", "/api/v1/events/" + eventA + "/deliveries", ""},
	}
	readB := []route{
		{"get channel", "GET", "/api/v1/channels/" + s.chanB, ""},
		{"list events", "GET", "/api/v1/channels/" + s.chanB + "/events", ""},
		{"agents", "GET", "/api/v1/channels/" + s.chanB + "/agents", ""},
		{"get event", "GET", "/api/v1/events/" + eventB, ""},
		{"event body", "GET", "/api/v1/events/" + eventB + "/body", ""},
		{"deliveries", "GET", "/api/v1/events/" + eventB + "/deliveries", ""},
		{"replay", "POST", "/api/v1/events/" + eventB + "/replay", ""},
		{"update", "PATCH", "/api/v1/channels/" + s.chanB, `{"async":true}`},
		{"delete", "DELETE", "/api/v1/channels/" + s.chanB + "x", ""},
	}
	call := func(token string, r route) int {
		req, _ := http.NewRequest(r.method, relay.URL+r.path, strings.NewReader(r.body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	// Own team (and the read key) read team A's channel; team B gets 404.
	for _, who := range []string{"admin", "A-admin", "A-member", "A-agent", "readkey-A"} {
		for _, r := range readA {
			if got := call(s.tokens[who], r); got != http.StatusOK {
				t.Errorf("%s %s on team A's channel: %d, want 200", who, r.name, got)
			}
		}
	}
	for _, who := range []string{"A-admin", "A-member", "A-agent", "readkey-A"} {
		for _, r := range readB {
			if got := call(s.tokens[who], r); got != http.StatusNotFound {
				t.Errorf("%s %s on team B's channel: %d, want 404", who, r.name, got)
			}
		}
	}
	for _, r := range append(readA, readB...) {
		if got := call("", r); got != http.StatusUnauthorized {
			t.Errorf("no token %s: %d, want 401", r.name, got)
		}
		if got := call("hr_not_a_token", r); got != http.StatusUnauthorized {
			t.Errorf("bad token %s: %d, want 401", r.name, got)
		}
	}
	// Changing a channel: admin and member yes; agent and read key no.
	patch := route{"update", "PATCH", "/api/v1/channels/" + s.chanA, `{"async":false}`}
	for who, want := range map[string]int{"admin": 200, "A-admin": 200, "A-member": 200, "A-agent": 403, "readkey-A": 403} {
		if got := call(s.tokens[who], patch); got != want {
			t.Errorf("%s update: %d, want %d", who, got, want)
		}
	}
	// Channel lists show only one's own.
	for who, want := range map[string][]string{"A-member": {s.chanA}, "B-agent": {s.chanB}, "readkey-A": {s.chanA}} {
		chans, err := client.NewAPI(relay.URL, s.tokens[who]).ListChannels(t.Context())
		if err != nil || len(chans) != len(want) || chans[0].ID != want[0] {
			t.Errorf("%s sees channels %+v (%v), want %v", who, chans, err, want)
		}
	}
	// Teams and tokens: only admins manage them.
	teamsCall := route{"create team", "POST", "/api/v1/teams", `{"name":"intruders"}`}
	for who, want := range map[string]int{"A-admin": 403, "A-member": 403, "admin": 201} {
		if got := call(s.tokens[who], teamsCall); got != want {
			t.Errorf("%s create team: %d, want %d", who, got, want)
		}
	}
	tokCall := route{"token for B", "POST", "/api/v1/tokens", `{"team":"team-B","role":"admin"}`}
	for who, want := range map[string]int{"A-admin": 404, "A-member": 404, "B-admin": 201} {
		if got := call(s.tokens[who], tokCall); got != want {
			t.Errorf("%s create token for team B: %d, want %d", who, got, want)
		}
	}
	// The remaining routes, by role, on one's own team and on the other.
	streamB := route{"stream", "GET", "/api/v1/channels/" + s.chanB + "/stream", ""}
	summariesB := route{"summaries", "GET", "/api/v1/channels/" + s.chanB + "/event-summaries?ids=" + eventB, ""}
	summariesA := route{"summaries", "GET", "/api/v1/channels/" + s.chanA + "/event-summaries?ids=" + eventA, ""}
	createCh := route{"create channel", "POST", "/api/v1/channels", `{}`}
	listTeams := route{"list teams", "GET", "/api/v1/teams", ""}
	listTokens := route{"list tokens", "GET", "/api/v1/tokens", ""}
	revokeB := route{"revoke B's token", "DELETE", "/api/v1/tokens/" + s.tokenIDs["B-member"], ""}
	for _, tc := range []struct {
		who  string
		r    route
		want int
	}{
		{"A-member", streamB, 404}, {"readkey-A", streamB, 404},
		{"A-member", summariesB, 404}, {"A-agent", summariesA, 200}, {"readkey-A", summariesA, 200},
		{"A-agent", createCh, 403}, {"readkey-A", createCh, 403},
		{"A-agent", listTeams, 200}, {"readkey-A", listTeams, 200},
		{"A-member", listTokens, 403}, {"A-agent", listTokens, 403}, {"A-admin", listTokens, 200},
		{"A-admin", revokeB, 404}, {"A-member", revokeB, 404}, {"readkey-A", revokeB, 404},
	} {
		if got := call(s.tokens[tc.who], tc.r); got != tc.want {
			t.Errorf("%s %s: %d, want %d", tc.who, tc.r.name, got, tc.want)
		}
	}
	// Deleting: an agent token cannot, a member of the team can; team lists show only one's own team.
	delA := route{"delete", "DELETE", "/api/v1/channels/" + s.chanA, ""}
	if got := call(s.tokens["A-agent"], delA); got != http.StatusForbidden {
		t.Errorf("agent deletes its team's channel: %d, want 403", got)
	}
	if teams, err := client.NewAPI(relay.URL, s.tokens["A-member"]).ListTeams(t.Context()); err != nil || len(teams) != 1 || teams[0].ID != s.teamAID {
		t.Errorf("team A member sees teams %+v (%v)", teams, err)
	}
	// Tokens record when they were last used; listing never shows secrets.
	toks, err := relay.api().ListTokens(t.Context(), "team-A")
	if err != nil || len(toks) != 3 {
		t.Fatalf("team A tokens: %+v %v", toks, err)
	}
	for _, tok := range toks {
		if tok.LastUsedAt == nil || tok.Token != "" {
			t.Errorf("token %s (%s): last used %v, secret shown %q", tok.ID, tok.Role, tok.LastUsedAt, tok.Token)
		}
	}
	// Agents: a team-B agent cannot subscribe to team A's channel.
	defer func() {
		if got := call(s.tokens["A-member"], delA); got != http.StatusNoContent {
			t.Errorf("member deletes its team's channel: %d, want 204", got)
		}
	}()
	a, err := client.New(client.Config{ServerURL: relay.URL, Token: s.tokens["B-agent"], Target: "http://127.0.0.1:1",
		Subscriptions: []protocol.Subscription{{Channel: s.chanA}}, Out: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := a.Run(ctx); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("team B agent on team A's channel: %v", err)
	}
}

func TestRevokedTokenClosesTunnel(t *testing.T) {
	t.Parallel()
	relay := startRelay(t)
	s := setupTeams(t, relay)
	target := hashTarget(t)
	ae := relay.startAgent(t, s.chanA, target.URL, func(c *client.Config) { c.Token = s.tokens["A-agent"] })
	if err := relay.api().RevokeToken(t.Context(), s.tokenIDs["A-agent"]); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-ae.done:
		if err == nil || !strings.Contains(err.Error(), "401") && !strings.Contains(err.Error(), "revoked") {
			t.Fatalf("agent ended with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the revoked token's agent is still running")
	}
	ae.once.Do(func() {})
	waitFor(t, 5*time.Second, "the revoked agent unlisted", func() bool { return relay.agentCount(t, s.chanA) == 0 })
}

func TestLimitsAnswerClearlyAndStoreNothing(t *testing.T) {
	t.Parallel()
	relay := startRelay(t, func(c *server.Config) { c.MaxBody = 1 << 10 })
	ch := relay.channel(t, client.CreateChannel{})
	limited := relay.channel(t, client.CreateChannel{})
	rate := 1.0
	if _, err := relay.api().UpdateChannel(t.Context(), limited, client.UpdateChannel{RateLimit: &rate}); err != nil {
		t.Fatal(err)
	}
	resp, body := post(t, relay.ingress(ch), "text/plain", make([]byte, 2<<10))
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("large body: %d %s", resp.StatusCode, body)
	}
	many := map[string]string{}
	for i := range 300 {
		many[fmt.Sprint("X-H-", i)] = "v"
	}
	resp, body = do(t, http.MethodPost, relay.ingress(ch), many, []byte("x"))
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("300 headers: %d %s", resp.StatusCode, body)
	}
	huge := map[string]string{"X-Big": strings.Repeat("a", 2<<20)}
	resp, _ = do(t, http.MethodPost, relay.ingress(ch), huge, []byte("x"))
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("2 MiB header: %d", resp.StatusCode)
	}
	codes := map[int]int{}
	var retryAfter string
	for range 6 {
		resp, _ := post(t, relay.ingress(limited), "text/plain", []byte("x"))
		codes[resp.StatusCode]++
		if resp.StatusCode == http.StatusTooManyRequests {
			retryAfter = resp.Header.Get("Retry-After")
		}
	}
	if codes[http.StatusTooManyRequests] == 0 || retryAfter == "" {
		t.Errorf("rate limit: codes %v, Retry-After %q", codes, retryAfter)
	}
	page, _ := relay.api().ListEvents(t.Context(), ch, nil)
	if len(page.Events) != 0 {
		t.Errorf("refused requests were stored: %d events", len(page.Events))
	}
	page, _ = relay.api().ListEvents(t.Context(), limited, nil)
	if len(page.Events) != codes[http.StatusAccepted] {
		t.Errorf("rate-limited channel stored %d events, accepted %d", len(page.Events), codes[http.StatusAccepted])
	}
}

// rawPost sends a request over TCP with extra header lines.
func rawPost(t *testing.T, addr, path string, headers ...string) int {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: %s\r\n%sContent-Length: 1\r\nConnection: close\r\n\r\nx", path, addr,
		strings.Join(append(headers, ""), "\r\n"))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestForwardedForFromUntrustedPeersIsIgnored(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		trusted []string
		want    string
	}{
		{"untrusted", nil, "127.0.0.1"},
		{"trusted proxy", []string{"127.0.0.1"}, "203.0.113.9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			relay := startRelay(t, func(c *server.Config) { c.TrustedProxies = tc.trusted })
			ch := relay.channel(t, client.CreateChannel{})
			if got := rawPost(t, relay.addr, "/h/"+ch+"/", "X-Forwarded-For: 203.0.113.9"); got != http.StatusAccepted {
				t.Fatalf("status %d", got)
			}
			page, err := relay.api().ListEvents(t.Context(), ch, nil)
			if err != nil || len(page.Events) != 1 || page.Events[0].RemoteAddr != tc.want {
				t.Fatalf("recorded %+v (%v), want remote %s", page.Events, err, tc.want)
			}
		})
	}
}

func TestSenderVerificationAndSourceRanges(t *testing.T) {
	t.Parallel()
	bc, target := newBodyCounter(t)
	relay := startRelay(t)
	ch := relay.channel(t, client.CreateChannel{})
	verify, secret := "github", "s3cret"
	if _, err := relay.api().UpdateChannel(t.Context(), ch, client.UpdateChannel{Verify: &verify, Secret: &secret}); err != nil {
		t.Fatal(err)
	}
	relay.startAgent(t, ch, target.URL)
	sign := func(body string) string {
		m := hmac.New(sha256.New, []byte(secret))
		m.Write([]byte(body))
		return "sha256=" + hex.EncodeToString(m.Sum(nil))
	}
	resp, body := do(t, http.MethodPost, relay.ingress(ch), map[string]string{"X-Hub-Signature-256": sign("good")}, []byte("good"))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("valid signature: %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, http.MethodPost, relay.ingress(ch), map[string]string{"X-Hub-Signature-256": sign("good")}, []byte("tampered"))
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), "does not match") {
		t.Fatalf("tampered body: %d %s", resp.StatusCode, body)
	}
	page, err := relay.api().ListEvents(t.Context(), ch, url.Values{"include": {"body"}})
	if err != nil || len(page.Events) != 2 || page.Events[0].State != "rejected" || !strings.Contains(page.Events[0].RejectReason, "github") {
		t.Fatalf("rejected event not kept with its reason: %+v %v", page.Events, err)
	}
	if _, err := relay.api().Replay(t.Context(), page.Events[0].ID, ""); !client.IsStatus(err, http.StatusConflict) {
		t.Errorf("replaying a rejected event: %v", err)
	}
	if bc.count("tampered") != 0 {
		t.Fatal("a rejected webhook reached the target")
	}
	// Source ranges: loopback senders are outside 10.0.0.0/8.
	cidrs := []string{"10.0.0.0/8"}
	none := "none"
	if _, err := relay.api().UpdateChannel(t.Context(), ch, client.UpdateChannel{Verify: &none, AllowCIDRs: &cidrs}); err != nil {
		t.Fatal(err)
	}
	resp, body = post(t, relay.ingress(ch), "text/plain", []byte("from loopback"))
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("source outside the ranges: %d %s", resp.StatusCode, body)
	}
	cidrs = []string{"127.0.0.0/8"}
	if _, err := relay.api().UpdateChannel(t.Context(), ch, client.UpdateChannel{AllowCIDRs: &cidrs}); err != nil {
		t.Fatal(err)
	}
	if resp, _ := post(t, relay.ingress(ch), "text/plain", []byte("allowed")); resp.StatusCode != http.StatusOK {
		t.Fatalf("source inside the ranges: %d", resp.StatusCode)
	}
	bad := "nonsense"
	if _, err := relay.api().UpdateChannel(t.Context(), ch, client.UpdateChannel{Verify: &bad}); !client.IsStatus(err, http.StatusBadRequest) {
		t.Errorf("unknown scheme accepted: %v", err)
	}
}

func TestPathsCannotEscapeTheTarget(t *testing.T) {
	t.Parallel()
	hosts := make(chan string, 10)
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hosts <- r.Host + " " + r.URL.EscapedPath()
	}))
	t.Cleanup(target.Close)
	relay := startRelay(t)
	ch := relay.channel(t, client.CreateChannel{})
	relay.startAgent(t, ch, target.URL+"/hooks")
	host := strings.TrimPrefix(target.URL, "http://")
	for _, p := range []string{"//evil.example/x", "/../../etc/passwd", "/http://evil.example/x", "/%2e%2e/%2e%2e/x"} {
		if got := rawPost(t, relay.addr, "/h/"+ch+p); got != http.StatusOK {
			t.Errorf("%s: status %d", p, got)
			continue
		}
		seen := <-hosts
		if !strings.HasPrefix(seen, host+" /hooks") {
			t.Errorf("%s reached %q, want host %s under /hooks", p, seen, host)
		}
	}
}

func TestAnonymousChannelsOnlyWhenAllowed(t *testing.T) {
	t.Parallel()
	closed := startRelay(t)
	if _, err := client.NewAPI(closed.URL, "").CreateChannel(t.Context(), client.CreateChannel{}); !client.IsStatus(err, http.StatusUnauthorized) {
		t.Fatalf("anonymous create on a closed relay: %v", err)
	}
	open := startRelay(t, func(c *server.Config) { c.AllowAnonymous = true })
	ch, err := client.NewAPI(open.URL, "").CreateChannel(t.Context(), client.CreateChannel{})
	if err != nil || ch.ReadKey == "" {
		t.Fatalf("anonymous create on an open relay: %+v %v", ch, err)
	}
	post(t, open.ingress(ch.ID), "text/plain", []byte("hi"))
	page, err := client.NewAPI(open.URL, ch.ReadKey).ListEvents(t.Context(), ch.ID, nil)
	if err != nil || len(page.Events) != 1 {
		t.Fatalf("read key reading its channel: %+v %v", page, err)
	}
	// The ingress URL alone never grants reading.
	if _, err := client.NewAPI(open.URL, "").ListEvents(t.Context(), ch.ID, nil); !client.IsStatus(err, http.StatusUnauthorized) {
		t.Fatalf("reading without the key: %v", err)
	}
}

func TestSubPathTravelsAsSent(t *testing.T) {
	t.Parallel()
	paths := make(chan string, 10)
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		paths <- r.RequestURI
	}))
	t.Cleanup(target.Close)
	relay := startRelay(t)
	ch := relay.channel(t, client.CreateChannel{})
	relay.startAgent(t, ch, target.URL+"/base")
	for sent, want := range map[string]string{
		"/a%2Fb/{x}?q=%7B1%7D": "/base/a%2Fb/{x}?q=%7B1%7D",
		"/caf%C3%A9|^":         "/base/caf%C3%A9|^",
	} {
		if got := rawPost(t, relay.addr, "/h/"+ch+sent); got != http.StatusOK {
			t.Fatalf("%s: status %d", sent, got)
		}
		if got := <-paths; got != want {
			t.Errorf("sent %s, target saw %s, want %s", sent, got, want)
		}
	}
}

// TestRejectedWebhooksAreCapped posts bad-signature webhooks to a relay
// that keeps at most 3 rejected events per channel: the newest 3 are kept
// for inspection, older ones dropped as new ones arrive, accepted events
// stay.
func TestRejectedWebhooksAreCapped(t *testing.T) {
	t.Parallel()
	relay := startRelayDB(t, sqlite.Options{Limits: store.Limits{RejectedEvents: 3}})
	ch := relay.channel(t, client.CreateChannel{})
	verify, secret := "github", "s3cret"
	if _, err := relay.api().UpdateChannel(t.Context(), ch, client.UpdateChannel{Verify: &verify, Secret: &secret}); err != nil {
		t.Fatal(err)
	}
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("good"))
	resp, _ := do(t, http.MethodPost, relay.ingress(ch), map[string]string{"X-Hub-Signature-256": "sha256=" + hex.EncodeToString(m.Sum(nil))}, []byte("good"))
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("valid signature, no agent: %d, want 202", resp.StatusCode)
	}
	var rejected []string
	for i := range 5 {
		resp, _ := do(t, http.MethodPost, relay.ingress(ch), map[string]string{"X-Hub-Signature-256": "sha256=00"}, []byte(fmt.Sprint("forged ", i)))
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("forged webhook %d: %d, want 401", i, resp.StatusCode)
		}
		rejected = append(rejected, resp.Header.Get("Hookrelay-Event-Id"))
	}
	page, err := relay.api().ListEvents(t.Context(), ch, url.Values{"limit": {"100"}})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	accepted := 0
	for _, ev := range page.Events {
		if ev.State == "rejected" {
			got = append(got, ev.ID)
		} else {
			accepted++
		}
	}
	if want := []string{rejected[4], rejected[3], rejected[2]}; !slices.Equal(got, want) || accepted != 1 {
		t.Errorf("kept rejected %q and %d accepted, want the newest three rejected %q and the accepted one", got, accepted, want)
	}
}

// TestUndeliverablePathIsRefusedAtOnce: a sub-path the protocol cannot
// carry (a raw byte outside printable ASCII) is refused with 400 and the
// rule, before the sender waits and before anything is stored; the same
// bytes percent-encoded are delivered.
func TestUndeliverablePathIsRefusedAtOnce(t *testing.T) {
	t.Parallel()
	paths := make(chan string, 10)
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		paths <- r.RequestURI
	}))
	t.Cleanup(target.Close)
	relay := startRelay(t, func(c *server.Config) { c.ResponseTimeout = 30 * time.Second })
	ch := relay.channel(t, client.CreateChannel{})
	relay.startAgent(t, ch, target.URL)
	for _, sent := range []string{"/\xff\xfe", "/caf\xc3\xa9", "/a\x80"} {
		conn, err := net.Dial("tcp", relay.addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second)) // far below the response timeout
		fmt.Fprintf(conn, "POST /h/%s%s HTTP/1.1\r\nHost: %s\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx", ch, sent, relay.addr)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("%q: %v", sent, err)
		}
		body, _ := io.ReadAll(resp.Body)
		conn.Close()
		var e struct{ Error, Code string }
		_ = json.Unmarshal(body, &e)
		if resp.StatusCode != http.StatusBadRequest || e.Code != "bad_path" || !strings.Contains(e.Error, "percent-encode") {
			t.Errorf("%q: %d %s, want 400 bad_path saying to percent-encode", sent, resp.StatusCode, body)
		}
	}
	page, err := relay.api().ListEvents(t.Context(), ch, nil)
	if err != nil || len(page.Events) != 0 {
		t.Errorf("refused paths were stored: %v %v", page, err)
	}
	if got := rawPost(t, relay.addr, "/h/"+ch+"/%FF%FE"); got != http.StatusOK {
		t.Fatalf("percent-encoded: status %d", got)
	}
	if got := <-paths; got != "/%FF%FE" {
		t.Errorf("target saw %s, want /%%FF%%FE", got)
	}
}

// TestRelayedAnswersAreSandboxed: an app's answer is served at the relay's
// origin, so it comes sandboxed (no script runs, no MIME sniffing) and may
// not set the inspector's session cookie; the app's other cookies pass.
func TestRelayedAnswersAreSandboxed(t *testing.T) {
	t.Parallel()
	relay := startRelay(t)
	ch := relay.channel(t, client.CreateChannel{})
	relay.startAgent(t, ch, "", answering(func() (int, []protocol.Header, []byte) {
		return 200, []protocol.Header{
			{Name: "Content-Type", Value: "text/html"},
			{Name: "Set-Cookie", Value: "hookrelay_session=forged; Path=/"},
			{Name: "set-cookie", Value: "__Host-HookRelay_Session=forged; Path=/; Secure"},
			{Name: "Set-Cookie", Value: "app=kept; Path=/"},
		}, []byte(`<script>fetch("/api/v1/tokens",{method:"POST"})</script>`)
	}))
	resp, _ := do(t, http.MethodGet, relay.ingress(ch)+"/page", nil, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if got := resp.Header.Values("Content-Security-Policy"); !slices.Contains(got, "sandbox") {
		t.Errorf("Content-Security-Policy %q, want sandbox", got)
	}
	if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
		t.Errorf("X-Content-Type-Options %q, want nosniff", got)
	}
	if got := resp.Header.Values("Set-Cookie"); !slices.Equal(got, []string{"app=kept; Path=/"}) {
		t.Errorf("Set-Cookie %q, want only the app's own cookie", got)
	}
}

// TestInspectorOnItsOwnHost: with inspector_host set, the inspector and
// its session cookie live at that name only, and ingress at the others.
func TestInspectorOnItsOwnHost(t *testing.T) {
	t.Parallel()
	relay := startRelay(t, func(c *server.Config) {
		c.PublicURL = "http://hooks.test"
		c.InspectorHost = "inspector.test"
	})
	ch := relay.channel(t, client.CreateChannel{})
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	send := func(method, host, path, body string, cookie *http.Cookie) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest(method, relay.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		req.Header.Set("Content-Type", "application/json")
		if cookie != nil {
			req.AddCookie(cookie)
			req.Header.Set("Origin", "http://"+host)
		}
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	if resp, body := send("POST", "inspector.test", "/h/"+ch, "x", nil); resp.StatusCode != 404 || !strings.Contains(body, "wrong_host") {
		t.Errorf("ingress at the inspector's host: %d %s", resp.StatusCode, body)
	}
	if resp, body := send("POST", "hooks.test", "/h/"+ch, "x", nil); resp.StatusCode != http.StatusAccepted {
		t.Errorf("ingress at the public host: %d %s", resp.StatusCode, body)
	}
	if resp, _ := send("GET", "hooks.test:80", "/", "", nil); resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "http://inspector.test/" {
		t.Errorf("the page at the public host: %d to %q, want a redirect to the inspector's", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp, body := send("POST", "hooks.test", "/ui/login", `{"token":"`+adminToken+`"}`, nil); resp.StatusCode != 404 || len(resp.Cookies()) != 0 {
		t.Errorf("sign-in at the public host: %d %s %v", resp.StatusCode, body, resp.Cookies())
	}
	resp, body := send("POST", "inspector.test", "/ui/login", `{"token":"`+adminToken+`"}`, nil)
	if resp.StatusCode != 200 || len(resp.Cookies()) != 1 {
		t.Fatalf("sign-in at the inspector's host: %d %s", resp.StatusCode, body)
	}
	session := resp.Cookies()[0]
	if resp, body := send("GET", "inspector.test", "/api/v1/channels", "", session); resp.StatusCode != 200 {
		t.Errorf("API with the session at the inspector's host: %d %s", resp.StatusCode, body)
	}
	if resp, body := send("GET", "hooks.test", "/api/v1/channels", "", session); resp.StatusCode != 401 {
		t.Errorf("API with the session at the public host: %d %s, want 401", resp.StatusCode, body)
	}
	if _, err := server.New(server.Config{Store: relay.store, InspectorHost: "inspector.test"}); err == nil {
		t.Errorf("InspectorHost without PublicURL was accepted")
	}
}
