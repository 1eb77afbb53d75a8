package main

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/hookrelay/hookrelay/client"
)

func newConnectCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "connect CHANNEL [CHANNEL...] --to URL",
		Short: "Forward a channel's webhooks to a local URL",
		Long: `Connect to the relay and forward every webhook of the channels to --to, byte
for byte, returning the app's answer to the sender. Reconnects forever with
backoff; Ctrl-C lets deliveries in flight finish (up to 5 seconds).

Configuration keys (flag, HOOKRELAY_<KEY> environment variable, or the YAML
file ~/.config/hookrelay/config.yaml / --config): server, token, to, group,
from, preserve_host, concurrency, timeout, json, save.`,
		Example: `  hookrelay connect my-app --to http://localhost:3000/webhooks
  hookrelay connect my-app --to http://localhost:3000 --group ci --from now --json`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := newViper(cmd)
			if err != nil {
				return err
			}
			if v.GetString("to") == "" {
				return errors.New("--to is required: the local URL to forward to, e.g. --to http://localhost:3000/webhooks")
			}
			from := v.GetString("from")
			if from != "resume" && from != "now" {
				return fmt.Errorf("--from must be resume or now, not %q", from)
			}
			subs := make([]client.Subscription, len(args))
			for i, ch := range args {
				subs[i] = client.Subscription{Channel: ch, Group: v.GetString("group"), From: from}
			}
			agent, err := client.New(client.Config{
				ServerURL:      v.GetString("server"),
				Token:          v.GetString("token"),
				Subscriptions:  subs,
				Target:         v.GetString("to"),
				PreserveHost:   v.GetBool("preserve_host"),
				Concurrency:    v.GetInt("concurrency"),
				RequestTimeout: v.GetDuration("timeout"),
				Out:            cmd.OutOrStdout(),
				JSON:           v.GetBool("json"),
				SaveDir:        v.GetString("save"),
				AgentVersion:   version,
				Logger:         slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelWarn})),
			})
			if err != nil {
				return err
			}
			return agent.Run(cmd.Context())
		},
	}
	addClientFlags(cmd)
	f := cmd.Flags()
	f.String("to", "", "local URL to forward to (required)")
	f.String("group", "", "delivery group: agents of one group share events (default: one per token and host)")
	f.String("from", "resume", "where a new group starts: resume (events still queued) or now")
	f.Bool("preserve-host", false, "send the sender's Host header instead of the target's")
	f.Int("concurrency", 32, "deliveries forwarded at once")
	f.Duration("timeout", 30*time.Second, "per-request timeout to the target")
	f.Bool("json", false, "print JSON lines instead of text")
	f.String("save", "", "directory to save each event to (replay with 'hookrelay replay FILE')")
	return cmd
}
