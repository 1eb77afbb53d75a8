package main

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/hookrelay/hookrelay/client"
)

func newReplayCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "replay FILE --to URL",
		Short: "Send an event saved by 'connect --save' to a URL again",
		Long: `Send an event saved by "hookrelay connect --save DIR" to --to again, byte for
byte: the same method, sub-path, query, headers in their order and body,
following the rules of a live delivery (hop-by-hop headers dropped, Host the
target's unless --preserve-host, Hookrelay-Event-Id and
Hookrelay-Delivery-Attempt added, redirects not followed). The relay is not
involved.

Prints the app's status line, then its body, to standard output. Exits 0
whenever the app answered, whatever the status; 1 when it could not be
reached or the file cannot be read; 2 for a wrong flag.

Configuration keys (flag, HOOKRELAY_<KEY> environment variable, or the YAML
file ~/.config/hookrelay/config.yaml / --config): to, preserve_host, timeout.`,
		Example: `  hookrelay connect my-app --to http://localhost:3000/webhooks --save ./events
  hookrelay replay ./events/20261126T104102.000000000Z-evt_7f3a.json --to http://localhost:3000/webhooks`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError(fmt.Errorf("replay takes one saved event file, got %d arguments", len(args)))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := newViper(cmd)
			if err != nil {
				return usageError(err)
			}
			to := v.GetString("to")
			if to == "" {
				return usageError(errors.New("--to is required: the URL to send the event to, e.g. --to http://localhost:3000/webhooks"))
			}
			saved, err := client.ReadSaved(args[0])
			if err != nil {
				return err
			}
			resp, err := client.Replay(cmd.Context(), saved, to, client.ReplayOptions{
				PreserveHost: v.GetBool("preserve_host"),
				Timeout:      v.GetDuration("timeout"),
			})
			if err != nil {
				return fmt.Errorf("replay %s to %s: %w", saved.EventID, to, err)
			}
			out := cmd.OutOrStdout()
			fmt.Fprintln(out, statusLine(resp.Status))
			_, err = out.Write(resp.Body)
			return err
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError(err) })
	f := cmd.Flags()
	f.String("config", defaultClientConfig(), "YAML config file (keys: to, preserve_host, timeout)")
	f.String("to", "", "URL to send the event to (required); the event's sub-path is appended to its path")
	f.Bool("preserve-host", false, "send the saved Host header instead of the target's")
	f.Duration("timeout", 30*time.Second, "timeout of the request")
	return cmd
}

// statusLine renders a status as "201 Created".
func statusLine(status int) string {
	if text := http.StatusText(status); text != "" {
		return fmt.Sprintf("%d %s", status, text)
	}
	return fmt.Sprint(status)
}
