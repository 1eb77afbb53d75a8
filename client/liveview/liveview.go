// Package liveview is the agent's live terminal view: the connection state,
// each target's health, per-route counts of deliveries by status class and
// the last deliveries, redrawn in place (with Bubble Tea) while the agent
// runs. The agent's hooks (client.Config.OnState, OnDelivery, OnTarget)
// feed it; they only update its state under a mutex, so they never block,
// and the view redraws from that state several times a second.
package liveview

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"

	"github.com/hookrelay/hookrelay/client"
)

// Defaults and bounds of the view.
const (
	lastDeliveries = 10                     // deliveries listed
	redrawEvery    = 200 * time.Millisecond // how often the state is drawn again
	noRoute        = "(no route)"
)

// Config configures a View.
type Config struct {
	Relay string // the relay's URL, shown until the welcome
	// Routes names the agent's routes in order, the fallback last, so that
	// the table lists them before any delivery took them.
	Routes []string
	// Out is the terminal; In its keyboard, or nil when standard input is
	// not a terminal (Ctrl-C then arrives as a signal).
	Out io.Writer
	In  io.Reader
	// Stop is called when the user presses Ctrl-C or q: it should stop the
	// agent, whose state the view keeps showing until Close.
	Stop func()
}

// View is the live view. Create it with New, start it with Start, feed it
// with its methods and end it with Close.
type View struct {
	cfg     Config
	program *tea.Program
	done    chan struct{} // closed when the program has returned
	err     error         // its error, set before done is closed

	mu         sync.Mutex // guards the fields below
	state      client.State
	targets    []client.TargetStatus
	groups     map[string]client.GroupStatus // channel → its group's state on the relay, while paused
	routes     []string                      // in the order of Config.Routes, then as seen
	counts     map[string]*[6]int            // route → 2xx, 3xx, 4xx, 5xx, other status, failed
	recent     []client.DeliveryEvent        // the last deliveries, newest last, in flight ones too
	byDelivery map[string]int                // delivery id → index in recent while in flight
	connected  time.Time                     // when the current session began
	note       string                        // the last warning
	inFlight   map[string]struct{}           // deliveries in flight
	stopping   bool                          // Stop was asked for
	width      int                           // the terminal's width; 0 until known
}

// New returns a view; Start shows it.
func New(cfg Config) *View {
	v := &View{
		cfg:        cfg,
		done:       make(chan struct{}),
		routes:     slices.Clone(cfg.Routes),
		counts:     make(map[string]*[6]int),
		byDelivery: make(map[string]int),
		groups:     make(map[string]client.GroupStatus),
		inFlight:   make(map[string]struct{}),
	}
	for _, r := range cfg.Routes {
		v.counts[r] = new([6]int)
	}
	opts := []tea.ProgramOption{tea.WithOutput(cfg.Out), tea.WithoutSignalHandler()}
	if cfg.In != nil {
		opts = append(opts, tea.WithInput(cfg.In))
	} else {
		opts = append(opts, tea.WithInput(nil))
	}
	v.program = tea.NewProgram(model{v: v}, opts...)
	return v
}

// Start shows the view until Close.
func (v *View) Start() {
	go func() {
		defer close(v.done)
		_, v.err = v.program.Run()
	}()
}

// Close draws the view a last time, leaves it on the screen, gives the
// terminal back and returns once the program has ended.
func (v *View) Close() error {
	v.program.Quit()
	<-v.done
	if v.err != nil && v.err != tea.ErrProgramKilled {
		return fmt.Errorf("live view: %w", v.err)
	}
	return nil
}

// State takes the agent's connection state (client.Config.OnState).
func (v *View) State(s client.State) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if s.Status == client.StatusConnected && v.state.Status != client.StatusConnected {
		v.connected = time.Now()
	}
	v.state = s
}

// Target takes a change of a target's health (client.Config.OnTarget).
func (v *View) Target(st client.TargetStatus) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for i := range v.targets {
		if v.targets[i].URL == st.URL {
			v.targets[i] = st
			return
		}
	}
	v.targets = append(v.targets, st)
}

// GroupState takes what the relay said about a group
// (client.Config.OnGroupState).
func (v *View) GroupState(st client.GroupStatus) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if st.Paused {
		v.groups[st.Channel] = st
	} else {
		delete(v.groups, st.Channel)
	}
}

