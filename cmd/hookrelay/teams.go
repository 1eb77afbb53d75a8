package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/hookrelay/hookrelay/client"
)

func newTeamCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "team", Short: "Create and list teams (teams own channels and tokens)"}
	create := &cobra.Command{
		Use:     "create NAME",
		Short:   "Create a team (relay admin token)",
		Example: "  hookrelay team create payments --json",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, v, err := apiFrom(cmd)
			if err != nil {
				return err
			}
			t, err := api.CreateTeam(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if v.GetBool("json") {
				return printJSON(cmd.OutOrStdout(), t)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "team %s (id %s)\n", t.Name, t.ID)
			return nil
		},
	}
	addClientFlags(create)
	create.Flags().Bool("json", false, "print JSON")
	list := &cobra.Command{
		Use:   "list",
		Short: "List teams",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			api, v, err := apiFrom(cmd)
			if err != nil {
				return err
			}
			teams, err := api.ListTeams(cmd.Context())
			if err != nil {
				return err
			}
			if v.GetBool("json") {
				if teams == nil {
					teams = []client.Team{}
				}
				return printJSON(cmd.OutOrStdout(), teams)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tNAME\tCREATED")
			for _, t := range teams {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", t.ID, t.Name, t.CreatedAt.Format(time.RFC3339))
			}
			return tw.Flush()
		},
	}
	addClientFlags(list)
	list.Flags().Bool("json", false, "print JSON")
	cmd.AddCommand(create, list)
	return cmd
}

func newTokenCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Create, list and revoke API tokens"}
	create := &cobra.Command{
		Use:   "create --team T [--role admin|member|agent] [--expires D]",
		Short: "Create a token; its secret is shown once",
		Example: `  hookrelay token create --team payments --role agent --expires 720h
  hookrelay token create --team payments --json | jq -r .token`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			api, v, err := apiFrom(cmd)
			if err != nil {
				return err
			}
			in := client.CreateToken{Team: v.GetString("team"), Role: v.GetString("role"), Name: v.GetString("name")}
			if d := v.GetDuration("expires"); d > 0 {
				in.Expires = d.String()
			}
			t, err := api.CreateToken(cmd.Context(), in)
			if err != nil {
				return err
			}
			if v.GetBool("json") {
				return printJSON(cmd.OutOrStdout(), t)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "token %s (id %s, role %s, team %s) — shown only now\n", t.Token, t.ID, t.Role, t.TeamID)
			return nil
		},
	}
	addClientFlags(create)
	cf := create.Flags()
	cf.String("team", "", "team the token belongs to (name or id)")
	cf.String("role", "member", "admin (manages the team), member (reads, replays, connects, manages channels) or agent (connects and reads)")
	cf.String("name", "", "a note saying what the token is for")
	cf.Duration("expires", 0, "expire after this long (e.g. 720h); 0: never")
	cf.Bool("json", false, "print JSON (the secret in the token field)")

	list := &cobra.Command{
		Use:   "list",
		Short: "List tokens (never their secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			api, v, err := apiFrom(cmd)
			if err != nil {
				return err
			}
			toks, err := api.ListTokens(cmd.Context(), v.GetString("team"))
			if err != nil {
				return err
			}
			if v.GetBool("json") {
				if toks == nil {
					toks = []client.Token{}
				}
				return printJSON(cmd.OutOrStdout(), toks)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tTEAM\tROLE\tNAME\tLAST USED\tEXPIRES\tREVOKED")
			for _, t := range toks {
				used, exp := "-", "-"
				if t.LastUsedAt != nil {
					used = t.LastUsedAt.Format(time.RFC3339)
				}
				if t.ExpiresAt != nil {
					exp = t.ExpiresAt.Format(time.RFC3339)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%v\n", t.ID, t.TeamID, t.Role, t.Name, used, exp, t.Revoked)
			}
			return tw.Flush()
		},
	}
	addClientFlags(list)
	list.Flags().String("team", "", "only this team's tokens")
	list.Flags().Bool("json", false, "print JSON")

	revoke := &cobra.Command{
		Use:   "revoke TOKEN_ID",
		Short: "Revoke a token; its live tunnels close within seconds",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, _, err := apiFrom(cmd)
			if err != nil {
				return err
			}
			if err := api.RevokeToken(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revoked %s\n", args[0])
			return nil
		},
	}
	addClientFlags(revoke)
	cmd.AddCommand(create, list, revoke)
	return cmd
}

func newChannelUpdateCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "update ID",
		Short: "Change a channel's settings: sender verification, allowed sources, rate limit, async",
		Example: `  hookrelay channel update my-app --verify github --secret "$GITHUB_WEBHOOK_SECRET"
  hookrelay channel update my-app --verify stripe --secret whsec_...
  hookrelay channel update my-app --verify hmac --secret s3cret --header X-Signature
  hookrelay channel update my-app --allow-cidr 192.30.252.0/22 --allow-cidr 185.199.108.0/22
  hookrelay channel update my-app --verify none`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, _, err := apiFrom(cmd)
			if err != nil {
				return err
			}
			f := cmd.Flags()
			var in client.UpdateChannel
			if f.Changed("verify") {
				s, _ := f.GetString("verify")
				in.Verify = &s
			}
			if f.Changed("secret") {
				s, _ := f.GetString("secret")
				in.Secret = &s
			}
			if f.Changed("header") {
				s, _ := f.GetString("header")
				in.Header = &s
			}
			if f.Changed("allow-cidr") || f.Changed("allow-any-source") {
				c, _ := f.GetStringSlice("allow-cidr")
				if any, _ := f.GetBool("allow-any-source"); any {
					c = []string{}
				}
				in.AllowCIDRs = &c
			}
			if f.Changed("rate-limit") {
				r, _ := f.GetFloat64("rate-limit")
				in.RateLimit = &r
			}
			if f.Changed("async") {
				a, _ := f.GetBool("async")
				in.Async = &a
			}
			ch, err := api.UpdateChannel(cmd.Context(), args[0], in)
			if err != nil {
				return err
			}
			if j, _ := f.GetBool("json"); j {
				return printJSON(cmd.OutOrStdout(), ch)
			}
			verify := ch.Verify
			if verify == "" {
				verify = "none"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "channel %s: verify %s, allowed sources %v, rate limit %g/s, async %v\n",
				ch.ID, verify, ch.AllowCIDR, ch.RateLimit, ch.Async)
			return nil
		},
	}
	addClientFlags(cmd)
	f := cmd.Flags()
	f.String("verify", "", "github, stripe, slack, standard-webhooks, hmac, or none")
	f.String("secret", "", "the provider's signing secret")
	f.String("header", "", "for --verify hmac: the header with the signature (default X-Signature)")
	f.StringSlice("allow-cidr", nil, "source ranges allowed to post (repeat or comma-separate)")
	f.Bool("allow-any-source", false, "clear the allowed source ranges")
	f.Float64("rate-limit", 0, "webhooks per second for this channel (0: relay default)")
	f.Bool("async", false, "always answer senders 202 at once")
	f.Bool("json", false, "print JSON")
	return cmd
}
