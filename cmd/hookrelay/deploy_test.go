package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// TestDeployFiles checks the files in deploy/ against the binary: every
// HOOKRELAY_* variable they set is a key `hookrelay server` reads (a
// renamed flag would otherwise leave a deployment silently on a default),
// and every YAML document parses.
func TestDeployFiles(t *testing.T) {
	t.Parallel()
	keys := map[string]bool{}
	newServerCmd().Flags().VisitAll(func(f *pflag.Flag) {
		keys["HOOKRELAY_"+strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))] = true
	})
	files, err := filepath.Glob("../../deploy/*")
	if err != nil || len(files) == 0 {
		t.Fatalf("no deploy files (%v)", err)
	}
	envVar := regexp.MustCompile(`HOOKRELAY_[A-Z_]+`)
	for _, path := range files {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range envVar.FindAllString(string(b), -1) {
			if !keys[name] {
				t.Errorf("%s sets %s, which hookrelay server does not read", path, name)
			}
		}
		if ext := filepath.Ext(path); ext == ".yml" || ext == ".yaml" {
			dec := yaml.NewDecoder(bytes.NewReader(b))
			for n := 0; ; n++ {
				var doc any
				if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
					break
				} else if err != nil {
					t.Errorf("%s: document %d: %v", path, n+1, err)
					break
				}
			}
		}
	}
}
