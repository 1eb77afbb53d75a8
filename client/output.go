package client

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/hookrelay/hookrelay/protocol"
)

// eventTypeHeaders name the headers, in lower case, in which providers say
// what kind of event they sent.
var eventTypeHeaders = []string{
	"x-github-event",
	"x-gitlab-event",
	"x-gitea-event",
	"x-event-key", // Bitbucket
	"x-shopify-topic",
}

// DeliveryLine is the JSON object printed for each delivery with
// Config.JSON. Error is empty and Status the app's status when the target
// answered.
type DeliveryLine struct {
	Type       string    `json:"type"` // "delivery"
	Time       time.Time `json:"time"`
	EventID    string    `json:"event_id"`
	DeliveryID string    `json:"delivery_id,omitempty"`
	Channel    string    `json:"channel"`
	Attempt    int       `json:"attempt"`
	Method     string    `json:"method"`
	Path       string    `json:"path"`
	Query      string    `json:"query,omitempty"`
	EventType  string    `json:"event_type"`
	Status     int       `json:"status"`
	DurationMS float64   `json:"duration_ms"`
	Error      string    `json:"error"`
	ErrorCode  string    `json:"error_code,omitempty"`
	SavedTo    string    `json:"saved_to,omitempty"`
	Route      string    `json:"route,omitempty"`  // set when the agent has routes
	Target     string    `json:"target,omitempty"` // set when the agent has routes
}

// StateLine is the JSON object printed for each state change with
// Config.JSON.
type StateLine struct {
	Type      string    `json:"type"` // "state"
	Time      time.Time `json:"time"`
	State     string    `json:"state"`
	Relay     string    `json:"relay,omitempty"`
	Node      string    `json:"node,omitempty"`
	Channel   string    `json:"channel,omitempty"`
	Group     string    `json:"group,omitempty"`
	URL       string    `json:"url,omitempty"`
	Target    string    `json:"target,omitempty"`
	Attempt   int       `json:"attempt,omitempty"`
	RetryInMS int64     `json:"retry_in_ms,omitempty"`
	Error     string    `json:"error,omitempty"`
}

// TargetLine is the JSON object printed with Config.JSON when a target's
// health changes.
type TargetLine struct {
	Type   string    `json:"type"` // "target"
	Time   time.Time `json:"time"`
	Target string    `json:"target"`
	Up     bool      `json:"up"`
	Error  string    `json:"error,omitempty"`
}

// printer writes the agent's lines to Out, one Write per line.
type printer struct {
	w             io.Writer
	json          bool
	multiChannels bool // show the channel in text lines
	routes        bool // show each delivery's route
	log           *slog.Logger

	mu     sync.Mutex // serializes lines and guards failed
	failed bool       // a write failed; logged once
}

func newPrinter(w io.Writer, asJSON, multiChannels bool, log *slog.Logger) *printer {
	return &printer{w: w, json: asJSON, multiChannels: multiChannels, log: log}
}

func (p *printer) write(line []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, err := p.w.Write(line); err != nil && !p.failed {
		p.failed = true
		p.log.Error("write output", "err", err)
	}
}

func (p *printer) text(format string, args ...any) {
	p.write([]byte(fmt.Sprintf(format, args...) + "\n"))
}

func (p *printer) jsonLine(v any) {
	line, err := json.Marshal(v)
	if err != nil {
		p.log.Error("encode output line", "err", err)
		return
	}
	p.write(append(line, '\n'))
}

func (p *printer) state(s StateLine, text string, args ...any) {
	if p.json {
		s.Type, s.Time = "state", time.Now().UTC()
		p.jsonLine(s)
		return
	}
	p.text(text, args...)
}

func (p *printer) connecting(relay string) {
	p.state(StateLine{State: "connecting", Relay: relay}, "connecting to %s", relay)
}

func (p *printer) connected(relay, node, target string, channels []protocol.ChannelInfo) {
	where := relay
	if node != "" {
		where += " (node " + node + ")"
	}
	if len(channels) == 0 {
		p.state(StateLine{State: "connected", Relay: relay, Node: node, Target: target}, "connected to %s → %s", where, target)
	}
	for _, c := range channels {
		p.state(StateLine{State: "connected", Relay: relay, Node: node, Channel: c.Channel, Group: c.Group, URL: c.URL, Target: target},
			"connected to %s: channel %s (group %s) %s → %s", where, c.Channel, c.Group, c.URL, target)
	}
}

// target prints a change of a target's health.
func (p *printer) target(st TargetStatus) {
	if p.json {
		p.jsonLine(TargetLine{Type: "target", Time: time.Now().UTC(), Target: st.URL, Up: st.Up, Error: st.Err})
		return
	}
	if st.Up {
		p.text("target %s is up", st.URL)
		return
	}
	p.text("target %s is DOWN: %s (deliveries to it fail with 502 until it answers)", st.URL, st.Err)
}

