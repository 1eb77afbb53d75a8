package main

import (
	"encoding/base64"
	"fmt"
	"net/url"
	"strconv"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/hookrelay/hookrelay/client"
)

func newEventsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "events", Short: "Look back at a channel's webhooks and replay them"}

	list := &cobra.Command{
		Use:   "list CHANNEL",
		Short: "List a channel's events, newest first",
		Example: `  hookrelay events list my-app --limit 20
  hookrelay events list my-app --method POST --status 500 --q invoice.paid --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, v, err := apiFrom(cmd)
			if err != nil {
				return err
			}
			q := url.Values{}
			q.Set("limit", strconv.Itoa(v.GetInt("limit")))
			for _, key := range []string{"method", "q", "before", "since", "until"} {
				if s := v.GetString(key); s != "" {
					q.Set(key, s)
				}
			}
			if s := v.GetInt("status"); s != 0 {
				q.Set("status", strconv.Itoa(s))
			}
			page, err := api.ListEvents(cmd.Context(), args[0], q)
			if err != nil {
				return err
			}
			if v.GetBool("json") {
				if page.Events == nil {
					page.Events = []client.Event{}
				}
				return printJSON(cmd.OutOrStdout(), page)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tRECEIVED\tMETHOD\tPATH\tSTATUS\tATTEMPTS\tSIZE")
			for _, ev := range page.Events {
				status := "-"
				if ev.LastStatus != 0 {
					status = strconv.Itoa(ev.LastStatus)
				} else if ev.State == "rejected" {
					status = "rejected"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\n", ev.ID, ev.ReceivedAt.Format(time.RFC3339),
					ev.Method, ev.Path, status, ev.Attempts, ev.Size)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if page.NextCursor != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "more: --before %s\n", page.NextCursor)
			}
			return nil
		},
	}
	addClientFlags(list)
	lf := list.Flags()
	lf.Int("limit", 50, "events per page (1-500)")
	lf.String("method", "", "only this HTTP method")
	lf.Int("status", 0, "only events whose latest delivery got this status")
	lf.String("q", "", "only events with this text in a header or the body")
	lf.String("before", "", "the next page: the cursor printed after a full page")
	lf.String("since", "", "only events received at or after this RFC 3339 time")
	lf.String("until", "", "only events received before this RFC 3339 time")
	lf.Bool("json", false, "print JSON")

	show := &cobra.Command{
		Use:   "show EVENT_ID",
		Short: "Show one event with its headers, body and delivery attempts",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, v, err := apiFrom(cmd)
			if err != nil {
				return err
			}
			ev, err := api.GetEvent(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			ds, err := api.Deliveries(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if v.GetBool("json") {
				return printJSON(cmd.OutOrStdout(), map[string]any{"event": ev, "deliveries": ds})
			}
			out := cmd.OutOrStdout()
			target := ev.Path
			if ev.Query != "" {
				target += "?" + ev.Query
			}
			fmt.Fprintf(out, "%s %s\nevent %s on channel %s, received %s from %s (%d bytes, %s)\n\n",
				ev.Method, target, ev.ID, ev.Channel, ev.ReceivedAt.Format(time.RFC3339Nano), ev.RemoteAddr, ev.Size, ev.State)
			if ev.ReplayOf != "" {
				fmt.Fprintf(out, "an edited replay of event %s\n\n", ev.ReplayOf)
			}
			for _, h := range ev.Headers {
				v := h.Value
				if !utf8.ValidString(v) {
					v = strconv.Quote(v) // bytes that are not UTF-8 as \xNN escapes
				}
				fmt.Fprintf(out, "%s: %s\n", h.Name, v)
			}
			fmt.Fprintln(out)
			if ev.Body != nil {
				if ev.BodyEncoding == "base64" {
					raw, _ := base64.StdEncoding.DecodeString(*ev.Body)
					fmt.Fprintf(out, "(binary body, %d bytes; download with GET /api/v1/events/%s/body)\n", len(raw), ev.ID)
				} else {
					fmt.Fprintln(out, *ev.Body)
				}
			}
			fmt.Fprintf(out, "\n%d delivery attempt(s):\n", len(ds))
			for _, d := range ds {
				res := strconv.Itoa(d.Status)
				if d.Error != "" {
					res = "error: " + d.Error
				}
				fmt.Fprintf(out, "  #%d  %s  group %s  %s  %.1fms\n", d.Attempt, d.StartedAt.Format(time.RFC3339), d.Group, res, d.DurationMS)
			}
			return nil
		},
	}
	addClientFlags(show)
	show.Flags().Bool("json", false, "print JSON")

	cmd.AddCommand(list, show, newEventsReplayCmd())
	return cmd
}
