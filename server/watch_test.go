package server

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// nextMessage returns the stream's next message, whatever its name.
func nextMessage(t *testing.T, events <-chan sseEvent, within time.Duration) sseEvent {
	t.Helper()
	select {
	case ev, ok := <-events:
		if !ok {
			return sseEvent{name: "(closed)"}
		}
		return ev
	case <-time.After(within):
		t.Fatalf("no message within %s", within)
		return sseEvent{}
	}
}

// longPoll starts GET .../events?wait=30s and returns its answer's channel.
func (e *uiEnv) longPoll(channelID string, opt reqOpt) <-chan string {
	got := make(chan string, 1)
	req, _ := http.NewRequest("GET", e.URL+"/api/v1/channels/"+channelID+"/events?wait=30s", nil)
	opt(req)
	go func() {
		resp, err := e.stream.Do(req)
		if err != nil {
			got <- err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		got <- resp.Status + " " + string(b)
	}()
	return got
}

// waitWatchers waits until the hub has n watchers of the channel.
func (e *uiEnv) waitWatchers(channelID string, n int) {
	e.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		e.relay.hub.mu.Lock()
		have := len(e.relay.hub.watchers[channelID])
		e.relay.hub.mu.Unlock()
		if have == n {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%d watchers of %s, want %d", have, channelID, n)
		}
		time.Sleep(5 * time.Millisecond) // polling the hub, with a deadline
	}
}

// TestRevocationEndsStreamsAndLongPolls: revoking a token, replacing a
// channel's read key or deleting the channel ends the live streams and
// long-polls opened with it at once: the next message is "end" with the
// reason (never the next event's path and size), and a long-poll answers
// 401 or 404 instead of the next event.
func TestRevocationEndsStreamsAndLongPolls(t *testing.T) {
	t.Parallel()
	e := startUI(t, nil)
	member := e.teamToken("alpha")
	var tok struct{ ID, Token string }
	resp, body := e.do("POST", "/api/v1/tokens", `{"team":"alpha","role":"agent"}`, withBearer(uiAdminToken))
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(body, &tok) != nil {
		t.Fatalf("create token: %d %s", resp.StatusCode, body)
	}
	e.channel(member, "revoked-live")
	rotated := e.channel(member, "rotated-live")
	e.channel(member, "deleted-live")
	cookie := e.login(tok.Token)

	for _, tc := range []struct {
		name, channel string
		auth          []reqOpt // each opens a stream and a long-poll
		revoke        func(t *testing.T)
		reason        string
		poll          string // the long-poll's answer
	}{
		{"token revoked", "revoked-live", []reqOpt{withBearer(tok.Token), withCookie(cookie)}, func(t *testing.T) {
			if resp, body := e.do("DELETE", "/api/v1/tokens/"+tok.ID, "", withBearer(uiAdminToken)); resp.StatusCode != 200 {
				t.Fatalf("revoke: %d %s", resp.StatusCode, body)
			}
		}, "revoked", "401"},
		{"read key replaced", "rotated-live", []reqOpt{withBearer(rotated.ReadKey)}, func(t *testing.T) {
			resp, body := e.do("POST", "/api/v1/channels/rotated-live/read-key", "", withBearer(member))
			var ch channelJSON
			if resp.StatusCode != 200 || json.Unmarshal(body, &ch) != nil || !strings.HasPrefix(ch.ReadKey, "rk_rotated-live.") || ch.ReadKey == rotated.ReadKey {
				t.Fatalf("replace the read key: %d %s", resp.StatusCode, body)
			}
			if resp, _ := e.do("GET", "/api/v1/channels/rotated-live/events", "", withBearer(rotated.ReadKey)); resp.StatusCode != 401 {
				t.Errorf("the old read key still reads: %d", resp.StatusCode)
			}
			if resp, _ := e.do("GET", "/api/v1/channels/rotated-live/events", "", withBearer(ch.ReadKey)); resp.StatusCode != 200 {
				t.Errorf("the new read key: %d", resp.StatusCode)
			}
		}, "read key was replaced", "401"},
		{"channel deleted", "deleted-live", []reqOpt{withBearer(member)}, func(t *testing.T) {
			if resp, body := e.do("DELETE", "/api/v1/channels/deleted-live", "", withBearer(member)); resp.StatusCode != 204 {
				t.Fatalf("delete: %d %s", resp.StatusCode, body)
			}
		}, "deleted", "404"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var streams []<-chan sseEvent
			var polls []<-chan string
			for _, auth := range tc.auth {
				s := e.openStream("/api/v1/channels/"+tc.channel+"/stream", auth)
				next(t, s, "ready", 5*time.Second)
				streams = append(streams, s)
				polls = append(polls, e.longPoll(tc.channel, auth))
			}
			e.waitWatchers(tc.channel, 2*len(tc.auth))
			tc.revoke(t)
			e.do("POST", "/h/"+tc.channel+"/after-revocation", `{"secret":1}`)
			for i, s := range streams {
				// Well before the 15 s heartbeat's own check.
				if m := nextMessage(t, s, 3*time.Second); m.name != "end" || !strings.Contains(m.data, tc.reason) {
					t.Errorf("stream %d: next message %q %s, want end saying %q", i, m.name, m.data, tc.reason)
				}
			}
			for i, p := range polls {
				select {
				case got := <-p:
					if !strings.HasPrefix(got, tc.poll) || strings.Contains(got, "after-revocation") {
						t.Errorf("long-poll %d answered %s, want %s", i, got, tc.poll)
					}
				case <-time.After(3 * time.Second):
					t.Errorf("long-poll %d still open", i)
				}
			}
		})
	}
}