// groupState prints what the relay said about a group: its target is down
// and it sends one probe at a time, or it flows again.
func (p *printer) groupState(st GroupStatus) {
	if !st.Paused {
		p.state(StateLine{State: "group_flowing", Channel: st.Channel, Group: st.Group},
			"channel %s (group %s): the target answers again; queued webhooks follow, oldest first", st.Channel, st.Group)
		return
	}
	wait := max(time.Until(st.NextTry), 0)
	shown := wait.Round(time.Second)
	if shown == 0 {
		shown = roundDuration(wait)
	}
	p.state(StateLine{State: "group_paused", Channel: st.Channel, Group: st.Group, RetryInMS: wait.Milliseconds(), Error: st.Err},
		"channel %s (group %s): target down, next try in %s (webhooks wait at the relay): %s", st.Channel, st.Group, shown, st.Err)
}

func (p *printer) reconnecting(wait time.Duration, attempt int, reason error) {
	p.state(StateLine{State: "reconnecting", Attempt: attempt, RetryInMS: wait.Milliseconds(), Error: errText(reason)},
		"reconnecting in %s (attempt %d): %v", roundDuration(wait), attempt, reason)
}

func (p *printer) draining(reason error) {
	p.state(StateLine{State: "draining", Error: errText(reason)},
		"relay is draining (%v): reconnecting now", reason)
}

func (p *printer) relayError(err error) {
	p.state(StateLine{State: "relay_error", Error: errText(err)}, "%v", err)
}

// stopped ends the output. The text line leaves out the error, which Run
// returns to its caller to show.
func (p *printer) stopped(err error) {
	p.state(StateLine{State: "stopped", Error: errText(err)}, "stopped")
}

// delivery prints the line of one answered delivery.
func (p *printer) delivery(e DeliveryEvent) {
	req, resp := e.Request, e.Response
	line := DeliveryLine{
		Type:       "delivery",
		Time:       time.Now().UTC(),
		EventID:    req.EventID,
		DeliveryID: req.DeliveryID,
		Channel:    req.Channel,
		Attempt:    req.Attempt,
		Method:     req.Method,
		Path:       req.Path,
		Query:      req.RawQuery,
		EventType:  eventType(req.Headers),
		Status:     resp.Status,
		DurationMS: float64(resp.Duration.Microseconds()) / 1000,
		Error:      resp.Error,
		ErrorCode:  resp.ErrorCode,
		SavedTo:    e.SavedTo,
	}
	if p.routes {
		line.Route, line.Target = e.Route, e.Target
	}
	if p.json {
		p.jsonLine(line)
		return
	}
	p.write([]byte(formatDelivery(&line, p.multiChannels) + "\n"))
}

// formatDelivery renders a delivery as a text line:
//
//	2026-11-26T10:41:02Z  POST /github  push  200  12ms
func formatDelivery(l *DeliveryLine, withChannel bool) string {
	var b strings.Builder
	b.WriteString(l.Time.Format(time.RFC3339))
	b.WriteString("  ")
	if withChannel {
		b.WriteString(l.Channel + "  ")
	}
	b.WriteString(l.Method + " " + l.Path)
	if l.Query != "" {
		b.WriteString("?" + l.Query)
	}
	eventType := l.EventType
	if eventType == "" {
		eventType = "-"
	}
	b.WriteString("  " + eventType + "  ")
	if l.Error != "" {
		b.WriteString("failed")
	} else {
		fmt.Fprintf(&b, "%d", l.Status)
	}
	d := time.Duration(l.DurationMS * float64(time.Millisecond))
	b.WriteString("  " + roundDuration(d).String())
	if l.Attempt > 1 {
		fmt.Fprintf(&b, "  (attempt %d)", l.Attempt)
	}
	if l.Route != "" {
		b.WriteString("  [" + l.Route + " → " + l.Target + "]")
	}
	if l.Error != "" {
		b.WriteString("  " + l.Error)
	}
	return b.String()
}

// eventType returns the provider's event name from the first header that
// carries one, or "".
func eventType(headers []protocol.Header) string {
	for _, name := range eventTypeHeaders {
		for _, h := range headers {
			if strings.EqualFold(h.Name, name) {
				return h.Value
			}
		}
	}
	return ""
}

// roundDuration keeps two or three significant digits for people.
func roundDuration(d time.Duration) time.Duration {
	switch {
	case d < time.Millisecond:
		return d.Round(time.Microsecond)
	case d < time.Second:
		return d.Round(time.Millisecond)
	default:
		return d.Round(100 * time.Millisecond)
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
