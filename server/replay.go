package server

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/hookrelay/hookrelay/server/store"
	"github.com/hookrelay/hookrelay/webhook"
)

// An edited replay (POST /api/v1/events/:id/replay with any of the fields
// of replayEdits) is a new event: the original's method, path and query
// with the edited headers and body, stored with ReplayOf naming the
// original and delivered like a webhook that just arrived, to every group
// of the channel (queued for the groups with no agent connected). It is
// not checked against the channel's sender verification: the caller holds
// a token that may change the channel (admin, member; agent tokens and read
// keys may replay only as it was), and an edit may be meant to test how the
// app treats a bad signature. "resign" signs it anew with the channel's
// secret instead.

// replayEdits are the edits the replay API takes (see webhook.Edit). Header
// lines are as the API shows them: a value_base64 holds a value's exact
// bytes, and wins over value.
type replayEdits struct {
	Headers       *[]headerJSON `json:"headers"`        // replaces every header line
	RemoveHeaders []string      `json:"remove_headers"` // drops every line of these names
	SetHeaders    []headerJSON  `json:"set_headers"`    // replaces the first line of each name, or adds it
	Body          *string       `json:"body"`           // the new body
	BodyEncoding  string        `json:"body_encoding"`  // utf8 (default) or base64
	Resign        bool          `json:"resign"`         // sign with the channel's secret after the edits
}

func (e replayEdits) any() bool {
	return e.Headers != nil || len(e.RemoveHeaders) > 0 || len(e.SetHeaders) > 0 || e.Body != nil || e.Resign
}

// edit turns the request's edits into a webhook.Edit, or says what is wrong.
func (e replayEdits) edit(maxBody int64) (webhook.Edit, int, string, string) {
	var (
		ed  webhook.Edit
		err error
	)
	if e.Headers != nil {
		if ed.Headers, err = headerLines(*e.Headers); err != nil {
			return ed, http.StatusBadRequest, "bad_request", "headers: " + err.Error()
		}
	}
	ed.Remove = e.RemoveHeaders
	if ed.Set, err = headerLines(e.SetHeaders); err != nil {
		return ed, http.StatusBadRequest, "bad_request", "set_headers: " + err.Error()
	}
	if e.Body != nil {
		switch e.BodyEncoding {
		case "", "utf8":
			ed.Body = []byte(*e.Body)
		case "base64":
			b, err := base64.StdEncoding.DecodeString(*e.Body)
			if err != nil {
				return ed, http.StatusBadRequest, "bad_request", "body is not valid base64: " + err.Error()
			}
			ed.Body = b
		default:
			return ed, http.StatusBadRequest, "bad_request", fmt.Sprintf("body_encoding %q: want utf8 or base64", e.BodyEncoding)
		}
		if int64(len(ed.Body)) > maxBody {
			return ed, http.StatusRequestEntityTooLarge, "body_too_large",
				fmt.Sprintf("the edited body is larger than the relay's max_body of %d bytes", maxBody)
		}
	} else if e.BodyEncoding != "" {
		return ed, http.StatusBadRequest, "bad_request", "body_encoding without a body"
	}
	if err := ed.Validate(); err != nil {
		return ed, http.StatusBadRequest, "bad_request", err.Error()
	}
	return ed, 0, "", ""
}

// headerLines turns the API's header lines into header lines (never nil).
func headerLines(hs []headerJSON) ([]store.Header, error) {
	out := make([]store.Header, len(hs))
	for i, h := range hs {
		out[i] = store.Header{Name: h.Name, Value: h.Value}
		if h.ValueBase64 != "" {
			v, err := base64.StdEncoding.DecodeString(h.ValueBase64)
			if err != nil {
				return nil, fmt.Errorf("%s: value_base64: %w", h.Name, err)
			}
			out[i].Value = string(v)
		}
	}
	return out, nil
}

