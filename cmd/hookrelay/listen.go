package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/hookrelay/hookrelay/client"
	"github.com/hookrelay/hookrelay/webhook"
)

func newListenCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "listen [PORT|URL]",
		Short: "Make a channel for this session and forward its webhooks to your app",
		Long: `One command to start: listen creates a channel for this session, prints its
public URL, and forwards every webhook it receives to your app, like connect
(byte for byte, the app's answer back to the sender, queued while you are
away). Stop it with Ctrl-C: the channel is deleted with its events, unless
--keep. A channel that listen did not make is never deleted.

The app is PORT (http://localhost:PORT), host:port, or a URL; without one,
--to or the "to" key of the configuration (HOOKRELAY_TO). The sub-path after
the channel URL is appended to its path: a webhook sent to URL/github reaches
http://localhost:3000/github. --route sends some webhooks elsewhere, as with
connect.

--channel NAME uses that channel, creating it the first time (a named
channel is kept, so its URL stays the same from one session to the next).
Without it, the channel has a random name and is deleted after --ttl even
if listen is killed.

--verify PROVIDER makes the relay check the provider's signature on every
webhook and prints the signing secret: paste it into the provider's webhook
settings (GitHub, Standard Webhooks senders, hmac), or pass the provider's own
with --secret (Stripe and Slack make their own secrets). Without --secret a
new one is made, or the named channel's secret for that provider is kept.
"hookrelay trigger PROVIDER EVENT --channel CHANNEL" signs sample events with
it, so your app's verification code accepts them.

Needs a token that may create channels (admin or member): --token,
HOOKRELAY_TOKEN, or the config file, with the relay's --server. The other
flags are connect's.`,
		Example: `  hookrelay listen 3000
  hookrelay listen http://localhost:4242/webhooks --verify stripe --secret whsec_...
  hookrelay listen 8080 --channel my-app --verify github
  hookrelay listen 3000 --keep --ttl 2h --json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, v, err := apiFrom(cmd)
			if err != nil {
				return err
			}
			arg := v.GetString("to")
			if len(args) == 1 {
				arg = args[0]
			}
			target, err := listenTarget(arg)
			if err != nil {
				return usageError(err)
			}
			scheme := v.GetString("verify")
			if scheme != "" && !slices.Contains(webhook.Schemes(), scheme) {
				return usageError(fmt.Errorf("--verify %q: want one of %s", scheme, strings.Join(webhook.Schemes(), ", ")))
			}
			ctx := cmd.Context()
			ch, temporary, err := listenChannel(ctx, api, v.GetString("channel"), v.GetDuration("ttl"))
			if err != nil {
				return err
			}
			if temporary && !v.GetBool("keep") {
				defer deleteTemporary(cmd, api, ch.ID)
			}
			secret, err := listenSecret(ctx, api, ch, scheme, v.GetString("secret"), v.GetString("signature_header"))
			if err != nil {
				return err
			}
			printListening(cmd.OutOrStdout(), v.GetBool("json"), listenBanner{
				Channel: ch.ID, URL: ch.URL, Target: target, Verify: secret.Verify, Secret: secret.Secret,
				Inspector: strings.TrimRight(v.GetString("server"), "/") + "/#/c/" + url.PathEscape(ch.ID),
				Temporary: temporary && !v.GetBool("keep"), ExpiresAt: ch.ExpiresAt,
			})
			av, err := newAgentViper(cmd)
			if err != nil {
				return err
			}
			av.Set("to", target)
			return runAgent(cmd, av, []string{ch.ID})
		},
	}
	addClientFlags(cmd)
	addAgentFlags(cmd)
	f := cmd.Flags()
	f.String("channel", "", "use this channel (created the first time, never deleted) instead of a temporary one")
	f.Duration("ttl", 24*time.Hour, "a temporary channel is deleted after this long even if listen is killed (0: never)")
	f.Bool("keep", false, "keep the temporary channel when listen stops")
	f.String("verify", "", "check this provider's signatures: "+strings.Join(webhook.Schemes(), ", "))
	f.String("secret", "", "the provider's signing secret for --verify (default: a new one, or the channel's)")
	f.String("signature-header", "", "with --verify hmac: the header that carries the signature (default X-Signature)")
	return cmd
}

// listenTarget turns PORT, host:port or a URL into the app's URL.
func listenTarget(arg string) (string, error) {
	switch {
	case arg == "":
		return "", errors.New("listen needs your app's port or URL, like 'hookrelay listen 3000' or 'hookrelay listen http://localhost:3000/webhooks'")
	case strings.Trim(arg, "0123456789") == "":
		if n, err := strconv.Atoi(arg); err != nil || n < 1 || n > 65535 {
			return "", fmt.Errorf("port %s is not from 1 to 65535", arg)
		}
		return "http://localhost:" + arg, nil
	case !strings.Contains(arg, "://"):
		arg = "http://" + arg
	}
	u, err := url.Parse(arg)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%q is not a port or an http(s) URL", arg)
	}
	return u.String(), nil
}

// listenChannel returns the named channel (created when missing) or a new
// temporary one.
func listenChannel(ctx context.Context, api *client.API, name string, ttl time.Duration) (client.Channel, bool, error) {
	if name == "" {
		in := client.CreateChannel{}
		if ttl > 0 {
			in.TTL = ttl.String()
		}
		ch, err := api.CreateChannel(ctx, in)
		if err != nil {
			return ch, false, fmt.Errorf("create a channel: %w", err)
		}
		return ch, true, nil
	}
	ch, err := api.GetChannel(ctx, name)
	if client.IsStatus(err, http.StatusNotFound) {
		ch, err = api.CreateChannel(ctx, client.CreateChannel{ID: name})
	}
	if err != nil {
		return ch, false, fmt.Errorf("channel %s: %w", name, err)
	}
	return ch, false, nil
}

// listenSecret sets the channel's verification when scheme is given and
// returns the channel's scheme and secret (empty when it verifies nothing,
// or when the token may not read the secret).
func listenSecret(ctx context.Context, api *client.API, ch client.Channel, scheme, secret, header string) (client.SigningSecret, error) {
	if scheme == "" {
		if ch.Verify == "" {
			return client.SigningSecret{}, nil
		}
		s, err := api.ChannelSecret(ctx, ch.ID)
		if client.IsStatus(err, http.StatusForbidden) {
			return client.SigningSecret{Verify: ch.Verify}, nil
		}
		return s, err
	}
	if secret == "" && ch.Verify == scheme {
		if s, err := api.ChannelSecret(ctx, ch.ID); err == nil && s.Secret != "" {
			return s, nil // keep the secret already pasted into the provider
		}
	}
	if secret == "" {
		var err error
		if secret, err = webhook.NewSecret(scheme); err != nil {
			return client.SigningSecret{}, err
		}
	}
	in := client.UpdateChannel{Verify: &scheme, Secret: &secret}
	if header != "" {
		in.Header = &header
	}
	if _, err := api.UpdateChannel(ctx, ch.ID, in); err != nil {
		return client.SigningSecret{}, fmt.Errorf("set the channel's %s verification: %w", scheme, err)
	}
	return client.SigningSecret{Verify: scheme, Secret: secret, Header: header}, nil
}

// deleteTemporary deletes the session's channel when listen stops, with
// a context of its own: the command's has ended by then.
func deleteTemporary(cmd *cobra.Command, api *client.API, id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := api.DeleteChannel(ctx, id); err != nil && !client.IsStatus(err, http.StatusNotFound) {
		fmt.Fprintf(cmd.ErrOrStderr(), "hookrelay: could not delete channel %s: %v (delete it with 'hookrelay channel delete %s')\n", id, err, id)
		return
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "deleted channel %s\n", id)
}

// listenBanner is what listen prints before it connects.
type listenBanner struct {
	Channel   string     `json:"channel"`
	URL       string     `json:"url"`
	Target    string     `json:"target"`
	Verify    string     `json:"verify,omitempty"`
	Secret    string     `json:"secret,omitempty"`
	Inspector string     `json:"inspector"`
	Temporary bool       `json:"temporary"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