// TestStreamsAndLongPollsAreCappedPerToken: one token or read key holds at
// most max_streams_per_token live streams and long-polls; more get 429 and
// the reason, and a closed one makes room.
func TestStreamsAndLongPollsAreCappedPerToken(t *testing.T) {
	t.Parallel()
	e := startUI(t, func(c *Config) { c.MaxStreamsPerToken = 3 })
	member := e.teamToken("capped")
	ch := e.channel(member, "capped-streams")
	get := func(path, token string) (*http.Response, func()) {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "GET", e.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := e.stream.Do(req)
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		stop := func() {
			cancel()
			resp.Body.Close()
		}
		t.Cleanup(stop)
		return resp, stop
	}
	stream := "/api/v1/channels/capped-streams/stream"
	poll := "/api/v1/channels/capped-streams/events?wait=30s"
	var first func()
	for i := range 2 {
		resp, stop := get(stream, member)
		if i == 0 {
			first = stop
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("stream %d: %d", i, resp.StatusCode)
		}
	}
	polled := e.longPoll("capped-streams", withBearer(member)) // answers once an event comes
	e.waitWatchers("capped-streams", 3)
	for _, path := range []string{stream, poll} {
		resp, _ := get(path, member)
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(string(b), "max_streams_per_token") {
			t.Errorf("%s beyond the cap: %d %s, want 429 naming max_streams_per_token", path, resp.StatusCode, b)
		}
	}
	for _, token := range []string{uiAdminToken, ch.ReadKey} {
		if resp, _ := get(stream, token); resp.StatusCode != http.StatusOK {
			t.Errorf("another principal's stream: %d", resp.StatusCode)
		}
	}
	first()
	e.waitWatchers("capped-streams", 4) // the first one's handler has left
	if resp, _ := get(stream, member); resp.StatusCode != http.StatusOK {
		t.Errorf("a stream after one closed: %d", resp.StatusCode)
	}
	e.do("POST", "/h/capped-streams/end-the-poll", "{}")
	if got := <-polled; !strings.HasPrefix(got, "200") {
		t.Errorf("the long-poll within the cap: %s", got)
	}
}
