package client

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"
)

// API is a small client of the relay's JSON API (/api/v1), used by the
// CLI's channel, events, team and token commands.
type API struct {
	BaseURL string // relay base URL, e.g. http://localhost:8080
	Token   string
	HTTP    *http.Client
}

// NewAPI returns an API client with a 60-second request timeout; it reaches
// the relay through the proxy of the environment (HTTPS_PROXY, HTTP_PROXY,
// NO_PROXY). For a private CA or another proxy set HTTP to a
// RelayHTTPClient.
func NewAPI(baseURL, token string) *API {
	return &API{BaseURL: strings.TrimRight(baseURL, "/"), Token: token, HTTP: &http.Client{Timeout: 60 * time.Second}}
}

// APIError is an error answer of the relay.
type APIError struct {
	Status  int
	Code    string
	Message string
}

func (e *APIError) Error() string {
	msg := e.Message
	if e.Status == http.StatusUnauthorized {
		msg = "the token was rejected; check --token or HOOKRELAY_TOKEN (" + e.Message + ")"
	}
	return fmt.Sprintf("relay answered %d: %s", e.Status, msg)
}

// Do sends a JSON request and decodes a JSON answer into out (nil: ignore).
func (c *API) Do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+path, body)
	if err != nil {
		return fmt.Errorf("bad relay URL %q: %w", c.BaseURL, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the relay at %s: %w", c.BaseURL, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("read relay answer: %w", err)
	}
	if resp.StatusCode >= 300 {
		apiErr := &APIError{Status: resp.StatusCode}
		var e struct {
			Error string `json:"error"`
			Code  string `json:"code"`
		}
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			apiErr.Message, apiErr.Code = e.Error, e.Code
		} else {
			apiErr.Message = strings.TrimSpace(string(data))
		}
		return apiErr
	}
	if out != nil && len(data) > 0 {
		if raw, ok := out.(*json.RawMessage); ok {
			*raw = append((*raw)[:0], data...)
			return nil
		}
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("decode relay answer: %w", err)
		}
	}
	return nil
}

// IsStatus reports whether err is an APIError with that HTTP status.
func IsStatus(err error, status int) bool {
	var e *APIError
	return errors.As(err, &e) && e.Status == status
}

