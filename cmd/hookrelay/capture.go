package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/hookrelay/hookrelay/client"
	"github.com/hookrelay/hookrelay/protocol"
)

// Exit codes of hookrelay capture besides 0 and 1.
const (
	exitUsage   = 2 // a flag or argument is wrong
	exitTimeout = 3 // --timeout passed before --count webhooks matched
)

// usageError gives err the exit code of a wrong flag or argument.
func usageError(err error) error { return &exitError{code: exitUsage, err: err} }

func newCaptureCmd() *cobra.Command {
	var opts captureOptions
	cmd := &cobra.Command{
		Use:   "capture CHANNEL --count N --timeout D",
		Short: "Wait for webhooks on a channel and write them as JSON lines (for CI)",
		Long: `Connect to the relay as an agent of a group of its own and wait for --count
webhooks that match every --match. Each one is written as one JSON line to
--out (default: standard output):

  {"id","channel","method","path","query","headers":[{"name","value"},...],
   "body","body_encoding":"utf8"|"base64","received_at","remote_addr"}

Headers keep the sender's order, case and repeats; the body is text when it
is valid UTF-8 and base64 otherwise. Every sender, matching or not, is
answered with --respond-status and --respond-body.

The capture starts from the events the channel still holds (--from resume),
so webhooks sent before it started are captured too: create the channel,
trigger the system under test, then capture. Its group is "capture:" and a
random suffix unless --group names one, so it takes no webhook from other
agents of the channel. The webhooks a capture answers count as delivered to
its group: a second capture with the same --group does not see them again.

--match KEY=VALUE compares a header (name in any case, value exact); the keys
method and path compare the request's method and its sub-path after the
channel URL (like /github). Repeat --match to require several.

On a terminal a countdown is shown on standard error; elsewhere (CI logs) the
capture is quiet but for connection failures. It reconnects like
"hookrelay connect". Only server and token are read from the environment
(HOOKRELAY_SERVER, HOOKRELAY_TOKEN) and the config file; the other settings
are flags.

Exit codes: 0 when --count webhooks matched (they are written and answered);
3 when --timeout passed first (those that matched are written; standard
error says "timed out after D: got K of N webhooks"); 2 for a wrong flag;
1 when the relay refused the capture (token, channel), could not be reached
within --timeout, or --out could not be written.`,
		Example: `  # wait up to 2 minutes for one webhook, print it
  hookrelay capture "$CHANNEL" --timeout 2m

  # two payment webhooks into a file; answer every sender 202 {"ok":true}
  hookrelay capture "$CHANNEL" --count 2 --timeout 90s \
    --match X-Event-Type=payment.succeeded --match method=POST \
    --respond-status 202 --respond-body '{"ok":true}' \
    --respond-header 'Content-Type: application/json' --out webhooks.jsonl

  # assert on them
  jq -e 'select(.path == "/payments") | .body | fromjson | .amount == 4200' webhooks.jsonl`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError(fmt.Errorf("capture takes one channel, got %d arguments", len(args)))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := opts.check(args[0]); err != nil {
				return usageError(err)
			}
			return runCapture(cmd, args[0], &opts)
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError(err) })
	addClientFlags(cmd)
	f := cmd.Flags()
	f.IntVar(&opts.count, "count", 1, "matching webhooks to wait for")
	f.DurationVar(&opts.timeout, "timeout", time.Minute, "how long to wait; 0 waits until --count matched or Ctrl-C")
	f.StringVar(&opts.out, "out", "", "file to write the JSON lines to, created or truncated (default: standard output)")
	f.StringArrayVar(&opts.matchArgs, "match", nil, "capture only webhooks with this header value: NAME=VALUE, method=VALUE or path=VALUE (repeatable)")
	f.IntVar(&opts.respondStatus, "respond-status", 200, "HTTP status every sender gets")
	f.StringVar(&opts.respondBody, "respond-body", "", "body every sender gets")
	f.StringArrayVar(&opts.headerArgs, "respond-header", nil, `header every sender gets, "Name: value" (repeatable)`)
	f.StringVar(&opts.group, "group", "", `delivery group (default "capture:" and a random suffix)`)
	f.StringVar(&opts.from, "from", protocol.FromResume, "where a new group starts: resume (events the channel still holds) or now")
	return cmd
}

