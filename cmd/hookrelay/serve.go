package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"
	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"

	"github.com/hookrelay/hookrelay/server"
	"github.com/hookrelay/hookrelay/server/cluster"
	"github.com/hookrelay/hookrelay/server/store"
	"github.com/hookrelay/hookrelay/server/store/postgres"
	"github.com/hookrelay/hookrelay/server/store/sqlite"
)

const serverLong = `Run a relay: public ingress on /h/CHANNEL/..., agents on /tunnel, the JSON API
on /api/v1, metrics on /metrics. With no configuration it keeps its data in
./hookrelay-data (SQLite) and prints an admin token on first start.

Several relays behind one load balancer share a PostgreSQL database: give each
the same --database postgres://... and the same --admin-token (see
docs/deploy.md).

Every key can be set by flag, by HOOKRELAY_<KEY> environment variable, or in
the YAML file given with --config (flags win over the environment, which wins
over the file):

  key                     flag                      default
  listen                  --listen                  :8080
  public_url              --public-url              (from each request's Host)
  inspector_host          --inspector-host          (the inspector and ingress share one host)
  data_dir                --data-dir                ./hookrelay-data
  database                --database                (SQLite in data_dir; or postgres://...)
  admin_token             --admin-token             (generated, in data_dir/admin-token; required with PostgreSQL)
  secret_file             --secret-file             data_dir/relay-secret (generated on first start; with PostgreSQL, kept in the database)
  response_timeout        --response-timeout        10s
  max_body                --max-body                25MiB
  retention               --retention               168h
  max_events_per_channel  --max-events-per-channel  0 (no cap)
  max_rejected_per_channel        --max-rejected-per-channel        100 (0: no cap)
  max_rejected_bytes_per_channel  --max-rejected-bytes-per-channel  10MiB (0: no cap)
  delivery_timeout        --delivery-timeout        2m
  max_attempts            --max-attempts            20
  log_level               --log-level               info
  max_db_size             --max-db-size             0 (no cap; e.g. 10GiB; SQLite only)
  rate_limit              --rate-limit              0 (webhooks/s per channel; 0: none)
  max_agents_per_token    --max-agents-per-token    1000
  max_agents_per_read_key --max-agents-per-read-key 20
  max_streams_per_token   --max-streams-per-token   100 (live streams and long-polls)
  max_channels_per_team   --max-channels-per-team   0 (no cap)
  allow_anonymous         --allow-anonymous         false
  anonymous_channel_ttl   --anonymous-channel-ttl   24h (anonymous channels are deleted after this)
  anonymous_channels_per_minute  --anonymous-channels-per-minute  10 (per source address; IPv6 per /64)
  trusted_proxies         --trusted-proxies         (none; e.g. 10.0.0.0/8,127.0.0.1)
  tls_cert, tls_key       --tls-cert, --tls-key     (serve plain HTTP)
  acme_domain             --acme-domain             (automatic certificates for this domain)
  read_timeout            --read-timeout            30s (+1s per 64 KiB of body)
  node_name               --node-name               (the host name; shown to agents)
  node_id                 --node-id                 (node_name-8 random hex digits; unique per process)
  max_sse_per_channel     --max-sse-per-channel     100 (smee-compatible streams per channel)
  max_sse_per_address     --max-sse-per-address     20 (smee-compatible streams per client address)
  sse_buffer              --sse-buffer              4MiB (webhooks held for a slow stream reader)
  admin_listen            --admin-listen            (off; e.g. 127.0.0.1:6060 serves /debug/pprof/)

Example config.yaml:

  listen: ":8080"
  public_url: "https://relay.example.com"
  data_dir: "/var/lib/hookrelay"
  response_timeout: 10s
  max_body: 25MiB`

func newServerCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run the relay server",
		Long:  serverLong,
		Args:  cobra.NoArgs,
		RunE:  runServer,
	}
	f := cmd.Flags()
	f.String("config", "", "YAML config file")
	f.String("listen", ":8080", "address to listen on")
	f.String("public-url", "", "public base URL of this relay, e.g. https://relay.example.com")
	f.String("inspector-host", "", "serve the inspector only at this host name, e.g. relay-admin.example.com, and ingress only at the others (needs --public-url)")
	f.String("data-dir", "./hookrelay-data", "directory for the database and the generated admin token")
	f.String("database", "", "PostgreSQL URL (postgres://user:password@host:5432/db?sslmode=...) for a database shared by several relays; default: SQLite in the data directory")
	f.String("admin-token", "", "admin token (default: generated on first start and kept in the data directory)")
	f.String("secret-file", "", "file with the relay's secret, which keys its cursors (default: data_dir/relay-secret, generated on first start; with PostgreSQL, one kept in the database for every node)")
	f.Duration("response-timeout", server.DefaultResponseTimeout, "how long a sender waits for the app's answer before it gets 202")
	f.String("max-body", "25MiB", "largest webhook body accepted (413 beyond)")
	f.Duration("retention", server.DefaultRetention, "delete events older than this")
	f.Int("max-events-per-channel", 0, "keep at most this many events per channel (0: no cap)")
	f.Int("max-rejected-per-channel", store.DefaultRejectedEvents,
		"keep at most this many rejected (bad signature) events per channel, oldest dropped first (0: no cap)")
	f.String("max-rejected-bytes-per-channel", "10MiB",
		"keep rejected events' bodies up to this size in all per channel, oldest dropped first (0: no cap)")
	f.Duration("delivery-timeout", server.DefaultDeliveryTimeout, "bound on one delivery attempt")
	f.Int("max-attempts", server.DefaultMaxAttempts, "delivery attempts per event and group before giving up")
	f.String("log-level", "info", "debug, info, warn or error")
	f.String("max-db-size", "0", "cap on the database size (e.g. 10GiB); when full, ingress answers 503")
	f.Float64("rate-limit", 0, "webhooks per second per channel (burst twice that); 0: no limit")
	f.Int("max-agents-per-token", 1000, "tunnels one token may hold open at once")
	f.Int("max-agents-per-read-key", 20, "tunnels one channel read key may hold open at once")
	f.Int("max-streams-per-token", 100, "live streams and long-polls one token or read key may hold open at once")
	f.Int("max-channels-per-team", 0, "channels per team (0: no cap)")
	f.Bool("allow-anonymous", false, "let anyone create a channel (it comes with its read key)")
	f.Duration("anonymous-channel-ttl", server.DefaultAnonymousChannelTTL,
		"how long a channel created without a token (GET /new) lives; retention then deletes it with its webhooks")
	f.Float64("anonymous-channels-per-minute", server.DefaultAnonymousChannelsPerMinute,
		"channels one source address (IPv6: its /64) may create without a token a minute; more get 429 with Retry-After")
	f.StringSlice("trusted-proxies", nil, "reverse proxies (IPs or CIDRs) whose X-Forwarded-For is believed")
	f.String("tls-cert", "", "TLS certificate file (PEM)")
	f.String("tls-key", "", "TLS key file (PEM)")
	f.String("acme-domain", "", "get certificates automatically (ACME TLS-ALPN-01) for this domain; cache in data_dir/acme")
	f.Duration("read-timeout", 30*time.Second, "base time a sender gets to send a body (+1s per 64 KiB)")
	f.String("node-name", "", "name of this relay node, shown to agents (default: the host name)")
	f.String("node-id", "", "id of this relay node among those sharing a PostgreSQL database, unique per process (default: the node name and 8 random hex digits)")
	f.Int("max-sse-per-channel", server.DefaultMaxSSEPerChannel, "smee-compatible event streams open at once per channel (429 beyond)")
	f.Int("max-sse-per-address", server.DefaultMaxSSEPerAddress, "smee-compatible event streams open at once per client address (429 beyond)")
	f.String("sse-buffer", "4MiB", "webhook bytes held for one event stream's reader; one that falls further behind is dropped and resumes")
	f.String("admin-listen", "", "address for Go's profiler (/debug/pprof/), without authentication: keep it private (off when empty)")
	return cmd
}

