package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokenrelay/tokenrelay/config"
)

// FuzzParse checks that no file makes Parse panic, that no error shows a
// secret from the environment (a YAML syntax error may quote the file's
// own text, so only values the file does not hold count), and that every
// vendor of a file Parse accepts builds its adapter.
func FuzzParse(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	env := baseEnv()
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := config.Parse(data, lookup(env))
		if err != nil {
			for _, v := range env {
				if strings.Contains(err.Error(), v) && !strings.Contains(string(data), v) {
					t.Fatalf("error shows a secret: %v", err)
				}
			}
			return
		}
		for name, v := range cfg.Vendors {
			if v.Name != name || (v.BaseURL != "" && !strings.HasSuffix(v.BaseURL, "/")) {
				t.Fatalf("vendor %q: %+v", name, v)
			}
			if _, err := v.NewAdapter(nil); err != nil {
				t.Fatalf("vendor %q passed validation, but its adapter refuses it: %v", name, err)
			}
		}
	})
}
