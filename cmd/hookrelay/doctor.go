package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/hookrelay/hookrelay/client"
)

// maxClockSkew is the largest difference from the relay's clock doctor
// accepts. Providers sign webhooks with a timestamp and apps refuse old
// ones (Stripe and Standard Webhooks after 5 minutes), so a clock that is
// off makes valid webhooks look stale or from the future.
const maxClockSkew = 30 * time.Second

func newDoctorCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "doctor [CHANNEL...]",
		Short: "Check the configuration, the relay, the token, the clock, the tunnel and the targets",
		Long: `Check what "hookrelay connect" needs, one pass/fail line each: the config file
and where each value comes from (flag, environment, file or default), that the
relay answers, that the token is valid, that this machine's clock agrees with
the relay's (within 30s), that a WebSocket tunnel opens (through the proxy of
HTTPS_PROXY/HTTP_PROXY when one applies), that each channel exists for the
token, and that each target (--to, --route, the config file's) accepts
connections. It takes the flags of connect.

Exit code: 0 when every check passed, 1 when one failed.`,
		Example: `  hookrelay doctor
  hookrelay doctor my-app --to http://localhost:3000/webhooks`,
		RunE: func(cmd *cobra.Command, args []string) error {
			d := &doctor{out: cmd.OutOrStdout()}
			d.run(cmd, args)
			if d.failed > 0 {
				return &exitError{code: 1, err: fmt.Errorf("%d of %d checks failed", d.failed, d.checks)}
			}
			fmt.Fprintf(d.out, "all %d checks passed\n", d.checks)
			return nil
		},
	}
	addClientFlags(cmd)
	addAgentFlags(cmd)
	return cmd
}

// doctor prints check results and counts them.
type doctor struct {
	out            io.Writer
	checks, failed int
}

func (d *doctor) pass(format string, args ...any) {
	d.checks++
	fmt.Fprintf(d.out, "PASS  "+format+"\n", args...)
}

func (d *doctor) fail(format string, args ...any) {
	d.checks++
	d.failed++
	fmt.Fprintf(d.out, "FAIL  "+format+"\n", args...)
}

func (d *doctor) skip(format string, args ...any) {
	fmt.Fprintf(d.out, "SKIP  "+format+"\n", args...)
}

func (d *doctor) info(format string, args ...any) {
	fmt.Fprintf(d.out, "      "+format+"\n", args...)
}

func (d *doctor) run(cmd *cobra.Command, args []string) {
	ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
	defer cancel()
	v, ok := d.config(cmd)
	if !ok {
		return
	}
	server := strings.TrimRight(v.GetString("server"), "/")
	tlsConfig, proxy, err := relayAccess(cmd, v)
	if err != nil {
		d.fail("relay TLS: %v", err)
		return
	}
	httpClient := client.RelayHTTPClient(tlsConfig, proxy, 15*time.Second)
	defer httpClient.CloseIdleConnections()
	if d.relay(ctx, httpClient, server, client.ProxyFor(proxy, server)) {
		d.token(ctx, httpClient, server, v.GetString("token"), v, args)
		wsURL, via, err := client.CheckTunnel(ctx, server, v.GetString("token"), tlsConfig, proxy)
		route := "direct"
		if via != "" {
			route = "through proxy " + via
		}
		if err != nil {
			d.fail("tunnel: WebSocket upgrade to %s (%s): %v", wsURL, route, err)
		} else {
			d.pass("tunnel: WebSocket upgrade to %s (%s)", wsURL, route)
		}
	} else {
		d.skip("token, clock and tunnel: the relay cannot be reached")
	}
	d.targets(ctx, cmd, v, args)
}

// config reports the config file and where each value comes from.
func (d *doctor) config(cmd *cobra.Command) (*viper.Viper, bool) {
	v, err := newAgentViper(cmd)
	if err != nil {
		d.fail("config: %v", err)
		return nil, false
	}
	if used := v.ConfigFileUsed(); used != "" {
		d.pass("config file %s", used)
	} else {
		path, _ := clientConfigPath()
		d.pass("config: no file (%s does not exist); flags, environment and defaults only", path)
	}
	for _, key := range []string{"server", "token", "ca_file", "insecure", "to", "routes", "channels", "group", "from"} {
		value := fmt.Sprint(v.Get(key))
		switch key {
		case "token":
			value = maskToken(v.GetString(key))
		case "routes":
			value = strings.Join(stringList(v.Get(key)), "; ")
		case "channels":
			var chans []channelConfig
			_ = v.UnmarshalKey(key, &chans)
			var ids []string
			for _, c := range chans {
				ids = append(ids, c.ID)
			}
			value = strings.Join(ids, ", ")
		}
		if value == "" || value == "[]" || value == "<nil>" {
			value = "(none)"
		}
		d.info("%-9s %-40s from %s", key, value, valueSource(cmd, v, key))
	}
	for _, name := range []string{"HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY"} {
		for _, n := range []string{name, strings.ToLower(name)} {
			if value, ok := os.LookupEnv(n); ok && value != "" {
				d.info("%-9s %-40s from env %s", strings.ToLower(name), redactURL(value), n)
			}
		}
	}
	return v, true
}

