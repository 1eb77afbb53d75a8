package main

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/hookrelay/hookrelay/server"
	"github.com/hookrelay/hookrelay/server/store"
	"github.com/hookrelay/hookrelay/server/store/sqlite"
)

const serverLong = `Run a relay: public ingress on /h/CHANNEL/..., agents on /tunnel, the JSON API
on /api/v1, metrics on /metrics. With no configuration it keeps its data in
./hookrelay-data (SQLite) and prints an admin token on first start.

Every key can be set by flag, by HOOKRELAY_<KEY> environment variable, or in
the YAML file given with --config (flags win over the environment, which wins
over the file):

  key                     flag                      default
  listen                  --listen                  :8080
  public_url              --public-url              (from each request's Host)
  data_dir                --data-dir                ./hookrelay-data
  admin_token             --admin-token             (generated, in data_dir/admin-token)
  response_timeout        --response-timeout        10s
  max_body                --max-body                25MiB
  retention               --retention               168h
  max_events_per_channel  --max-events-per-channel  0 (no cap)
  delivery_timeout        --delivery-timeout        2m
  max_attempts            --max-attempts            20
  log_level               --log-level               info

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
	f.String("data-dir", "./hookrelay-data", "directory for the database and the generated admin token")
	f.String("admin-token", "", "admin token (default: generated on first start and kept in the data directory)")
	f.Duration("response-timeout", server.DefaultResponseTimeout, "how long a sender waits for the app's answer before it gets 202")
	f.String("max-body", "25MiB", "largest webhook body accepted (413 beyond)")
	f.Duration("retention", server.DefaultRetention, "delete events older than this")
	f.Int("max-events-per-channel", 0, "keep at most this many events per channel (0: no cap)")
	f.Duration("delivery-timeout", server.DefaultDeliveryTimeout, "bound on one delivery attempt")
	f.Int("max-attempts", server.DefaultMaxAttempts, "delivery attempts per event and group before giving up")
	f.String("log-level", "info", "debug, info, warn or error")
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
	publicURL := v.GetString("public_url")
	shownURL := publicURL
	if shownURL == "" {
		shownURL = "http://" + displayAddr(ln.Addr())
	}
	st, err := sqlite.Open(filepath.Join(dataDir, "hookrelay.db"), sqlite.Options{})
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
	relay, err := server.New(server.Config{
		Store:               st,
		PublicURL:           publicURL,
		AdminToken:          token,
		ResponseTimeout:     v.GetDuration("response_timeout"),
		MaxBody:             maxBody,
		Retention:           v.GetDuration("retention"),
		MaxEventsPerChannel: v.GetInt("max_events_per_channel"),
		DeliveryTimeout:     v.GetDuration("delivery_timeout"),
		MaxAttempts:         v.GetInt("max_attempts"),
		Version:             version,
		Logger:              logger,
	})
	if err != nil {
		return err
	}
	defer relay.Close()
	logger.Info("relay listening", "addr", ln.Addr().String(), "public_url", shownURL, "data_dir", dataDir)
	fmt.Fprintf(cmd.OutOrStdout(), "hookrelay relay listening on %s (data in %s)\n", shownURL, dataDir)
	err = relay.Serve(cmd.Context(), ln)
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
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
