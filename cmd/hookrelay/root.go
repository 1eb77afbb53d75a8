package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "hookrelay",
		Short: "Relay webhooks from the internet to your machine, byte for byte",
		Long: `hookrelay receives webhooks on public channel URLs and forwards them over a
WebSocket tunnel to an agent on your machine, which replays them to localhost
and returns your app's response to the sender.

  hookrelay server                                  run a relay
  hookrelay login --server URL                      save the relay and your token
  hookrelay listen 3000                             a channel for this session, forwarded to localhost:3000
  hookrelay trigger github push --channel CHANNEL   send a signed sample event (trigger --list)
  hookrelay channel create                          make a channel (prints its URL)
  hookrelay connect CHANNEL --to http://localhost:3000/webhooks
  hookrelay events list CHANNEL                     look back; events replay ID to send one again (edited: --header, --body-file)
  hookrelay capture CHANNEL --count 1 --timeout 2m  wait for webhooks in CI (exit 3 on timeout)
  hookrelay replay FILE --to URL                    resend an event saved with connect --save
  hookrelay doctor                                  check config, relay, token, clock, tunnel, targets`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newServerCmd(), newListenCmd(), newTriggerCmd(), newConnectCmd(), newChannelCmd(), newEventsCmd(),
		newCaptureCmd(), newReplayCmd(), newTeamCmd(), newTokenCmd(), newLoadCmd(), newVersionCmd(),
		newLoginCmd(), newLogoutCmd(), newDoctorCmd())
	return root
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "hookrelay", version)
		},
	}
}

// newViper reads configuration for one command: flags first, then
// HOOKRELAY_* environment variables, then the YAML file named by --config.
// Keys use underscores (max_body); flags use dashes (--max-body).
func newViper(cmd *cobra.Command) (*viper.Viper, error) {
	v := viper.New()
	v.SetEnvPrefix("HOOKRELAY")
	v.SetEnvKeyReplacer(strings.NewReplacer("-", "_"))
	v.AutomaticEnv()
	var bindErr error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Name == "config" || f.Name == "help" {
			return
		}
		key := strings.ReplaceAll(f.Name, "-", "_")
		if err := v.BindPFlag(key, f); err != nil {
			bindErr = err
		}
	})
	if bindErr != nil {
		return nil, bindErr
	}
	if f := cmd.Flags().Lookup("config"); f != nil && f.Value.String() != "" {
		v.SetConfigFile(f.Value.String())
		v.SetConfigType("yaml")
		if err := v.ReadInConfig(); err != nil {
			return nil, fmt.Errorf("read config %s: %w", f.Value.String(), err)
		}
	}
	return v, nil
}

// parseSize reads a byte size like 25MiB, 10MB, 512KiB or 1048576.
func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(strings.ToUpper(s), strings.ToUpper(u.suffix)) {
			s, mult = strings.TrimSpace(s[:len(s)-len(u.suffix)]), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("size %q is not a positive number of bytes like 25MiB", s)
	}
	return n * mult, nil
}