func runServer(cmd *cobra.Command, _ []string) error {
	v, err := newViper(cmd)
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(v.GetString("log_level"))); err != nil {
		return fmt.Errorf("log_level: %w", err)
	}
	logger := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
	maxBody, err := parseSize(v.GetString("max_body"))
	if err != nil {
		return fmt.Errorf("max_body: %w", err)
	}
	limits, err := storeLimits(v)
	if err != nil {
		return err
	}
	dataDir := v.GetString("data_dir")
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	listen := v.GetString("listen")
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", listen, err)
	}
	defer ln.Close()
	tlsConfig, err := tlsFrom(v, dataDir)
	if err != nil {
		return err
	}
	publicURL := v.GetString("public_url")
	shownURL := publicURL
	if shownURL == "" {
		shownURL = listenURL(tlsConfig != nil, ln.Addr())
	}
	if tlsConfig != nil {
		ln = tls.NewListener(ln, tlsConfig)
	}
	sseBuffer, err := parseSize(v.GetString("sse_buffer"))
	if err != nil {
		return fmt.Errorf("sse_buffer: %w", err)
	}
	if v.GetString("admin_token") == "" && isPostgresURL(v.GetString("database")) {
		return errors.New("admin_token is required with a PostgreSQL database: every relay sharing it must " +
			"accept the same admin token; set --admin-token or HOOKRELAY_ADMIN_TOKEN (e.g. to hr_ and 52 random characters)")
	}
	st, where, err := openStore(cmd.Context(), v, dataDir, limits)
	if err != nil {
		return err
	}
	defer st.Close()
	token := v.GetString("admin_token")
	if token == "" {
		var created bool
		token, created, err = loadOrCreateAdminToken(dataDir)
		if err != nil {
			return err
		}
		if created {
			if err := firstStart(cmd, st, dataDir, shownURL, token); err != nil {
				return err
			}
		}
	}
	secret, err := relaySecret(cmd.Context(), v, dataDir, st)
	if err != nil {
		return err
	}
	nodeID := strings.TrimSpace(v.GetString("node_id"))
	if nodeID == "" {
		nodeID = cluster.DefaultNodeID(v.GetString("node_name"))
	}
	var node cluster.Node
	if database := strings.TrimSpace(v.GetString("database")); isPostgresURL(database) {
		pg, err := cluster.NewPostgres(cmd.Context(), cluster.PostgresConfig{
			URL: database, NodeID: nodeID, ClaimRetention: v.GetDuration("retention"), Logger: logger,
		})
		if err != nil {
			return err
		}
		defer pg.Close() // after the relay's: deferred first
		node = pg
	}
	relay, err := server.New(server.Config{
		Store:               st,
		Secret:              secret,
		PublicURL:           publicURL,
		InspectorHost:       v.GetString("inspector_host"),
		AdminToken:          token,
		ResponseTimeout:     v.GetDuration("response_timeout"),
		MaxBody:             maxBody,
		Retention:           v.GetDuration("retention"),
		MaxEventsPerChannel: v.GetInt("max_events_per_channel"),
		DeliveryTimeout:     v.GetDuration("delivery_timeout"),
		MaxAttempts:         v.GetInt("max_attempts"),
		RateLimit:           v.GetFloat64("rate_limit"),
		MaxAgentsPerToken:   v.GetInt("max_agents_per_token"),
		MaxAgentsPerReadKey: v.GetInt("max_agents_per_read_key"),
		MaxStreamsPerToken:  v.GetInt("max_streams_per_token"),
		MaxChannelsPerTeam:  v.GetInt("max_channels_per_team"),
		AllowAnonymous:      v.GetBool("allow_anonymous"),
		TrustedProxies:      splitList(v.GetStringSlice("trusted_proxies")),
		TLS:                 tlsConfig != nil,
		ReadTimeout:         v.GetDuration("read_timeout"),
		MaxSSEPerChannel:    v.GetInt("max_sse_per_channel"),
		MaxSSEPerAddress:    v.GetInt("max_sse_per_address"),
		SSEBuffer:           sseBuffer,
		Version:             version,
		NodeName:            v.GetString("node_name"),
		NodeID:              nodeID,
		Cluster:             node,
		Logger:              logger,

		AnonymousChannelTTL:        v.GetDuration("anonymous_channel_ttl"),
		AnonymousChannelsPerMinute: v.GetFloat64("anonymous_channels_per_minute"),
	})
	if err != nil {
		return err
	}
	defer relay.Close()
	if addr := v.GetString("admin_listen"); addr != "" {
		adminAddr, stop, err := serveAdmin(addr, logger)
		if err != nil {
			return err
		}
		defer stop()
		fmt.Fprintf(cmd.OutOrStdout(), "admin listener (pprof) on http://%s/debug/pprof/\n", adminAddr)
	}
	logger.Info("relay listening", "addr", ln.Addr().String(), "public_url", shownURL, "data", where)
	// The line names the address bound, so a relay started on port 0 says
	// which port it got; a public URL, when set, follows it.
	listening := listenURL(tlsConfig != nil, ln.Addr())
	if publicURL != "" {
		listening += ", public URL " + publicURL
	}
	fmt.Fprintf(cmd.OutOrStdout(), "hookrelay relay listening on %s (data in %s)\n", listening, where)
	err = relay.Serve(cmd.Context(), ln)
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// storeLimits reads the caps the store enforces on its own; 0 in the
// configuration means no cap.
func storeLimits(v *viper.Viper) (store.Limits, error) {
	var l store.Limits
	switch n := v.GetInt("max_rejected_per_channel"); {
	case n < 0:
		return l, fmt.Errorf("max_rejected_per_channel %d: want 0 (no cap) or more", n)
	case n == 0:
		l.RejectedEvents = -1
	default:
		l.RejectedEvents = n
	}
	if s := strings.TrimSpace(v.GetString("max_rejected_bytes_per_channel")); s == "0" {
		l.RejectedBytes = -1
	} else {
		n, err := parseSize(s)
		if err != nil {
			return l, fmt.Errorf("max_rejected_bytes_per_channel: %w", err)
		}
		l.RejectedBytes = n
	}
	return l, nil
}

