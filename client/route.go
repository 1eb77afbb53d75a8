package client

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/hookrelay/hookrelay/protocol"
)

// A Route sends the deliveries that match all its conditions to Target.
// Routes are tried in order and the first that matches wins; a route
// without conditions matches every delivery (of its Channel, when set).
//
// In text (ParseRoute, the --route flag, the routes config key) a route is
// its conditions and then its target, separated by spaces:
//
//	header:X-GitHub-Event=push http://localhost:3000/push
//	channel=stripe-dev path=/v1/* http://localhost:4000
//	method=POST path=/github http://localhost:3000
//
// The conditions are
//
//	channel=ID          the delivery came on that channel
//	method=METHOD       its method, in any case
//	path=PATTERN        its sub-path after the channel URL, cleaned of dot
//	                    segments and still percent-encoded
//	header:NAME=PATTERN a header NAME (in any case) has a value matching PATTERN
//	header:NAME         the header NAME is present
//
// In a PATTERN, * stands for any run of characters, / included, and every
// other character for itself; a pattern must match the whole value. A path
// pattern ending in /* also matches the path without it (/v1/* matches /v1).
// A value cannot hold a space: write * in its place.
type Route struct {
	// Name labels the route in the agent's output and metrics (default:
	// its conditions as text, or "to" for a route without conditions).
	Name    string
	Channel string // "" for any channel
	Method  string // "" for any method
	Path    string // a pattern; "" for any path
	Headers []HeaderCondition
	// Target is the absolute http(s) URL deliveries go to; the event's
	// sub-path and query are joined to it as for Config.Target.
	Target string
}

// HeaderCondition requires a header to be present (Pattern "" and Any) or
// to have a value matching Pattern.
type HeaderCondition struct {
	Name    string
	Pattern string
	Any     bool // any value will do
}

// ParseRoute reads a route in its text form (see Route).
func ParseRoute(s string) (Route, error) {
	fields := strings.Fields(s)
	if len(fields) == 0 {
		return Route{}, fmt.Errorf("route %q is empty: write conditions and then a URL, like 'path=/github/* http://localhost:3000'", s)
	}
	var r Route
	r.Target = fields[len(fields)-1]
	if _, err := parseTarget(r.Target); err != nil {
		return Route{}, fmt.Errorf("route %q must end with the URL to send to: %w", s, err)
	}
	for _, f := range fields[:len(fields)-1] {
		if err := r.addCondition(f); err != nil {
			return Route{}, fmt.Errorf("route %q: %w", s, err)
		}
	}
	return r, nil
}

func (r *Route) addCondition(f string) error {
	if name, ok := strings.CutPrefix(f, "header:"); ok {
		name, pattern, hasValue := strings.Cut(name, "=")
		if !validHeaderName(name) {
			return fmt.Errorf("condition %q names no valid header", f)
		}
		r.Headers = append(r.Headers, HeaderCondition{Name: name, Pattern: pattern, Any: !hasValue})
		return nil
	}
	key, value, ok := strings.Cut(f, "=")
	if !ok || value == "" {
		return fmt.Errorf("condition %q is not KEY=VALUE (keys: channel, method, path, header:NAME)", f)
	}
	var field *string
	switch key {
	case "channel":
		field = &r.Channel
	case "method":
		field = &r.Method
	case "path":
		if !strings.HasPrefix(value, "/") && !strings.HasPrefix(value, "*") {
			return fmt.Errorf("condition %q: a path pattern starts with / or *", f)
		}
		field = &r.Path
	default:
		return fmt.Errorf("condition %q has an unknown key %q (keys: channel, method, path, header:NAME)", f, key)
	}
	if *field != "" {
		return fmt.Errorf("condition %s= is given twice", key)
	}
	*field = value
	return nil
}

// conditions renders the route's conditions as text, "" when it has none.
func (r *Route) conditions() string {
	var parts []string
	if r.Channel != "" {
		parts = append(parts, "channel="+r.Channel)
	}
	if r.Method != "" {
		parts = append(parts, "method="+r.Method)
	}
	if r.Path != "" {
		parts = append(parts, "path="+r.Path)
	}
	for _, h := range r.Headers {
		if h.Any {
			parts = append(parts, "header:"+h.Name)
		} else {
			parts = append(parts, "header:"+h.Name+"="+h.Pattern)
		}
	}
	return strings.Join(parts, " ")
}

// String renders the route in its text form.
func (r Route) String() string {
	if c := r.conditions(); c != "" {
		return c + " " + r.Target
	}
	return r.Target
}

