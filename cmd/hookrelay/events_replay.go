package main

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/hookrelay/hookrelay/client"
	"github.com/hookrelay/hookrelay/protocol"
	"github.com/hookrelay/hookrelay/webhook"
)

func newEventsReplayCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "replay EVENT_ID",
		Short: "Deliver an event again, as it was or edited",
		Long: `Deliver a stored event again. Without edits, the relay hands the same event
to the channel's connected agents (every group, or --group), and its new
delivery attempts show under the event.

With edits the relay stores an edited copy as a new event that records which
event it came from (replay_of in the API, a link in the inspector), and
delivers it like a webhook that just arrived, to every group of the channel:
  --header 'Name: value'  replaces the first line of that name, keeping its
                          place, or adds it at the end (repeatable)
  --remove-header NAME    drops every line of that name (repeatable)
  --body-file FILE        the new body ("-": standard input); Content-Length
                          follows it
  --resign                signs the result anew with the channel's signing
                          secret and the current time, so the app's
                          verification accepts the edited body
Removals apply before --header, and --resign after both.

--to URL sends the event (edited or not) straight to that URL from this
machine, with no agent and no new event: the same method, sub-path, query,
headers in their order and body bytes, following the rules of a live
delivery (hop-by-hop headers dropped, Host the target's, Hookrelay-Event-Id
and Hookrelay-Delivery-Attempt added). It prints the app's status line and
body and exits 0 whenever the app answered. --resign then reads the
channel's secret from the relay, which needs an admin or member token.`,
		Example: `  hookrelay events replay evt_7f3a...
  hookrelay events replay evt_7f3a... --group ci
  hookrelay events replay evt_7f3a... --header 'X-GitHub-Event: ping' --remove-header X-Debug
  hookrelay events replay evt_7f3a... --body-file fixed.json --resign
  hookrelay events replay evt_7f3a... --to http://localhost:3000/webhooks --body-file fixed.json --resign`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError(fmt.Errorf("replay takes one event id, got %d arguments", len(args)))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			api, v, err := apiFrom(cmd)
			if err != nil {
				return err
			}
			edits, err := replayEditsFrom(cmd)
			if err != nil {
				return usageError(err)
			}
			edited := edits.Headers != nil || len(edits.RemoveHeaders) > 0 || len(edits.SetHeaders) > 0 || edits.Body != nil || edits.Resign
			id, group, to := args[0], v.GetString("group"), v.GetString("to")
			out := cmd.OutOrStdout()
			switch {
			case to != "" && group != "":
				return usageError(errors.New("--group picks agents; --to sends from here, with no agent: use one of them"))
			case to != "":
				return replayTo(cmd, api, id, edits, to, v.GetDuration("timeout"))
			case edited && group != "":
				return usageError(errors.New("--group applies to a plain replay; an edited replay is a new event, delivered to every group of the channel"))
			case edited:
				res, err := api.ReplayEdited(cmd.Context(), id, edits)
				if err != nil {
					return err
				}
				if len(res.Groups) == 0 {
					fmt.Fprintf(out, "stored the edited replay of %s as event %s; no agent is connected: it is delivered when one connects\n", id, res.EventID)
				} else {
					fmt.Fprintf(out, "stored the edited replay of %s as event %s, delivering it to %d group(s): %v\n", id, res.EventID, len(res.Groups), res.Groups)
				}
				return nil
			}
			groups, err := api.Replay(cmd.Context(), id, group)
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "replaying %s to %d group(s): %v\n", id, len(groups), groups)
			return nil
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError(err) })
	addClientFlags(cmd)
	f := cmd.Flags()
	f.String("group", "", "only this group (default: every connected group); not with edits")
	f.String("to", "", "send it straight to this URL from here, with no agent and no new event")
	f.StringArray("header", nil, "'Name: value': replace the first line of that name or add it (repeatable)")
	f.StringArray("remove-header", nil, "drop every line of this name (repeatable)")
	f.String("body-file", "", "replace the body with this file's bytes (- for standard input)")
	f.Bool("resign", false, "sign anew with the channel's signing secret after the edits")
	f.Duration("timeout", 30*time.Second, "with --to: timeout of the request")
	return cmd
}