// channelSigner is the signer of the channel's sender verification.
func channelSigner(ch store.Channel) (webhook.Signer, bool) {
	if ch.VerifyScheme == "" || ch.VerifySecret == "" {
		return webhook.Signer{}, false
	}
	return webhook.Signer{Scheme: ch.VerifyScheme, Secret: ch.VerifySecret, Header: ch.VerifyHeader}, true
}

// replayEdited stores and delivers an edited copy of ev.
func (r *Relay) replayEdited(c *gin.Context, ev store.Event, ch store.Channel, in replayRequest) {
	if !principalOf(c).canManage(ch) {
		// The relay would sign what they wrote with a secret they may not
		// read, and deliver it past the channel's sender verification.
		abortJSON(c, http.StatusForbidden, "forbidden", "agent tokens and read keys can replay an event as it was, not edited; use a member token")
		return
	}
	if in.Group != "" {
		abortJSON(c, http.StatusBadRequest, "bad_request",
			"group applies to a plain replay; an edited replay is a new event, delivered to every group of the channel")
		return
	}
	ed, status, code, msg := in.replayEdits.edit(r.cfg.MaxBody)
	if status != 0 {
		abortJSON(c, status, code, msg)
		return
	}
	headers, body := ed.Apply(ev.Headers, ev.Body)
	now := time.Now().UTC()
	if in.Resign {
		signer, ok := channelSigner(ch)
		if !ok {
			abortJSON(c, http.StatusBadRequest, "no_secret", fmt.Sprintf(
				"channel %q has no signing secret to re-sign with; set one with 'hookrelay channel update %s --verify PROVIDER --secret SECRET'", ch.ID, ch.ID))
			return
		}
		var err error
		if headers, err = signer.Sign(headers, body, now); err != nil {
			abortJSON(c, http.StatusInternalServerError, "bad_channel_setting", "re-sign: "+err.Error())
			return
		}
	}
	if body == nil {
		body = []byte{}
	}
	replay := &store.Event{
		ID:         newID("evt_"),
		ChannelID:  ch.ID,
		Method:     ev.Method,
		Path:       ev.Path,
		RawQuery:   ev.RawQuery,
		Headers:    headers,
		Body:       body,
		RemoteAddr: c.ClientIP(),
		ReceivedAt: now,
		State:      store.EventAccepted,
		ReplayOf:   ev.ID,
	}
	if err := r.store.AppendEvent(c.Request.Context(), replay); err != nil {
		r.storeFailed(c, err)
		return
	}
	r.hub.publish(replay, false)
	groups := []string{}
	agents, _ := r.channelAgentList(c.Request.Context(), ch.ID) // every node's: they all take the new event
	for _, a := range agents {
		if !slices.Contains(groups, a.Group) {
			groups = append(groups, a.Group)
		}
	}
	slices.Sort(groups)
	c.JSON(http.StatusAccepted, gin.H{"event_id": replay.ID, "replay_of": ev.ID, "groups": groups})
}

// signingSecretJSON is GET /api/v1/channels/:id/secret's answer.
type signingSecretJSON struct {
	Verify string `json:"verify"`           // the scheme; "" when the channel verifies no signature
	Secret string `json:"secret"`           // the signing secret; "" with verify
	Header string `json:"header,omitempty"` // for hmac: the signature's header
}

// channelSecret handles GET /api/v1/channels/:id/secret: the channel's
// sender verification with its secret, so that "hookrelay trigger" and
// "listen" can sign like the provider. Tokens that may change the channel
// (admin, member) may read it: they could set it anyway. Agent tokens and
// read keys may not: they receive webhooks, and must not be able to forge
// them.
func (r *Relay) channelSecret(c *gin.Context) {
	ch, ok := r.managedChannel(c, "agent tokens and read keys cannot read a channel's signing secret; use a member token")
	if !ok {
		return
	}
	c.JSON(http.StatusOK, signingSecretJSON{Verify: ch.VerifyScheme, Secret: ch.VerifySecret, Header: ch.VerifyHeader})
}
