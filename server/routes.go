package server

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func (r *Relay) routes() (*gin.Engine, error) {
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	e.Use(gin.Recovery(), recordWireHeaders, r.separateHosts)
	// Client addresses come from the socket unless a trusted proxy is configured.
	if err := e.SetTrustedProxies(r.cfg.TrustedProxies); err != nil {
		return nil, fmt.Errorf("trusted proxies: %w", err)
	}
	e.HandleMethodNotAllowed = false
	e.RedirectTrailingSlash = false
	e.RedirectFixedPath = false
	e.UseRawPath = true
	e.UnescapePathValues = false

	// Ingress, and on GET with Accept: text/event-stream the channel's
	// smee-compatible stream (smee.go).
	e.Any("/h/:channel", r.channelRequest)
	e.Any("/h/:channel/*path", r.channelRequest)
	e.GET("/new", r.newChannel)
	e.HEAD("/new", r.newChannel)

	e.GET("/tunnel", r.requireAuth, r.tunnel)

	// The inspector's session cookie stands in for the Authorization
	// header on the API (inspector.go).
	ui, err := newInspector(r)
	if err != nil {
		return nil, err
	}
	e.POST("/api/v1/channels", ui.withSession(r.optionalAuth), r.createChannel)
	api := e.Group("/api/v1", ui.withSession(r.requireAuth))
	api.GET("/channels", r.listChannels)
	api.GET("/channels/:id", r.getChannel)
	api.PATCH("/channels/:id", r.updateChannel)
	api.DELETE("/channels/:id", r.deleteChannel)
	api.POST("/channels/:id/read-key", r.rotateReadKey)
	api.GET("/channels/:id/secret", r.channelSecret)
	api.GET("/channels/:id/agents", r.channelAgents)
	api.GET("/channels/:id/events", r.listEvents)
	api.GET("/events/:id", r.getEvent)
	api.GET("/events/:id/body", r.eventBody)
	api.GET("/events/:id/deliveries", r.eventDeliveries)
	api.POST("/events/:id/replay", r.replayEvent)
	api.POST("/teams", r.createTeam)
	api.GET("/teams", r.listTeams)
	api.POST("/tokens", r.createToken)
	api.GET("/tokens", r.listTokens)
	api.DELETE("/tokens/:id", r.revokeToken)
	ui.register(e, api)

	e.GET("/healthz", func(c *gin.Context) {
		c.JSON(http.StatusOK, gin.H{"status": "ok", "version": r.cfg.Version})
	})
	e.GET("/readyz", r.readyz)
	e.GET("/metrics", gin.WrapH(promhttp.HandlerFor(r.metrics.registry, promhttp.HandlerOpts{})))
	e.NoRoute(func(c *gin.Context) {
		abortJSON(c, http.StatusNotFound, "not_found", "no such route: "+c.Request.Method+" "+c.Request.URL.Path)
	})
	return e, nil
}

// readyz answers 200 when the store can be written.
func (r *Relay) readyz(c *gin.Context) {
	if err := r.store.Ping(c.Request.Context()); err != nil {
		abortJSON(c, http.StatusServiceUnavailable, "store_unavailable", err.Error())
		return
	}
	c.JSON(http.StatusOK, gin.H{"status": "ready"})
}

// sameOrigin reports whether a browser request comes from the relay's own
// pages: its Origin (or, without one, its Referer) names this host or the
// public URL's. Requests with neither are refused: every browser sends
// Origin with a same-origin fetch that is not GET or HEAD, and with every
// WebSocket upgrade.
func (r *Relay) sameOrigin(req *http.Request) bool {
	src := req.Header.Get("Origin")
	if src == "" {
		src = req.Header.Get("Referer")
	}
	u, err := url.Parse(src)
	if src == "" || err != nil || u.Host == "" {
		return false
	}
	if strings.EqualFold(u.Host, req.Host) {
		return true
	}
	pub, err := url.Parse(r.cfg.PublicURL)
	return err == nil && pub.Host != "" && strings.EqualFold(u.Host, pub.Host)
}

// onInspectorHost reports whether req came for the inspector's host name;
// always true when the relay serves everything on one origin.
func (r *Relay) onInspectorHost(req *http.Request) bool {
	want := r.cfg.InspectorHost
	if want == "" {
		return true
	}
	got := req.Host
	if _, _, err := net.SplitHostPort(want); err != nil { // no port: compare names
		if h, _, err := net.SplitHostPort(got); err == nil {
			got = h
		}
	}
	return strings.EqualFold(got, want)
}

// separateHosts keeps ingress and the inspector apart when InspectorHost
// is set: ingress is not served at the inspector's name, the inspector
// only there (its page redirects there).
func (r *Relay) separateHosts(c *gin.Context) {
	if r.cfg.InspectorHost == "" {
		c.Next()
		return
	}
	p := c.Request.URL.Path
	ingress := p == "/h" || strings.HasPrefix(p, "/h/")
	page := p == "/" || strings.HasPrefix(p, "/ui/")
	switch inspector := r.onInspectorHost(c.Request); {
	case inspector && ingress:
		abortJSON(c, http.StatusNotFound, "wrong_host",
			"webhooks are not received at the inspector's host "+r.cfg.InspectorHost+"; send them to the relay's public URL")
	case !inspector && page && (p == "/" || p == "/ui/") && safeMethod(c.Request.Method):
		c.Redirect(http.StatusFound, r.inspectorURL(c.Request)+p)
		c.Abort()
	case !inspector && page:
		abortJSON(c, http.StatusNotFound, "wrong_host", "the inspector is served at "+r.inspectorURL(c.Request)+"/")
	default:
		c.Next()
	}
}

// inspectorURL is the base URL of the inspector's host.
func (r *Relay) inspectorURL(req *http.Request) string {
	scheme := "http"
	if req.TLS != nil || r.cfg.TLS || strings.HasPrefix(strings.ToLower(r.cfg.PublicURL), "https://") {
		scheme = "https"
	}
	return scheme + "://" + r.cfg.InspectorHost
}
