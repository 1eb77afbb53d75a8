package main

import (
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/hookrelay/hookrelay/internal/loadtest"
)

func newLoadCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "load",
		Short: "Measure a relay: webhook throughput and latency, memory per idle agent",
		Long: `Load tools for measuring a relay from the outside (docs/load.md has the recipes):

  hookrelay load target --listen 127.0.0.1:9000        a fast local target that answers 200
  hookrelay load send --url URL [--compare-url URL2]   webhooks at a fixed concurrency
  hookrelay load agents --server URL --token T         memory per idle connected agent`,
	}
	cmd.AddCommand(newLoadSendCmd(), newLoadAgentsCmd(), newLoadTargetCmd())
	return cmd
}

func newLoadSendCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "send --url URL",
		Short: "Post webhooks at a fixed concurrency; print req/s, latency percentiles and statuses",
		Long: `Post --requests webhooks (or for --duration) to --url from --concurrency senders,
each sending its next request when the last answer has been read, and print
requests per second, p50/p90/p99 latency and the count of each status.

With --compare-url, the same load then goes to the second URL and the ratio
first ÷ second is printed: point --url at a relay channel and --compare-url at
the target itself for "relay ÷ direct" figures.`,
		Example: `  hookrelay load send --url http://127.0.0.1:8080/h/CHANNEL --compare-url http://127.0.0.1:9000/ \
      --concurrency 32 --requests 20000 --size 1KiB`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f := cmd.Flags()
			url, _ := f.GetString("url")
			compare, _ := f.GetString("compare-url")
			sizeText, _ := f.GetString("size")
			size, err := parseSize(sizeText)
			if sizeText == "0" {
				size, err = 0, nil
			}
			if err != nil {
				return fmt.Errorf("--size: %w", err)
			}
			cfg := loadtest.SendConfig{URL: url, BodySize: int(size)}
			cfg.Method, _ = f.GetString("method")
			cfg.Concurrency, _ = f.GetInt("concurrency")
			cfg.Requests, _ = f.GetInt("requests")
			cfg.Duration, _ = f.GetDuration("duration")
			cfg.Timeout, _ = f.GetDuration("timeout")
			cfg.ContentType, _ = f.GetString("content-type")
			cfg.Warmup, _ = f.GetInt("warmup")
			if !f.Changed("warmup") {
				cfg.Warmup = 2 * cfg.Concurrency
			}
			if f.Changed("duration") && !f.Changed("requests") {
				cfg.Requests = 0 // the duration alone bounds the run
			}
			out := cmd.OutOrStdout()
			first, err := loadtest.Send(cmd.Context(), cfg)
			if first != nil {
				_ = first.WriteReport(out)
			}
			if err != nil || compare == "" {
				return err
			}
			cfg.URL = compare
			second, err := loadtest.Send(cmd.Context(), cfg)
			if second != nil {
				_ = second.WriteReport(out)
			}
			if err != nil {
				return err
			}
			return loadtest.Comparison{First: first, Second: second}.WriteReport(out)
		},
	}
	f := cmd.Flags()
	f.String("url", "", "URL to post to, e.g. a channel's ingress URL (required)")
	f.String("compare-url", "", "run the same load against this URL afterwards and print the ratio first ÷ second")
	f.Int("concurrency", 32, "senders at once")
	f.Int("requests", 10000, "requests in all (with --duration alone: no count limit)")
	f.Duration("duration", 0, "stop sending after this long (0: no time limit)")
	f.String("size", "1KiB", "body size: 0, 512B, 1KiB, 1MiB, ...")
	f.String("method", http.MethodPost, "HTTP method")
	f.String("content-type", "application/octet-stream", "Content-Type of each request")
	f.Duration("timeout", 30*time.Second, "per-request timeout")
	f.Int("warmup", 0, "requests sent first and not counted (default: twice --concurrency)")
	_ = cmd.MarkFlagRequired("url")
	return cmd
}

func newLoadAgentsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "agents --server URL --token T",
		Short: "Connect N idle agents and print the relay's memory per agent",
		Long: `Read the relay's /metrics, connect --count idle agents to --channel (each in a
group of its own, as N developers would be, or all in --group), wait until the
relay lists them all and a --settle time has passed (and, with --wait-gc, the
relay's next garbage collection), read /metrics again, and print the growth
per agent of process_resident_memory_bytes, go_memstats_heap_inuse_bytes,
go_memstats_stack_inuse_bytes and go_goroutines. The agents then disconnect
and the metrics are read a third time.

Without --channel a channel is created for the run and deleted at its end.
The tool raises its open-file limit when it may; the relay needs about
--count file descriptors too. Run the relay alone (no other agents or
traffic) for clean figures.`,
		Example: `  hookrelay load agents --server http://127.0.0.1:8080 --token hr_... --count 1000`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, err := newViper(cmd)
			if err != nil {
				return err
			}
			if v.GetString("token") == "" {
				return fmt.Errorf("no token: pass --token or set HOOKRELAY_TOKEN")
			}
			if v.GetString("ca_file") != "" || v.GetBool("insecure") {
				return fmt.Errorf("load agents does not take --ca-file or --insecure: run it against a relay on plain HTTP or with a public certificate")
			}
			res, err := loadtest.Agents(cmd.Context(), loadtest.AgentsConfig{
				Server:          v.GetString("server"),
				Token:           v.GetString("token"),
				Channel:         v.GetString("channel"),
				Group:           v.GetString("group"),
				Count:           v.GetInt("count"),
				DialConcurrency: v.GetInt("dial_concurrency"),
				Settle:          v.GetDuration("settle"),
				WaitGC:          v.GetBool("wait_gc"),
				Hold:            v.GetDuration("hold"),
				Timeout:         v.GetDuration("timeout"),
				Progress:        cmd.ErrOrStderr(),
			})
			if err != nil {
				return err
			}
			return res.WriteReport(cmd.OutOrStdout())
		},
	}
	addClientFlags(cmd)
	f := cmd.Flags()
	f.String("channel", "", "channel the agents subscribe to (default: a channel made for the run)")
	f.Int("count", 1000, "idle agents to connect")
	f.Int("dial-concurrency", 64, "handshakes in progress at once")
	f.String("group", "", "put every agent in this one group (default: a group per agent)")
	f.Duration("settle", 3*time.Second, "idle time before the metrics are read again")
	f.Bool("wait-gc", false, "then also wait for the relay's next garbage collection (up to 150s), for live-heap figures")
	f.Duration("hold", 0, "keep the agents connected this much longer after measuring")
	f.Duration("timeout", 2*time.Minute, "bound on connecting them all")
	return cmd
}

func newLoadTargetCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "target",
		Short: "Serve a fast local webhook target that answers every request",
		Long: `Serve HTTP on --listen, answering every request with --status after reading
its body (and waiting --delay): a target for "hookrelay connect --to" and for
"hookrelay load send --compare-url" that answers requests concurrently.`,
		Example: `  hookrelay load target --listen 127.0.0.1:9000`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f := cmd.Flags()
			listen, _ := f.GetString("listen")
			status, _ := f.GetInt("status")
			delay, _ := f.GetDuration("delay")
			if status < 100 || status > 999 {
				return fmt.Errorf("--status %d is not an HTTP status", status)
			}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("listen on %s: %w", listen, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "load target listening on http://%s (answers %d)\n", ln.Addr(), status)
			return loadtest.ServeTarget(cmd.Context(), ln, loadtest.TargetHandler(status, delay))
		},
	}
	f := cmd.Flags()
	f.String("listen", "127.0.0.1:9000", "address to listen on")
	f.Int("status", http.StatusOK, "status of every answer")
	f.Duration("delay", 0, "wait this long before answering (simulates a slower app)")
	return cmd
}
