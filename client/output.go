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
}

// StateLine is the JSON object printed for each state change with
// Config.JSON.
type StateLine struct {
	Type      string    `json:"type"` // "state"
	Time      time.Time `json:"time"`
	State     string    `json:"state"`
	Relay     string    `json:"relay,omitempty"`
	Channel   string    `json:"channel,omitempty"`
	Group     string    `json:"group,omitempty"`
	URL       string    `json:"url,omitempty"`
	Target    string    `json:"target,omitempty"`
	Attempt   int       `json:"attempt,omitempty"`
	RetryInMS int64     `json:"retry_in_ms,omitempty"`
	Error     string    `json:"error,omitempty"`
}

// printer writes the agent's lines to Out, one Write per line.
type printer struct {
	w             io.Writer
	json          bool
	multiChannels bool // show the channel in text lines
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

func (p *printer) connected(relay, target string, channels []protocol.ChannelInfo) {
	if len(channels) == 0 {
		p.state(StateLine{State: "connected", Relay: relay, Target: target}, "connected to %s → %s", relay, target)
	}
	for _, c := range channels {
		p.state(StateLine{State: "connected", Relay: relay, Channel: c.Channel, Group: c.Group, URL: c.URL, Target: target},
			"connected to %s: channel %s (group %s) %s → %s", relay, c.Channel, c.Group, c.URL, target)
	}
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

// delivery prints the line of one delivery.
func (p *printer) delivery(req *protocol.DeliveryRequest, resp *protocol.DeliveryResponse, savedTo string) {
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
		SavedTo:    savedTo,
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
