package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/hookrelay/hookrelay/client"
)

// apiFrom builds an API client from the command's configuration.
func apiFrom(cmd *cobra.Command) (*client.API, *viper.Viper, error) {
	v, err := newViper(cmd)
	if err != nil {
		return nil, nil, err
	}
	if v.GetString("token") == "" {
		return nil, nil, errors.New("no token: pass --token or set HOOKRELAY_TOKEN (the relay printed its admin token on first start)")
	}
	api := client.NewAPI(v.GetString("server"), v.GetString("token"))
	tlsConfig, proxy, err := relayAccess(cmd, v)
	if err != nil {
		return nil, nil, err
	}
	api.HTTP = client.RelayHTTPClient(tlsConfig, proxy, api.HTTP.Timeout)
	return api, v, nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newChannelCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "channel", Short: "Create, list, change and delete channels"}

	create := &cobra.Command{
		Use:   "create [ID]",
		Short: "Create a channel and print its public URL",
		Example: `  hookrelay channel create
  hookrelay channel create my-app --ttl 1h --json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, v, err := apiFrom(cmd)
			if err != nil {
				return err
			}
			in := client.CreateChannel{Async: v.GetBool("async"), Team: v.GetString("team")}
			if ttl := v.GetDuration("ttl"); ttl > 0 {
				in.TTL = ttl.String()
			}
			if len(args) == 1 {
				in.ID = args[0]
			}
			ch, err := api.CreateChannel(cmd.Context(), in)
			if err != nil {
				return err
			}
			if v.GetBool("json") {
				return printJSON(cmd.OutOrStdout(), ch)
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "channel %s\nURL     %s\n", ch.ID, ch.URL)
			if ch.ExpiresAt != nil {
				fmt.Fprintf(out, "expires %s\n", ch.ExpiresAt.Format(time.RFC3339))
			}
			if ch.ReadKey != "" {
				fmt.Fprintf(out, "read key %s (shown once)\n", ch.ReadKey)
				fmt.Fprintf(out, "stream  %s?key=%s (for smee-client and EventSource; senders get the URL without ?key=)\n",
					ch.URL, url.QueryEscape(ch.ReadKey))
			}
			fmt.Fprintf(out, "\nforward it with: hookrelay connect %s --to http://localhost:3000/webhooks\n", ch.ID)
			return nil
		},
	}
	addClientFlags(create)
	create.Flags().Bool("json", false, "print the channel as JSON")
	create.Flags().Bool("async", false, "always answer senders 202 at once")
	create.Flags().Duration("ttl", 0, "delete the channel and its events after this long (e.g. 1h)")
	create.Flags().String("team", "", "team that owns the channel (admin tokens only)")

	list := &cobra.Command{
		Use:   "list",
		Short: "List channels",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			api, v, err := apiFrom(cmd)
			if err != nil {
				return err
			}
			chans, err := api.ListChannels(cmd.Context())
			if err != nil {
				return err
			}
			if v.GetBool("json") {
				if chans == nil {
					chans = []client.Channel{}
				}
				return printJSON(cmd.OutOrStdout(), chans)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tURL\tAGENTS\tCREATED\tEXPIRES")
			for _, ch := range chans {
				exp := "-"
				if ch.ExpiresAt != nil {
					exp = ch.ExpiresAt.Format(time.RFC3339)
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", ch.ID, ch.URL, ch.Agents, ch.CreatedAt.Format(time.RFC3339), exp)
			}
			return tw.Flush()
		},
	}
	addClientFlags(list)
	list.Flags().Bool("json", false, "print JSON")

	del := &cobra.Command{
		Use:   "delete ID",
		Short: "Delete a channel with its events",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, _, err := apiFrom(cmd)
			if err != nil {
				return err
			}
			if err := api.DeleteChannel(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted channel %s\n", args[0])
			return nil
		},
	}
	addClientFlags(del)

	rotate := &cobra.Command{
		Use:   "rotate-key ID",
		Short: "Give a channel a new read key; the old one stops working at once",
		Long: `Give a channel a new read key and print it (shown once). The old key stops
working at once: agents, live streams and long-polls opened with it end.`,
		Example: `  hookrelay channel rotate-key my-app`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, v, err := apiFrom(cmd)
			if err != nil {
				return err
			}
			ch, err := api.RotateReadKey(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if v.GetBool("json") {
				return printJSON(cmd.OutOrStdout(), ch)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "channel %s\nread key %s (shown once; the old one no longer works)\n", ch.ID, ch.ReadKey)
			return nil
		},
	}
	addClientFlags(rotate)
	rotate.Flags().Bool("json", false, "print the channel, with its new read_key, as JSON")
	cmd.AddCommand(create, list, del, rotate, newChannelUpdateCmd())
	return cmd
}
