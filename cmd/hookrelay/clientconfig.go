package main

import (
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/hookrelay/hookrelay/client"
)

// addClientFlags adds the flags every client-side command takes.
func addClientFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.String("config", defaultClientConfig(), "YAML config file (keys: server, token, ...; default ~/.config/hookrelay/config.yaml)")
	f.String("server", "http://localhost:8080", "relay base URL")
	f.String("token", "", "API token (or HOOKRELAY_TOKEN)")
	f.String("ca-file", "", "PEM file of the CA that signed the relay's certificate (a private CA), added to the system's")
	f.Bool("insecure", false, "do not check the relay's TLS certificate (test relays only: anyone on the path can then read your webhooks)")
}

// clientConfigPath is the user's config file: config.yaml in
// $XDG_CONFIG_HOME/hookrelay, or in ~/.config/hookrelay.
func clientConfigPath() (string, error) {
	dir := os.Getenv("XDG_CONFIG_HOME")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("find the config directory: %w (set XDG_CONFIG_HOME or --config)", err)
		}
		dir = filepath.Join(home, ".config")
	}
	return filepath.Join(dir, "hookrelay", "config.yaml"), nil
}

// defaultClientConfig is the user's config file when it exists, else "".
func defaultClientConfig() string {
	p, err := clientConfigPath()
	if err != nil {
		return ""
	}
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

// relayAccess returns how to reach the relay: TLS with the system's roots
// and ca_file, or without checks when insecure is set (with a warning on
// standard error), and the proxy of the environment.
func relayAccess(cmd *cobra.Command, v *viper.Viper) (*tls.Config, client.ProxyFunc, error) {
	tlsConfig, err := client.RelayTLSConfig(v.GetString("ca_file"), v.GetBool("insecure"))
	if err != nil {
		return nil, nil, err
	}
	if v.GetBool("insecure") {
		fmt.Fprintln(cmd.ErrOrStderr(), "hookrelay: warning: --insecure: the relay's TLS certificate is not checked; "+
			"anyone on the path can read and change your webhooks and your token. Use --ca-file for a private CA instead.")
	}
	return tlsConfig, client.ProxyFromEnvironment(), nil
}