// openStore opens the store the configuration names: PostgreSQL when
// database is a postgres:// URL, else SQLite in the data directory. where
// says where the data is, for people (the URL without its password, or
// the data directory).
func openStore(ctx context.Context, v *viper.Viper, dataDir string, limits store.Limits) (st store.Store, where string, err error) {
	maxDB := int64(0)
	if s := v.GetString("max_db_size"); s != "" && s != "0" {
		if maxDB, err = parseSize(s); err != nil {
			return nil, "", fmt.Errorf("max_db_size: %w", err)
		}
	}
	database := strings.TrimSpace(v.GetString("database"))
	switch {
	case database == "":
		st, err := sqlite.Open(filepath.Join(dataDir, "hookrelay.db"), sqlite.Options{MaxSize: maxDB, Limits: limits})
		return st, dataDir, err
	case isPostgresURL(database):
		if maxDB > 0 {
			return nil, "", errors.New("max_db_size applies to the SQLite store only; " +
				"cap a PostgreSQL database with PostgreSQL's own means (a tablespace on a volume of that size)")
		}
		where = "a PostgreSQL database"
		if u, err := url.Parse(database); err == nil {
			where = u.Redacted()
		}
		st, err := postgres.Open(ctx, database, postgres.Options{Limits: limits})
		return st, where, err
	default:
		return nil, "", errors.New("database: want a postgres:// URL, or nothing for SQLite in data_dir")
	}
}

func isPostgresURL(s string) bool {
	s = strings.TrimSpace(s)
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}

// serveAdmin serves server.AdminHandler on addr until stop is called. It
// returns the address bound (addr with port 0 gets a free port).
func serveAdmin(addr string, logger *slog.Logger) (bound string, stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("admin_listen %s: %w", addr, err)
	}
	srv := &http.Server{Handler: server.AdminHandler(), ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("admin listener", "err", err)
		}
	}()
	return ln.Addr().String(), func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if srv.Shutdown(ctx) != nil {
			_ = srv.Close() // a profile still running
		}
		<-done
	}, nil
}

// listenURL is the base URL of a listener, with a host a user can paste.
func listenURL(tls bool, a net.Addr) string {
	if tls {
		return "https://" + displayAddr(a)
	}
	return "http://" + displayAddr(a)
}

// displayAddr turns a listen address into one a user can paste.
func displayAddr(a net.Addr) string {
	tcp, ok := a.(*net.TCPAddr)
	if !ok || tcp.IP.IsUnspecified() {
		if ok {
			return fmt.Sprintf("localhost:%d", tcp.Port)
		}
		return a.String()
	}
	return tcp.String()
}

const adminTokenFile = "admin-token"