// valueSource says where a key's value comes from.
func valueSource(cmd *cobra.Command, v *viper.Viper, key string) string {
	flag := strings.ReplaceAll(key, "_", "-")
	if key == "routes" {
		flag = "route"
	}
	if f := cmd.Flags().Lookup(flag); f != nil && f.Changed {
		return "flag --" + flag
	}
	env := "HOOKRELAY_" + strings.ToUpper(key)
	if value, ok := os.LookupEnv(env); ok && value != "" {
		return "env " + env
	}
	if v.InConfig(key) {
		return "file"
	}
	return "default"
}

func maskToken(t string) string {
	switch {
	case t == "":
		return ""
	case len(t) <= 10:
		return strings.Repeat("*", len(t))
	}
	return t[:6] + "…" + t[len(t)-4:]
}

func redactURL(s string) string {
	var parts []string
	for p := range strings.SplitSeq(s, ",") {
		if u, err := url.Parse(strings.TrimSpace(p)); err == nil && u.User != nil {
			p = u.Redacted()
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, ",")
}

// relay checks /healthz and the clock.
func (d *doctor) relay(ctx context.Context, c *http.Client, server, via string) bool {
	route := ""
	if via != "" {
		route = " through proxy " + via
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, server+"/healthz", nil)
	if err != nil {
		d.fail("relay %q: %v", server, err)
		return false
	}
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		d.fail("relay reachable: %s%s: %v", server, route, err)
		return false
	}
	rtt := time.Since(start)
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"status"`) {
		d.fail("relay reachable: %s%s answered %s to /healthz: is it a hookrelay relay?", server, route, resp.Status)
		return false
	}
	d.pass("relay reachable: %s%s answered /healthz in %s", server, route, rtt.Round(time.Millisecond))
	date, err := http.ParseTime(resp.Header.Get("Date"))
	if err != nil {
		d.fail("clock: the relay sent no Date header to compare with")
		return true
	}
	// The relay's Date is truncated to the second and stamped during the
	// request: compare with the middle of it.
	skew := date.Add(500 * time.Millisecond).Sub(start.Add(rtt / 2))
	if skew.Abs() > maxClockSkew {
		d.fail("clock: this machine's clock is %s %s the relay's; fix the time (NTP), or apps will reject signed webhooks as stale",
			skew.Abs().Round(time.Second), aheadOrBehind(skew))
	} else {
		d.pass("clock: within %s of the relay's", max(skew.Abs().Round(time.Second), time.Second))
	}
	return true
}

func aheadOrBehind(skew time.Duration) string {
	if skew > 0 {
		return "behind"
	}
	return "ahead of"
}

// token checks the token and the channels it should read.
func (d *doctor) token(ctx context.Context, c *http.Client, server, token string, v *viper.Viper, args []string) {
	if token == "" {
		d.fail("token: none; run 'hookrelay login --server %s', or set HOOKRELAY_TOKEN", server)
		return
	}
	api := client.NewAPI(server, token)
	api.HTTP = c
	channels, err := api.ListChannels(ctx)
	switch {
	case client.IsStatus(err, http.StatusUnauthorized):
		d.fail("token: the relay rejected it (unknown, expired or revoked); run 'hookrelay login --server %s' with a valid one", server)
		return
	case err != nil:
		d.fail("token: %v", err)
		return
	}
	d.pass("token: valid; it sees %d channel(s)", len(channels))
	settings, err := readAgentSettings(v, args)
	if err != nil {
		return // no channel named: nothing more to check
	}
	for _, ch := range settings.channels {
		var out client.Channel
		err := api.Do(ctx, http.MethodGet, "/api/v1/channels/"+ch.ID, nil, &out)
		switch {
		case client.IsStatus(err, http.StatusNotFound):
			d.fail("channel %s: does not exist for this token; create it with 'hookrelay channel create %s'", ch.ID, ch.ID)
		case err != nil:
			d.fail("channel %s: %v", ch.ID, err)
		default:
			d.pass("channel %s: %s (%d agents connected)", ch.ID, out.URL, out.Agents)
		}
	}
}

// targets checks that each target accepts connections.
func (d *doctor) targets(ctx context.Context, cmd *cobra.Command, v *viper.Viper, args []string) {
	var urls []string
	add := func(u string) {
		if u != "" && !slices.Contains(urls, u) {
			urls = append(urls, u)
		}
	}
	s, err := readAgentSettings(v, args)
	if err != nil && len(args) == 0 {
		add(v.GetString("to"))
	}
	for _, c := range s.channels {
		for _, text := range c.Routes {
			if r, err := client.ParseRoute(text); err == nil {
				add(r.Target)
			} else {
				d.fail("route %q of channel %s: %v", text, c.ID, err)
			}
		}
		add(c.To)
	}
	for _, text := range s.shared {
		if r, err := client.ParseRoute(text); err == nil {
			add(r.Target)
		} else {
			d.fail("route: %v", err)
		}
	}
	add(s.to)
	if len(urls) == 0 {
		d.skip("targets: none configured (--to, --route)")
		return
	}
	for _, u := range urls {
		err := client.ProbeTarget(ctx, u)
		switch {
		case err == nil:
			d.pass("target %s accepts connections", u)
		case errors.Is(err, context.Canceled):
			return
		default:
			d.fail("target %s: %v; start your app there, or fix --to/--route", u, err)
		}
	}
}