// Delivery takes a delivery that starts or ends (client.Config.OnDelivery).
func (v *View) Delivery(e client.DeliveryEvent) {
	v.mu.Lock()
	defer v.mu.Unlock()
	id := e.Request.DeliveryID
	if e.Response == nil {
		v.inFlight[id] = struct{}{}
		v.recent = append(v.recent, e)
		v.byDelivery[id] = len(v.recent) - 1
		v.trim()
		return
	}
	delete(v.inFlight, id)
	if i, ok := v.byDelivery[id]; ok {
		v.recent[i] = e
		delete(v.byDelivery, id)
	} else {
		v.recent = append(v.recent, e)
		v.trim()
	}
	route := e.Route
	if route == "" {
		route = noRoute
	}
	c := v.counts[route]
	if c == nil {
		c = new([6]int)
		v.counts[route] = c
		v.routes = append(v.routes, route)
	}
	c[column(e)]++
}

// Note shows a warning (the agent's log) under the view.
func (v *View) Note(msg string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.note = strings.TrimSpace(msg)
}

// trim keeps the last deliveries, and those still in flight. v.mu is held.
func (v *View) trim() {
	for len(v.recent) > lastDeliveries {
		drop := -1
		for i, e := range v.recent {
			if e.Response != nil {
				drop = i
				break
			}
		}
		if drop < 0 {
			drop = 0
		}
		v.recent = slices.Delete(v.recent, drop, drop+1)
	}
	clear(v.byDelivery)
	for i, e := range v.recent {
		if e.Response == nil {
			v.byDelivery[e.Request.DeliveryID] = i
		}
	}
}

// column is a delivery's column in the route table: 2xx, 3xx, 4xx, 5xx,
// another status, or failed (no answer from the app).
func column(e client.DeliveryEvent) int {
	r := e.Response
	switch {
	case r.Error != "":
		return 5
	case r.Status >= 200 && r.Status < 600:
		return r.Status/100 - 2
	}
	return 4
}

// model is the Bubble Tea model; its state lives in the View.
type model struct{ v *View }

type tick struct{}

func redraw() tea.Cmd { return tea.Tick(redrawEvery, func(time.Time) tea.Msg { return tick{} }) }

func (m model) Init() tea.Cmd { return redraw() }

func (m model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tick:
		return m, redraw()
	case tea.WindowSizeMsg:
		m.v.mu.Lock()
		m.v.width = msg.Width
		m.v.mu.Unlock()
	case tea.KeyMsg:
		switch msg.String() {
		case "ctrl+c", "q":
			m.v.mu.Lock()
			first := !m.v.stopping
			m.v.stopping = true
			m.v.mu.Unlock()
			if first && m.v.cfg.Stop != nil {
				m.v.cfg.Stop()
			}
		}
	}
	return m, nil
}

var (
	bold  = lipgloss.NewStyle().Bold(true)
	faint = lipgloss.NewStyle().Faint(true)
	good  = lipgloss.NewStyle().Foreground(lipgloss.Color("2"))
	warn  = lipgloss.NewStyle().Foreground(lipgloss.Color("3"))
	bad   = lipgloss.NewStyle().Foreground(lipgloss.Color("1")).Bold(true)
)