// loadOrCreateAdminToken reads the admin token from the data directory, or
// generates and saves one. created says whether it is new.
func loadOrCreateAdminToken(dataDir string) (token string, created bool, err error) {
	path := filepath.Join(dataDir, adminTokenFile)
	b, err := os.ReadFile(path)
	if err == nil {
		if t := strings.TrimSpace(string(b)); t != "" {
			return t, false, nil
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", false, fmt.Errorf("read admin token: %w", err)
	}
	token = newToken()
	if err := os.WriteFile(path, []byte(token+"\n"), 0o600); err != nil {
		return "", false, fmt.Errorf("save admin token: %w", err)
	}
	return token, true, nil
}

const secretFile = "relay-secret"

// relaySecret reads the relay's secret: from secret_file when it is set;
// else from a PostgreSQL store, which keeps one for every node sharing it;
// else from data_dir/relay-secret, made on first start.
func relaySecret(ctx context.Context, v *viper.Viper, dataDir string, st store.Store) ([]byte, error) {
	if path := v.GetString("secret_file"); path != "" {
		return loadOrCreateSecret(path)
	}
	if pg, ok := st.(*postgres.Store); ok {
		secret, err := pg.Secret(ctx)
		if err != nil {
			return nil, fmt.Errorf("read the relay's secret from the database: %w", err)
		}
		return secret, nil
	}
	return loadOrCreateSecret(filepath.Join(dataDir, secretFile))
}

// loadOrCreateSecret reads the relay's secret (hex, at least 32 bytes) from
// path, or generates one and saves it there (mode 0600) when the file does
// not exist.
func loadOrCreateSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		secret, err := hex.DecodeString(strings.TrimSpace(string(b)))
		if err != nil || len(secret) < 32 {
			return nil, fmt.Errorf("secret file %s: want at least 64 hex digits (32 bytes); delete it to have a new one made", path)
		}
		return secret, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read secret file: %w", err)
	}
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	if err := os.WriteFile(path, []byte(hex.EncodeToString(secret)+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("save secret file: %w", err)
	}
	return secret, nil
}

// newToken returns "hr_" and 256 random bits.
func newToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return "hr_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

// firstStart creates a first channel and prints the admin token with a
// connect line that works when pasted.
func firstStart(cmd *cobra.Command, st store.Store, dataDir, url, token string) error {
	ch := store.Channel{ID: server.NewChannelID(), CreatedAt: time.Now().UTC()}
	if err := st.CreateChannel(cmd.Context(), ch); err != nil {
		return fmt.Errorf("create the first channel: %w", err)
	}
	fmt.Fprintf(cmd.OutOrStdout(), `
First start: generated an admin token (saved in %s; shown only now):

  %s

and a first channel, whose public URL is %s/h/%s
Forward its webhooks to your app with:

  hookrelay connect %s --server %s --token %s --to http://localhost:3000/webhooks

`, filepath.Join(dataDir, adminTokenFile), token, url, ch.ID, ch.ID, url, token)
	return nil
}

// tlsFrom builds the TLS configuration from tls_cert/tls_key or
// acme_domain, or returns nil for plain HTTP. Only HTTP/1.1 is offered:
// the relay reads each request's raw header order, which HTTP/2 hides.
func tlsFrom(v *viper.Viper, dataDir string) (*tls.Config, error) {
	cert, key, domain := v.GetString("tls_cert"), v.GetString("tls_key"), v.GetString("acme_domain")
	switch {
	case domain != "" && (cert != "" || key != ""):
		return nil, errors.New("use either --acme-domain or --tls-cert/--tls-key, not both")
	case domain != "":
		m := &autocert.Manager{
			Prompt:     autocert.AcceptTOS,
			HostPolicy: autocert.HostWhitelist(domain),
			Cache:      autocert.DirCache(filepath.Join(dataDir, "acme")),
		}
		cfg := m.TLSConfig()
		cfg.NextProtos = []string{"http/1.1", acme.ALPNProto}
		return cfg, nil
	case cert != "" || key != "":
		if cert == "" || key == "" {
			return nil, errors.New("--tls-cert and --tls-key go together")
		}
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, fmt.Errorf("load TLS certificate: %w", err)
		}
		return &tls.Config{Certificates: []tls.Certificate{pair}, NextProtos: []string{"http/1.1"}, MinVersion: tls.VersionTLS12}, nil
	}
	return nil, nil
}

// splitList splits comma- or space-separated values (an environment
// variable carries a list as one string).
func splitList(in []string) []string {
	var out []string
	for _, s := range in {
		for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' }) {
			out = append(out, f)
		}
	}
	return out
}