// captureOptions are capture's flags. They are read from the command line
// only, not through viper: a group or a timeout in the environment or the
// config file is meant for connect.
type captureOptions struct {
	count         int
	timeout       time.Duration
	out           string
	matchArgs     []string
	respondStatus int
	respondBody   string
	headerArgs    []string
	group, from   string

	// Filled by check.
	matches        []client.Match
	respondHeaders []protocol.Header
}

// check validates the flags and parses --match and --respond-header.
func (o *captureOptions) check(channel string) error {
	switch {
	case o.count < 1:
		return fmt.Errorf("--count must be 1 or more, not %d", o.count)
	case o.timeout < 0:
		return fmt.Errorf("--timeout must not be negative, not %s", o.timeout)
	case o.respondStatus < 100 || o.respondStatus > 599:
		return fmt.Errorf("--respond-status must be an HTTP status from 100 to 599, not %d", o.respondStatus)
	case o.from != protocol.FromResume && o.from != protocol.FromNow:
		return fmt.Errorf("--from must be resume or now, not %q", o.from)
	}
	o.matches, o.respondHeaders = nil, nil
	for _, s := range o.matchArgs {
		m, err := client.ParseMatch(s)
		if err != nil {
			return fmt.Errorf("--match: %w", err)
		}
		o.matches = append(o.matches, m)
	}
	for _, s := range o.headerArgs {
		name, value, ok := strings.Cut(s, ":")
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		if !ok || !isToken(name) || strings.ContainsFunc(value, func(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f }) {
			return fmt.Errorf(`--respond-header %q: want "Name: value"`, s)
		}
		o.respondHeaders = append(o.respondHeaders, protocol.Header{Name: name, Value: value})
	}
	sub := client.Subscription{Channel: channel, Group: o.group, From: o.from}
	if err := sub.Validate(); err != nil {
		return fmt.Errorf("channel %q, --group %q: %w", channel, o.group, err)
	}
	return nil
}

// runCapture runs a capture with checked options.
func runCapture(cmd *cobra.Command, channel string, cf *captureOptions) error {
	v, err := newViper(cmd)
	if err != nil {
		return usageError(err)
	}
	stderr := cmd.ErrOrStderr()

	out := cmd.OutOrStdout()
	var file *os.File
	if cf.out != "" {
		// Webhooks carry secrets: readable by the owner only, like --save.
		file, err = os.OpenFile(cf.out, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return fmt.Errorf("--out: %w", err)
		}
		defer file.Close() // a second Close after the checked one below is harmless
		out = file
	}
	var progress io.Writer
	if f, ok := stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		progress = stderr
	}
	relayTLS, proxy, err := relayAccess(cmd, v)
	if err != nil {
		return usageError(err)
	}

	res, err := client.Capture(cmd.Context(), client.CaptureConfig{
		Agent: client.Config{
			ServerURL:    v.GetString("server"),
			Token:        v.GetString("token"),
			RelayTLS:     relayTLS,
			Proxy:        proxy,
			AgentVersion: version,
			Logger:       slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		},
		Channel:        channel,
		Group:          cf.group,
		From:           cf.from,
		Count:          cf.count,
		Timeout:        cf.timeout,
		Match:          cf.matches,
		RespondStatus:  cf.respondStatus,
		RespondHeaders: cf.respondHeaders,
		RespondBody:    []byte(cf.respondBody),
		Out:            out,
		Progress:       progress,
	})
	if file != nil {
		if cerr := file.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("--out: %w", cerr)
		}
	}
	switch {
	case errors.Is(err, client.ErrCaptureTimeout):
		return &exitError{code: exitTimeout, err: err}
	case err != nil:
		return err
	}
	if progress != nil {
		noun := "webhooks"
		if res.Got == 1 {
			noun = "webhook"
		}
		fmt.Fprintf(progress, "captured %d %s on %s (group %s)\n", res.Got, noun, channel, res.Group)
	}
	return nil
}

// isToken reports whether s is an HTTP token (RFC 9110), as header names are.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r > '~' || r <= ' ' || strings.ContainsRune("\"(),/:;<=>?@[\\]{}", r) {
			return false
		}
	}
	return true
}