// Channel is a channel as the API returns it.
type Channel struct {
	ID        string     `json:"id"`
	URL       string     `json:"url"`
	TeamID    string     `json:"team_id,omitempty"`
	Async     bool       `json:"async"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	Verify    string     `json:"verify,omitempty"`
	AllowCIDR []string   `json:"allow_cidrs,omitempty"`
	RateLimit float64    `json:"rate_limit,omitempty"`
	ReadKey   string     `json:"read_key,omitempty"`
	Agents    int        `json:"agents"`
}

// CreateChannel is the body of POST /api/v1/channels.
type CreateChannel struct {
	ID    string `json:"id,omitempty"`
	Async bool   `json:"async,omitempty"`
	TTL   string `json:"ttl,omitempty"`
	Team  string `json:"team,omitempty"`
}

// CreateChannel creates a channel.
func (c *API) CreateChannel(ctx context.Context, in CreateChannel) (Channel, error) {
	var ch Channel
	err := c.Do(ctx, http.MethodPost, "/api/v1/channels", in, &ch)
	return ch, err
}

// ListChannels lists the channels the token may see.
func (c *API) ListChannels(ctx context.Context) ([]Channel, error) {
	var out struct {
		Channels []Channel `json:"channels"`
	}
	err := c.Do(ctx, http.MethodGet, "/api/v1/channels", nil, &out)
	return out.Channels, err
}

// RotateReadKey gives a channel a new read key (in the answer's ReadKey,
// shown once); the old one stops working, and what it held open ends.
func (c *API) RotateReadKey(ctx context.Context, id string) (Channel, error) {
	var ch Channel
	err := c.Do(ctx, http.MethodPost, "/api/v1/channels/"+url.PathEscape(id)+"/read-key", nil, &ch)
	return ch, err
}

// DeleteChannel deletes a channel with its events.
func (c *API) DeleteChannel(ctx context.Context, id string) error {
	return c.Do(ctx, http.MethodDelete, "/api/v1/channels/"+url.PathEscape(id), nil, nil)
}

// Header is one header line. Value holds the exact bytes. In JSON (the
// API's answers, saved and captured events) "value" is text, where bytes
// that are not valid UTF-8 read as U+FFFD, so such a value also carries its
// exact bytes in "value_base64"; decoding prefers those.
type Header struct {
	Name  string
	Value string
}

// headerJSON is a Header as JSON holds it.
type headerJSON struct {
	Name        string `json:"name"`
	Value       string `json:"value"`
	ValueBase64 string `json:"value_base64,omitempty"`
}

// MarshalJSON writes the form described on Header.
func (h Header) MarshalJSON() ([]byte, error) {
	return marshalLine(headerJSON{Name: h.Name, Value: h.Value, ValueBase64: base64IfNotUTF8(h.Value)})
}

// UnmarshalJSON reads the form MarshalJSON writes.
func (h *Header) UnmarshalJSON(data []byte) error {
	var j headerJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	value, err := exact(j.Value, j.ValueBase64)
	if err != nil {
		return fmt.Errorf("header %s: value_base64: %w", j.Name, err)
	}
	*h = Header{Name: j.Name, Value: value}
	return nil
}

// base64IfNotUTF8 is s in standard base64 when s is not valid UTF-8, else "".
func base64IfNotUTF8(s string) string {
	if utf8.ValidString(s) {
		return ""
	}
	return base64.StdEncoding.EncodeToString([]byte(s))
}

// exact returns the bytes in b64 when it is set, else text.
func exact(text, b64 string) (string, error) {
	if b64 == "" {
		return text, nil
	}
	b, err := base64.StdEncoding.DecodeString(b64)
	return string(b), err
}

// Event is a stored webhook as the API returns it. Query holds the exact
// bytes (the API adds "query_base64" when they are not UTF-8).
type Event struct {
	ID           string    `json:"id"`
	Channel      string    `json:"channel"`
	Cursor       string    `json:"cursor"`
	Method       string    `json:"method"`
	Path         string    `json:"path"`
	Query        string    `json:"query"`
	QueryBase64  string    `json:"query_base64,omitempty"`
	Headers      []Header  `json:"headers"`
	Body         *string   `json:"body,omitempty"`
	BodyEncoding string    `json:"body_encoding,omitempty"`
	Size         int       `json:"size"`
	RemoteAddr   string    `json:"remote_addr"`
	ReceivedAt   time.Time `json:"received_at"`
	State        string    `json:"state"`
	RejectReason string    `json:"reject_reason,omitempty"`
	LastStatus   int       `json:"last_status,omitempty"`
	Attempts     int       `json:"attempts"`
	Delivered    bool      `json:"delivered"`
	ReplayOf     string    `json:"replay_of,omitempty"` // the event this one is an edited replay of
}

// UnmarshalJSON reads an event as the API writes it, taking the exact
// query from query_base64 when it is there.
func (e *Event) UnmarshalJSON(data []byte) error {
	type plain Event // without the methods, to avoid recursion
	if err := json.Unmarshal(data, (*plain)(e)); err != nil {
		return err
	}
	query, err := exact(e.Query, e.QueryBase64)
	if err != nil {
		return fmt.Errorf("event %s: query_base64: %w", e.ID, err)
	}
	e.Query = query
	return nil
}

// EventPage is one page of ListEvents.
type EventPage struct {
	Events     []Event `json:"events"`
	NextCursor string  `json:"next_cursor,omitempty"`
}

// ListEvents lists a channel's events; query holds the API's parameters
// (limit, before, after, wait, method, status, since, until, q, include).
func (c *API) ListEvents(ctx context.Context, channel string, query url.Values) (EventPage, error) {
	var page EventPage
	path := "/api/v1/channels/" + url.PathEscape(channel) + "/events"
	if len(query) > 0 {
		path += "?" + query.Encode()
	}
	err := c.Do(ctx, http.MethodGet, path, nil, &page)
	return page, err
}

// GetEvent returns one event with its body.
func (c *API) GetEvent(ctx context.Context, id string) (Event, error) {
	var ev Event
	err := c.Do(ctx, http.MethodGet, "/api/v1/events/"+url.PathEscape(id), nil, &ev)
	return ev, err
}

// Delivery is one delivery attempt.
type Delivery struct {
	ID              string    `json:"id"`
	Group           string    `json:"group"`
	Agent           string    `json:"agent"`
	Attempt         int       `json:"attempt"`
	StartedAt       time.Time `json:"started_at"`
	DurationMS      float64   `json:"duration_ms"`
	Status          int       `json:"status,omitempty"`
	Error           string    `json:"error,omitempty"`
	ResponseHeaders []Header  `json:"response_headers"`
	ResponseBody    string    `json:"response_body"`
	BodyEncoding    string    `json:"response_body_encoding"`
	Done            bool      `json:"done"`
}

// Deliveries lists the attempts of one event.
func (c *API) Deliveries(ctx context.Context, id string) ([]Delivery, error) {
	var out struct {
		Deliveries []Delivery `json:"deliveries"`
	}
	err := c.Do(ctx, http.MethodGet, "/api/v1/events/"+url.PathEscape(id)+"/deliveries", nil, &out)
	return out.Deliveries, err
}

// Replay delivers an event again to the connected groups, or to one.
func (c *API) Replay(ctx context.Context, id, group string) ([]string, error) {
	var in any
	if group != "" {
		in = map[string]string{"group": group}
	}
	out, err := c.replay(ctx, id, in)
	return out.Groups, err
}

// ReplayEdits are the edits of an edited replay (see the relay's replay
// API): nil and empty fields change nothing.
type ReplayEdits struct {
	Headers       []Header `json:"headers,omitempty"`        // replaces every header line
	RemoveHeaders []string `json:"remove_headers,omitempty"` // drops every line of these names
	SetHeaders    []Header `json:"set_headers,omitempty"`    // replaces the first line of each name, or adds it
	Body          *string  `json:"body,omitempty"`
	BodyEncoding  string   `json:"body_encoding,omitempty"` // utf8 or base64
	Resign        bool     `json:"resign,omitempty"`        // sign anew with the channel's secret
}

// ReplayResult is the relay's answer to a replay.
type ReplayResult struct {
	EventID  string   `json:"event_id"`            // an edited replay's new event
	ReplayOf string   `json:"replay_of,omitempty"` // set for an edited replay
	Groups   []string `json:"groups"`
}

// ReplayEdited stores an edited copy of the event as a new event, which the
// relay delivers to every group of the channel.
func (c *API) ReplayEdited(ctx context.Context, id string, edits ReplayEdits) (ReplayResult, error) {
	return c.replay(ctx, id, edits)
}

func (c *API) replay(ctx context.Context, id string, in any) (ReplayResult, error) {
	var out ReplayResult
	err := c.Do(ctx, http.MethodPost, "/api/v1/events/"+url.PathEscape(id)+"/replay", in, &out)
	return out, err
}

// GetChannel returns one channel.
func (c *API) GetChannel(ctx context.Context, id string) (Channel, error) {
	var ch Channel
	err := c.Do(ctx, http.MethodGet, "/api/v1/channels/"+url.PathEscape(id), nil, &ch)
	return ch, err
}

// SigningSecret is a channel's sender verification with its secret.
type SigningSecret struct {
	Verify string `json:"verify"` // the scheme; "" when the channel verifies no signature
	Secret string `json:"secret"`
	Header string `json:"header,omitempty"` // for hmac
}

// ChannelSecret reads a channel's signing secret (admin and member tokens).
func (c *API) ChannelSecret(ctx context.Context, id string) (SigningSecret, error) {
	var s SigningSecret
	err := c.Do(ctx, http.MethodGet, "/api/v1/channels/"+url.PathEscape(id)+"/secret", nil, &s)
	return s, err
}

// Team is a team as the API returns it.
type Team struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
}

// CreateTeam creates a team (relay admin only).
func (c *API) CreateTeam(ctx context.Context, name string) (Team, error) {
	var t Team
	err := c.Do(ctx, http.MethodPost, "/api/v1/teams", map[string]string{"name": name}, &t)
	return t, err
}

// ListTeams lists the teams the token may see.
func (c *API) ListTeams(ctx context.Context) ([]Team, error) {
	var out struct {
		Teams []Team `json:"teams"`
	}
	err := c.Do(ctx, http.MethodGet, "/api/v1/teams", nil, &out)
	return out.Teams, err
}

// Token is an API token as the API returns it; Token (the secret) is set
// only in the answer to CreateToken.
type Token struct {
	ID         string     `json:"id"`
	Token      string     `json:"token,omitempty"`
	TeamID     string     `json:"team_id"`
	Role       string     `json:"role"`
	Name       string     `json:"name,omitempty"`
	CreatedAt  time.Time  `json:"created_at"`
	ExpiresAt  *time.Time `json:"expires_at,omitempty"`
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
	Revoked    bool       `json:"revoked"`
}

// CreateToken is the body of POST /api/v1/tokens.
type CreateToken struct {
	Team    string `json:"team"`
	Role    string `json:"role,omitempty"`
	Name    string `json:"name,omitempty"`
	Expires string `json:"expires,omitempty"`
}

// CreateToken creates a token; its secret is in the answer only.
func (c *API) CreateToken(ctx context.Context, in CreateToken) (Token, error) {
	var t Token
	err := c.Do(ctx, http.MethodPost, "/api/v1/tokens", in, &t)
	return t, err
}

// ListTokens lists tokens (of one team when team is set).
func (c *API) ListTokens(ctx context.Context, team string) ([]Token, error) {
	var out struct {
		Tokens []Token `json:"tokens"`
	}
	path := "/api/v1/tokens"
	if team != "" {
		path += "?team=" + url.QueryEscape(team)
	}
	err := c.Do(ctx, http.MethodGet, path, nil, &out)
	return out.Tokens, err
}

// RevokeToken revokes a token; the relay closes its tunnels.
func (c *API) RevokeToken(ctx context.Context, id string) error {
	return c.Do(ctx, http.MethodDelete, "/api/v1/tokens/"+url.PathEscape(id), nil, nil)
}

// UpdateChannel is the body of PATCH /api/v1/channels/:id; nil fields are
// left as they are.
type UpdateChannel struct {
	Async      *bool     `json:"async,omitempty"`
	Verify     *string   `json:"verify,omitempty"`
	Secret     *string   `json:"secret,omitempty"`
	Header     *string   `json:"header,omitempty"`
	AllowCIDRs *[]string `json:"allow_cidrs,omitempty"`
	RateLimit  *float64  `json:"rate_limit,omitempty"`
}

// UpdateChannel changes a channel's settings.
func (c *API) UpdateChannel(ctx context.Context, id string, in UpdateChannel) (Channel, error) {
	var ch Channel
	err := c.Do(ctx, http.MethodPatch, "/api/v1/channels/"+url.PathEscape(id), in, &ch)
	return ch, err
}