func (m model) View() string {
	v := m.v
	v.mu.Lock()
	defer v.mu.Unlock()
	var b strings.Builder
	line := func(format string, args ...any) {
		s := fmt.Sprintf(format, args...)
		if v.width > 0 {
			s = lipgloss.NewStyle().MaxWidth(v.width).Render(s)
		}
		b.WriteString(s + "\n")
	}
	line("%s", v.stateLine())
	if v.state.Status == client.StatusConnected {
		for _, c := range v.state.Channels {
			line("  channel %s  %s  %s", bold.Render(c.Channel), c.URL, faint.Render("(group "+c.Group+")"))
			if g, ok := v.groups[c.Channel]; ok && g.Group == c.Group {
				line("    %s next try in %s %s", bad.Render("target down:"), roundSeconds(max(time.Until(g.NextTry), 0)),
					faint.Render("(webhooks wait at the relay, in order)"))
			}
		}
	}
	if len(v.targets) > 0 {
		line("")
		line("%s", bold.Render("targets"))
		for _, t := range v.targets {
			switch {
			case !t.Known:
				line("  %s %s  checking", faint.Render("?"), t.URL)
			case t.Up:
				line("  %s %s  up", good.Render("●"), t.URL)
			default:
				line("  %s %s  %s %s", bad.Render("✗"), t.URL, bad.Render("DOWN"), t.Err)
			}
		}
	}
	if len(v.routes) > 0 {
		line("")
		width := len("route")
		for _, r := range v.routes {
			width = max(width, len(r))
		}
		line("%s", bold.Render(fmt.Sprintf("%-*s  %5s %5s %5s %5s %5s %6s", width, "route", "2xx", "3xx", "4xx", "5xx", "other", "failed")))
		for _, r := range v.routes {
			c := v.counts[r]
			line("%-*s  %5d %5d %5d %5d %5d %6s", width, r, c[0], c[1], c[2], c[3], c[4], failedCount(c[5]))
		}
	}
	line("")
	line("%s", bold.Render("last deliveries"))
	if len(v.recent) == 0 {
		line("  %s", faint.Render("none yet"))
	}
	for _, e := range v.recent {
		line("  %s", deliveryLine(e))
	}
	if v.note != "" {
		line("")
		line("%s", warn.Render(v.note))
	}
	line("")
	switch {
	case v.state.Status == client.StatusStopped:
		line("%s", faint.Render("stopped"))
	case v.stopping || v.state.Status == client.StatusStopping:
		line("%s", faint.Render(fmt.Sprintf("stopping: %d deliveries in flight may finish…", len(v.inFlight))))
	default:
		line("%s", faint.Render("Ctrl-C to stop"))
	}
	return b.String()
}

func failedCount(n int) string {
	if n == 0 {
		return "0"
	}
	return bad.Render(fmt.Sprintf("%6d", n))
}

// stateLine says how the connection is. v.mu is held.
func (v *View) stateLine() string {
	s := v.state
	switch s.Status {
	case client.StatusConnecting:
		return warn.Render("connecting") + " to " + v.cfg.Relay + "…"
	case client.StatusConnected:
		where := v.cfg.Relay
		if s.Node != "" {
			where += " (node " + s.Node + ")"
		}
		return good.Render("● connected") + " to " + where + faint.Render(" for "+roundSeconds(time.Since(v.connected)))
	case client.StatusReconnecting:
		wait := max(time.Until(s.RetryAt), 0)
		return warn.Render(fmt.Sprintf("reconnecting in %s", roundSeconds(wait))) +
			fmt.Sprintf(" (attempt %d): %v", s.Attempt, s.Err)
	case client.StatusStopping:
		return warn.Render("stopping")
	case client.StatusStopped:
		if s.Err != nil {
			return bad.Render("stopped: ") + s.Err.Error()
		}
		return "stopped"
	}
	return s.Status.String()
}

// deliveryLine shows one delivery: time, channel, request, route, outcome.
func deliveryLine(e client.DeliveryEvent) string {
	req := e.Request
	var b strings.Builder
	b.WriteString(e.Started.Local().Format("15:04:05") + "  " + req.Channel + "  " + req.Method + " " + req.Path)
	if e.Route != "" {
		b.WriteString(faint.Render("  → " + e.Route))
	}
	b.WriteString("  ")
	r := e.Response
	switch {
	case r == nil:
		b.WriteString(warn.Render("…") + faint.Render(" "+roundSeconds(time.Since(e.Started))))
	case r.Error != "":
		b.WriteString(bad.Render(r.ErrorCode) + "  " + r.Error)
	default:
		status := fmt.Sprint(r.Status)
		if r.Status >= 400 {
			status = bad.Render(status)
		} else {
			status = good.Render(status)
		}
		b.WriteString(status + "  " + shortDuration(r.Duration))
	}
	if req.Attempt > 1 {
		fmt.Fprintf(&b, faint.Render("  (attempt %d)"), req.Attempt)
	}
	return b.String()
}

// shortDuration keeps two or three significant digits.
func shortDuration(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Second:
		return d.Round(100 * time.Microsecond).String()
	}
	return d.Round(10 * time.Millisecond).String()
}

func roundSeconds(d time.Duration) string {
	if d < time.Second {
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// Run shows the view while run runs, and returns run's error. It is the
// usual way to use a View: run gets a context that Ctrl-C in the view
// cancels.
func Run(ctx context.Context, cfg Config, run func(ctx context.Context, v *View) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cfg.Stop = cancel
	v := New(cfg)
	v.Start()
	err := run(ctx, v)
	if cerr := v.Close(); cerr != nil && err == nil {
		err = cerr
	}
	return err
}
