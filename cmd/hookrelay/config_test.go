package main

import (
	"github.com/spf13/cobra"
	"os"
	"path/filepath"
	"testing"
)

// TestConfigPrecedence checks that a flag wins over HOOKRELAY_* variables,
// which win over the YAML file.
func TestConfigPrecedence(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(cfg, []byte("listen: \":1111\"\nmax_body: 5MiB\nresponse_timeout: 3s\npublic_url: https://file.example\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOOKRELAY_MAX_BODY", "7MiB")
	t.Setenv("HOOKRELAY_RESPONSE_TIMEOUT", "4s")
	cmd := newServerCmd()
	if err := cmd.ParseFlags([]string{"--config", cfg, "--response-timeout", "9s"}); err != nil {
		t.Fatal(err)
	}
	v, err := newViper(cmd)
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{
		"listen":           ":1111",                // file only
		"public_url":       "https://file.example", // file only
		"max_body":         "7MiB",                 // env over file
		"response_timeout": "9s",                   // flag over env and file
		"data_dir":         "./hookrelay-data",     // default
	} {
		if got := v.GetString(key); got != want {
			t.Errorf("%s = %q, want %q", key, got, want)
		}
	}
	if _, err := newViper(mustParse(t, "--config", filepath.Join(t.TempDir(), "missing.yaml"))); err == nil {
		t.Error("a missing config file was not an error")
	}
}

func mustParse(t *testing.T, args ...string) *cobra.Command {
	cmd := newServerCmd()
	if err := cmd.ParseFlags(args); err != nil {
		t.Fatal(err)
	}
	return cmd
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"25MiB": 25 << 20, "10MB": 10_000_000, "512KiB": 512 << 10, "1048576": 1 << 20, "2GiB": 2 << 30, "3 mib": 3 << 20} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "lots", "-1", "0", "5XB"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) accepted", in)
		}
	}
}