func printListening(out io.Writer, asJSON bool, b listenBanner) {
	if asJSON {
		_ = printJSONLine(out, map[string]any{"listen": b})
		return
	}
	fmt.Fprintf(out, "Forwarding %s -> %s\n\n", b.URL, b.Target)
	fmt.Fprintf(out, "  Webhook URL     %s\n", b.URL)
	if b.Secret != "" {
		fmt.Fprintf(out, "  Signing secret  %s (%s)\n", b.Secret, b.Verify)
	} else if b.Verify != "" {
		fmt.Fprintf(out, "  Verifies        %s signatures\n", b.Verify)
	}
	fmt.Fprintf(out, "  Inspector       %s\n", b.Inspector)
	switch {
	case b.Temporary:
		fmt.Fprintf(out, "  Channel         %s, deleted when listen stops (--keep keeps it)\n", b.Channel)
	case b.ExpiresAt != nil:
		fmt.Fprintf(out, "  Channel         %s, kept until %s\n", b.Channel, b.ExpiresAt.Format(time.RFC3339))
	default:
		fmt.Fprintf(out, "  Channel         %s, kept\n", b.Channel)
	}
	try := "github push"
	if b.Verify != "" && b.Verify != webhook.HMAC {
		try = b.Verify + " " + firstSample(b.Verify)
	}
	fmt.Fprintf(out, "\nSend a sample: hookrelay trigger %s --channel %s\nPress Ctrl-C to stop.\n\n", try, b.Channel)
}

// firstSample names a sample event of the provider whose scheme is scheme.
func firstSample(scheme string) string {
	if ev, ok := map[string]string{webhook.GitHub: "push", webhook.Stripe: "payment_intent.succeeded",
		webhook.Slack: "app_mention", webhook.StandardWebhooks: "user.created"}[scheme]; ok {
		return ev
	}
	return ""
}

// printJSONLine writes v as one line of JSON.
func printJSONLine(w io.Writer, v any) error {
	return json.NewEncoder(w).Encode(v)
}