// replayEditsFrom reads the edit flags. The repeatable ones are read from
// the flags, as typed (viper would split them at commas).
func replayEditsFrom(cmd *cobra.Command) (client.ReplayEdits, error) {
	var e client.ReplayEdits
	f := cmd.Flags()
	lines, _ := f.GetStringArray("header")
	for _, line := range lines {
		h, err := webhook.ParseHeaderLine(line)
		if err != nil {
			return e, fmt.Errorf("--header: %w", err)
		}
		e.SetHeaders = append(e.SetHeaders, client.Header{Name: h.Name, Value: h.Value})
	}
	e.RemoveHeaders, _ = f.GetStringArray("remove-header")
	for _, name := range e.RemoveHeaders {
		if !webhook.ValidHeaderName(name) {
			return e, fmt.Errorf("--remove-header %q is not a header name", name)
		}
	}
	if path, _ := f.GetString("body-file"); path != "" {
		var (
			body []byte
			err  error
		)
		if path == "-" {
			body, err = io.ReadAll(cmd.InOrStdin())
		} else {
			body, err = os.ReadFile(path)
		}
		if err != nil {
			return e, fmt.Errorf("--body-file: %w", err)
		}
		text, enc := base64.StdEncoding.EncodeToString(body), client.BodyBase64
		e.Body, e.BodyEncoding = &text, enc
	}
	e.Resign, _ = f.GetBool("resign")
	return e, nil
}

// replayTo sends the event, edited, straight to a URL.
func replayTo(cmd *cobra.Command, api *client.API, id string, edits client.ReplayEdits, to string, timeout time.Duration) error {
	ctx := cmd.Context()
	ev, err := api.GetEvent(ctx, id)
	if err != nil {
		return err
	}
	body := []byte{}
	if ev.Body != nil {
		if body, err = decodeEventBody(*ev.Body, ev.BodyEncoding); err != nil {
			return fmt.Errorf("event %s: %w", id, err)
		}
	}
	ed := webhook.Edit{Remove: edits.RemoveHeaders}
	for _, h := range edits.SetHeaders {
		ed.Set = append(ed.Set, protocol.Header{Name: h.Name, Value: h.Value})
	}
	if edits.Body != nil {
		if ed.Body, err = decodeEventBody(*edits.Body, edits.BodyEncoding); err != nil {
			return err
		}
	}
	headers := make([]protocol.Header, len(ev.Headers))
	for i, h := range ev.Headers {
		headers[i] = protocol.Header{Name: h.Name, Value: h.Value}
	}
	headers, body = ed.Apply(headers, body)
	if edits.Resign {
		s, err := api.ChannelSecret(ctx, ev.Channel)
		if err != nil {
			return fmt.Errorf("read channel %s's signing secret for --resign: %w", ev.Channel, err)
		}
		if s.Verify == "" {
			return fmt.Errorf("channel %s has no signing secret to re-sign with; set one with 'hookrelay channel update %s --verify PROVIDER --secret SECRET'", ev.Channel, ev.Channel)
		}
		if headers, err = (webhook.Signer{Scheme: s.Verify, Secret: s.Secret, Header: s.Header}).Sign(headers, body, time.Now()); err != nil {
			return err
		}
	}
	saved := &client.SavedEvent{
		EventID: ev.ID, Channel: ev.Channel, Attempt: ev.Attempts, Method: ev.Method, Path: ev.Path,
		RawQuery: ev.Query, Body: body, ReceivedAt: ev.ReceivedAt, RemoteAddr: ev.RemoteAddr,
	}
	for _, h := range headers {
		saved.Headers = append(saved.Headers, client.SavedHeader{Name: h.Name, Value: h.Value})
	}
	resp, err := client.Replay(ctx, saved, to, client.ReplayOptions{Timeout: timeout})
	if err != nil {
		return fmt.Errorf("replay %s to %s: %w", id, to, err)
	}
	out := cmd.OutOrStdout()
	fmt.Fprintln(out, statusLine(resp.Status))
	_, err = out.Write(resp.Body)
	return err
}

func decodeEventBody(text, encoding string) ([]byte, error) {
	switch strings.ToLower(encoding) {
	case "", client.BodyUTF8:
		return []byte(text), nil
	case client.BodyBase64:
		return base64.StdEncoding.DecodeString(text)
	}
	return nil, fmt.Errorf("body encoding %q: want utf8 or base64", encoding)
}
