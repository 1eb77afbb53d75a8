package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
	"golang.org/x/term"

	"github.com/hookrelay/hookrelay/client"
)

func newLoginCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "login --server URL",
		Short: "Check a token with the relay and save it in your config file",
		Long: `Ask for a token (without echo; or read it from standard input when that is not a
terminal), check it against the relay, and save server and token in your
config file (~/.config/hookrelay/config.yaml, or $XDG_CONFIG_HOME/hookrelay/,
or --config) with mode 0600, keeping what else the file holds. Later commands
(connect, channel, events, capture, doctor) read them from there. --ca-file,
when given, is saved too.`,
		Example: `  hookrelay login --server https://relay.example.com
  printf '%s\n' "$RELAY_TOKEN" | hookrelay login --server https://relay.example.com`,
		Args: cobra.NoArgs,
		RunE: runLogin,
	}
	f := cmd.Flags()
	f.String("config", "", "config file to write (default ~/.config/hookrelay/config.yaml)")
	f.String("server", "", "relay base URL (default: the one in the config file)")
	f.String("ca-file", "", "PEM file of the relay's private CA; saved with the token")
	f.Bool("insecure", false, "do not check the relay's TLS certificate (test relays only; not saved)")
	return cmd
}

func newLogoutCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "logout",
		Short: "Remove the saved token from your config file",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path, err := configToWrite(cmd)
			if err != nil {
				return err
			}
			if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
				fmt.Fprintf(cmd.OutOrStdout(), "not logged in: %s does not exist\n", path)
				return nil
			}
			removed, err := updateConfigFile(path, nil, []string{"token"})
			if err != nil {
				return err
			}
			if !removed {
				fmt.Fprintf(cmd.OutOrStdout(), "not logged in: %s holds no token\n", path)
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "removed the token from %s\n", path)
			return nil
		},
	}
	cmd.Flags().String("config", "", "config file (default ~/.config/hookrelay/config.yaml)")
	return cmd
}

// configToWrite is the config file login and logout change: --config, or
// the user's config file whether it exists or not.
func configToWrite(cmd *cobra.Command) (string, error) {
	if p, _ := cmd.Flags().GetString("config"); p != "" {
		return p, nil
	}
	return clientConfigPath()
}

func runLogin(cmd *cobra.Command, _ []string) error {
	path, err := configToWrite(cmd)
	if err != nil {
		return err
	}
	// Read the server the file holds, if --server is not given; a file that
	// does not exist yet is not an error: login creates it.
	switch _, err := os.Stat(path); {
	case err == nil:
		_ = cmd.Flags().Set("config", path)
	case errors.Is(err, os.ErrNotExist):
		_ = cmd.Flags().Set("config", "")
	default:
		return fmt.Errorf("config file %s: %w", path, err)
	}
	v, err := newViper(cmd)
	if err != nil {
		return err
	}
	server := strings.TrimRight(v.GetString("server"), "/")
	if server == "" {
		return usageError(errors.New("--server is required: the relay's URL, e.g. --server https://relay.example.com"))
	}
	token, err := readToken(cmd, server)
	if err != nil {
		return err
	}
	api := client.NewAPI(server, token)
	tlsConfig, proxy, err := relayAccess(cmd, v)
	if err != nil {
		return err
	}
	api.HTTP = client.RelayHTTPClient(tlsConfig, proxy, api.HTTP.Timeout)
	channels, err := api.ListChannels(cmd.Context())
	if client.IsStatus(err, http.StatusUnauthorized) {
		return fmt.Errorf("the relay at %s rejected the token; nothing was saved", server)
	}
	if err != nil {
		return fmt.Errorf("check the token: %w; nothing was saved", err)
	}
	set := map[string]string{"server": server, "token": token}
	if ca := v.GetString("ca_file"); ca != "" {
		if abs, err := filepath.Abs(ca); err == nil {
			ca = abs
		}
		set["ca_file"] = ca
	}
	if _, err := updateConfigFile(path, set, nil); err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "logged in to %s: the token is valid and sees %d channel(s)\n", server, len(channels))
	fmt.Fprintf(out, "saved server and token to %s (mode 0600)\n", path)
	return nil
}

// readToken asks for the token on the terminal without echo, or reads the
// first line of standard input.
func readToken(cmd *cobra.Command, server string) (string, error) {
	in := cmd.InOrStdin()
	var token string
	if f, ok := in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprintf(cmd.ErrOrStderr(), "token for %s (not shown): ", server)
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(cmd.ErrOrStderr())
		if err != nil {
			return "", fmt.Errorf("read the token: %w", err)
		}
		token = string(b)
	} else {
		line, err := bufio.NewReader(io.LimitReader(in, 64<<10)).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("read the token from standard input: %w", err)
		}
		token = line
	}
	token = strings.TrimSpace(token)
	if token == "" {
		return "", usageError(errors.New("no token given: type it at the prompt or pipe it in"))
	}
	return token, nil
}

// updateConfigFile sets and removes top-level keys of a YAML config file,
// keeping its other keys and comments, and writes it with mode 0600 (its
// directory 0700). It reports whether a key was removed.
func updateConfigFile(path string, set map[string]string, remove []string) (bool, error) {
	var doc yaml.Node
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		if err := yaml.Unmarshal(data, &doc); err != nil {
			return false, fmt.Errorf("read %s: %w", path, err)
		}
	case !errors.Is(err, os.ErrNotExist):
		return false, err
	}
	if doc.Kind == 0 {
		doc = yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{{Kind: yaml.MappingNode, Tag: "!!map"}}}
	}
	m := doc.Content[0]
	if m.Kind != yaml.MappingNode {
		return false, fmt.Errorf("%s is not a YAML mapping of keys to values", path)
	}
	removed := false
	for i := 0; i+1 < len(m.Content); {
		if slices.Contains(remove, m.Content[i].Value) {
			m.Content = slices.Delete(m.Content, i, i+2)
			removed = true
			continue
		}
		i += 2
	}
	keys := make([]string, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, key := range keys {
		value := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: set[key]}
		found := false
		for i := 0; i+1 < len(m.Content); i += 2 {
			if m.Content[i].Value == key {
				m.Content[i+1], found = value, true
			}
		}
		if !found {
			m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key}, value)
		}
	}
	out, err := yaml.Marshal(&doc)
	if err != nil {
		return false, err
	}
	return removed, writePrivate(path, out)
}

// writePrivate replaces path with data, readable by its owner only.
func writePrivate(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".config-*.yaml")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a successful rename there is nothing to remove
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	return nil
}