// Label is the route's name in output and metrics.
func (r *Route) Label() string {
	switch {
	case r.Name != "":
		return r.Name
	case r.conditions() != "":
		return r.conditions()
	}
	return "to"
}

// Matches reports whether a delivery meets every condition of the route.
func (r *Route) Matches(req *protocol.DeliveryRequest) bool {
	if r.Channel != "" && r.Channel != req.Channel {
		return false
	}
	if r.Method != "" && !strings.EqualFold(r.Method, req.Method) {
		return false
	}
	if r.Path != "" && !matchPath(r.Path, cleanSubPath(req.Path)) {
		return false
	}
	for _, h := range r.Headers {
		if !matchHeader(h, req.Headers) {
			return false
		}
	}
	return true
}

func matchPath(pattern, p string) bool {
	if matchGlob(pattern, p) {
		return true
	}
	prefix, ok := strings.CutSuffix(pattern, "/*")
	return ok && prefix != "" && matchGlob(prefix, p)
}

func matchHeader(c HeaderCondition, headers []protocol.Header) bool {
	for _, h := range headers {
		if strings.EqualFold(h.Name, c.Name) && (c.Any || matchGlob(c.Pattern, h.Value)) {
			return true
		}
	}
	return false
}

// matchGlob reports whether s matches pattern as a whole, where * stands
// for any run of bytes and every other byte for itself.
func matchGlob(pattern, s string) bool {
	parts := strings.Split(pattern, "*")
	if len(parts) == 1 {
		return pattern == s
	}
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	last := parts[len(parts)-1]
	for _, part := range parts[1 : len(parts)-1] {
		i := strings.Index(s, part)
		if i < 0 {
			return false
		}
		s = s[i+len(part):]
	}
	return len(s) >= len(last) && strings.HasSuffix(s, last)
}

// router picks the target of each delivery: the first route that matches,
// else the fallback, else none.
type router struct {
	routes   []compiledRoute
	fallback *compiledRoute // Config.Target; nil when there is none
}

type compiledRoute struct {
	Route
	name   string
	target *url.URL
}

func newRouter(routes []Route, fallback string) (*router, error) {
	rt := &router{}
	for i, r := range routes {
		u, err := parseTarget(r.Target)
		if err != nil {
			return nil, fmt.Errorf("client: route %d (%s): %w", i+1, r, err)
		}
		rt.routes = append(rt.routes, compiledRoute{Route: r, name: r.Label(), target: u})
	}
	if fallback != "" {
		u, err := parseTarget(fallback)
		if err != nil {
			return nil, err
		}
		rt.fallback = &compiledRoute{Route: Route{Target: fallback}, name: "to", target: u}
	}
	return rt, nil
}

// route returns the route a delivery takes, or nil when none matches.
func (rt *router) route(req *protocol.DeliveryRequest) *compiledRoute {
	for i := range rt.routes {
		if rt.routes[i].Matches(req) {
			return &rt.routes[i]
		}
	}
	return rt.fallback
}

// names lists the routes' names, the fallback last, for output and metrics.
func (rt *router) names() []string {
	var out []string
	for _, r := range rt.routes {
		out = append(out, r.name)
	}
	if rt.fallback != nil {
		out = append(out, rt.fallback.name)
	}
	return out
}

// noRoute explains a delivery no route matched.
func (rt *router) noRoute(req *protocol.DeliveryRequest) *TargetError {
	return &TargetError{Code: protocol.ErrCodeNoRoute, Msg: fmt.Sprintf(
		"no route of the agent matches %s %s on channel %s, and it has no --to fallback (routes: %s)",
		req.Method, req.Path, req.Channel, strings.Join(rt.names(), "; "))}
}

// event starts the DeliveryEvent of a delivery taking route r (nil: none).
func (r *compiledRoute) event(req *protocol.DeliveryRequest, start time.Time) DeliveryEvent {
	e := DeliveryEvent{Request: req, Started: start}
	if r != nil {
		e.Route, e.Target = r.name, r.target.String()
	}
	return e
}

// forward sends a delivery to the target of its route and notes what that
// says about the target's health; a delivery without a route fails with
// no_route.
func (a *Agent) forward(ctx context.Context, r *compiledRoute, req *protocol.DeliveryRequest, body io.Reader, maxBody int64) (*Response, error) {
	if r == nil {
		return nil, a.router.noRoute(req)
	}
	t := a.targets.get(r.target)
	resp, err := t.fwd.forward(ctx, req, body, maxBody)
	if ctx.Err() == nil { // not the agent stopping
		a.targets.observe(t, err)
	}
	return resp, err
}
