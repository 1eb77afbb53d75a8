package main

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/hookrelay/hookrelay/client"
	"github.com/hookrelay/hookrelay/webhook"
)

func newTriggerCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "trigger PROVIDER EVENT (--channel CHANNEL | --url URL)",
		Short: "Send a realistic, signed sample webhook of a provider",
		Long: `Send a sample event as the provider would: its body, its headers in its
order, a fresh id and time, and its signature, so that your app's own
verification code accepts it. No account at the provider is needed.

--channel sends it to the channel's public URL (and --path under it), through
the relay and your listen or connect agent. It is signed with the channel's
signing secret (set by "listen --verify PROVIDER" or "channel update
--verify"), read from the relay with your token: admin and member tokens may
read it, agent tokens and read keys may not (then pass --secret). --url sends
it straight to any URL, signed with --secret.

A GitHub event without a secret is sent unsigned, as GitHub does for a
webhook that has none; the other providers always sign, and need one.

--set path=value changes a field of the body before it is signed, keeping
the order of the rest (repeatable): a dotted path (data.object.amount,
commits.0.message; \. for a dot in a name), or a form field's name for
Slack's slash command. The value replaces a number, true/false, null, object
or array as JSON when it is JSON, and is a string otherwise; quote it ('"7"')
to set a string where a number was.

Prints the answer's status line and body. Exits 0 when the answer is 2xx;
1 otherwise (the app or the relay refused it), or when it could not be sent.`,
		Example: `  hookrelay trigger --list
  hookrelay trigger github push --channel my-app
  hookrelay trigger stripe payment_intent.succeeded --channel my-app --set data.object.amount=2000
  hookrelay trigger slack slash_command --url http://localhost:3000/slack/commands --secret "$SLACK_SIGNING_SECRET" --set text='deploy prod'
  hookrelay trigger standard-webhooks user.created --url http://localhost:3000/webhooks --secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw`,
		Args: func(cmd *cobra.Command, args []string) error {
			if list, _ := cmd.Flags().GetBool("list"); list {
				return nil
			}
			if len(args) != 2 {
				return usageError(fmt.Errorf("trigger takes a provider and an event, like 'trigger github push' (see --list); got %d arguments", len(args)))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := newViper(cmd)
			if err != nil {
				return usageError(err)
			}
			out := cmd.OutOrStdout()
			if v.GetBool("list") {
				tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "PROVIDER\tEVENT")
				for _, s := range webhook.Samples() {
					fmt.Fprintf(tw, "%s\t%s\n", s.Provider, s.Event)
				}
				return tw.Flush()
			}
			provider, event := args[0], args[1]
			scheme, ok := webhook.SampleScheme(provider)
			if !ok {
				return usageError(fmt.Errorf("no samples of %q: the providers are %s", provider, strings.Join(webhook.Providers(), ", ")))
			}
			channel, target := v.GetString("channel"), v.GetString("url")
			if (channel == "") == (target == "") {
				return usageError(errors.New("say where to send it: --channel CHANNEL (through the relay) or --url URL (straight to your app)"))
			}
			secret := v.GetString("secret")
			if channel != "" {
				if target, secret, err = triggerChannel(cmd, channel, scheme, secret); err != nil {
					return err
				}
			}
			sets, _ := cmd.Flags().GetStringArray("set") // as typed: viper would split them at commas
			req, err := webhook.BuildSample(provider, event, webhook.SampleOptions{Secret: secret, Set: sets})
			if errors.Is(err, webhook.ErrNoSecret) {
				where := "pass --secret"
				if channel != "" {
					where = fmt.Sprintf("channel %s verifies no signature: run 'hookrelay listen --channel %s --verify %s', or pass --secret", channel, channel, scheme)
				}
				return usageError(fmt.Errorf("%s needs a signing secret to sign %s: %s", provider, event, where))
			}
			if err != nil {
				return usageError(err)
			}
			resp, err := client.Send(cmd.Context(), target, req.Method, req.Headers, req.Body, v.GetDuration("timeout"))
			if err != nil {
				return err
			}
			fmt.Fprintln(out, statusLine(resp.Status))
			if id := resp.Header.Get("Hookrelay-Event-Id"); id != "" {
				fmt.Fprintf(cmd.ErrOrStderr(), "event %s\n", id)
			}
			if _, err := out.Write(resp.Body); err != nil {
				return err
			}
			if len(resp.Body) > 0 && resp.Body[len(resp.Body)-1] != '\n' {
				fmt.Fprintln(out)
			}
			if resp.Status < 200 || resp.Status > 299 {
				return fmt.Errorf("%s %s was answered %s", provider, event, statusLine(resp.Status))
			}
			return nil
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError(err) })
	addClientFlags(cmd)
	f := cmd.Flags()
	f.Bool("list", false, "list the sample events")
	f.String("channel", "", "send to this channel's public URL, signed with its secret")
	f.String("path", "", "with --channel: the sub-path after the channel URL, like /github")
	f.String("url", "", "send straight to this URL")
	f.String("secret", "", "the signing secret (default with --channel: the channel's)")
	f.StringArray("set", nil, "override a body field: path=value (repeatable)")
	f.Duration("timeout", 30*time.Second, "timeout of the request")
	return cmd
}

// triggerChannel returns a channel's URL (with --path) and the secret to
// sign with: secret when given, else the channel's when it verifies the
// provider's scheme.
func triggerChannel(cmd *cobra.Command, channel, scheme, secret string) (string, string, error) {
	api, v, err := apiFrom(cmd)
	if err != nil {
		return "", "", err
	}
	ctx := cmd.Context()
	ch, err := api.GetChannel(ctx, channel)
	if err != nil {
		return "", "", err
	}
	target := ch.URL
	if p := v.GetString("path"); p != "" {
		target = strings.TrimRight(target, "/") + "/" + strings.TrimLeft(p, "/")
	}
	if ch.Verify != "" && ch.Verify != scheme {
		return "", "", fmt.Errorf("channel %s verifies %s signatures: the relay would reject a %s-signed event; use another channel or change its verification", channel, ch.Verify, scheme)
	}
	if secret != "" || ch.Verify == "" {
		return target, secret, nil
	}
	s, err := api.ChannelSecret(ctx, channel)
	if client.IsStatus(err, http.StatusForbidden) {
		return "", "", fmt.Errorf("channel %s verifies %s signatures and this token may not read its secret: pass --secret, or use a member token", channel, scheme)
	}
	if err != nil {
		return "", "", err
	}
	return target, s.Secret, nil
}
