package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/internal/app"
	"github.com/tokenrelay/tokenrelay/internal/buildinfo"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
)

func TestMainRefusesBadConfigNamingTheField(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "tokenrelay.yaml")
	require.NoError(t, os.WriteFile(path, []byte(`
vendors:
  halaxy-au:
    kind: halaxy
    user_agent: "Acme Sync (ops@acme.example)"
    max_token_lifetime: 15x
credentials:
  - {id: clinic-42, vendor: nope, client_id: a, client_secret: b}
`), 0o600))
	var stderr bytes.Buffer
	ran := false
	code := app.Main("worker", []string{"-config", path}, io.Discard, &stderr, func(context.Context, *app.Env) error {
		ran = true
		return nil
	})
	require.Equal(t, 2, code)
	require.False(t, ran, "a refused configuration must not start the role")
	out := stderr.String()
	require.Contains(t, out, "vendors.halaxy-au.max_token_lifetime")
	require.Contains(t, out, "credentials[0].vendor")
}

func TestMainWithoutConfigSaysHow(t *testing.T) {
	t.Parallel()
	if _, set := os.LookupEnv("TOKENRELAY_CONFIG"); set {
		t.Skip("TOKENRELAY_CONFIG is set in this environment")
	}
	var stderr bytes.Buffer
	code := app.Main("scheduler", nil, io.Discard, &stderr, func(context.Context, *app.Env) error { return nil })
	require.Equal(t, 2, code)
	require.Contains(t, stderr.String(), "TOKENRELAY_CONFIG")
}

// TestMainLogsRedisTroubleAsLogLines: with Redis unreachable the process
// says so and exits 1, and go-redis's own messages come as JSON log lines
// like every other, not as bare text on stderr.
func TestMainLogsRedisTroubleAsLogLines(t *testing.T) {
	t.Setenv("TOKENRELAY_SECRET_KEY", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")
	path := filepath.Join(t.TempDir(), "tokenrelay.yaml")
	require.NoError(t, os.WriteFile(path, []byte(`redis: {url: "redis://127.0.0.1:1/0"}`+"\n"), 0o600))
	stderr := &testenv.Buffer{}
	code := app.Main("worker", []string{"-config", path}, io.Discard, stderr, func(context.Context, *app.Env) error { return nil })
	require.Equal(t, 1, code)
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	require.NotEmpty(t, lines)
	sawRedis := false
	for _, l := range lines {
		var entry map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &entry), "not a JSON log line: %s", l)
		sawRedis = sawRedis || entry["component"] == "go-redis"
	}
	require.True(t, sawRedis, "go-redis's messages should be among the log lines:\n%s", stderr.String())
	require.Contains(t, stderr.String(), "cannot start")
}

// TestMainVersion: -version prints the build to stdout and exits 0, before
// and without any configuration (none is given, and a broken one is named
// in TOKENRELAY_CONFIG) and without starting the role.
func TestMainVersion(t *testing.T) {
	t.Setenv("TOKENRELAY_CONFIG", filepath.Join(t.TempDir(), "missing.yaml"))
	for _, name := range []string{"worker", "scheduler"} {
		var stdout, stderr bytes.Buffer
		code := app.Main(name, []string{"-version"}, &stdout, &stderr, func(context.Context, *app.Env) error {
			t.Errorf("%s -version started the role", name)
			return nil
		})
		require.Equal(t, 0, code, stderr.String())
		require.Equal(t, buildinfo.Read().String()+"\n", stdout.String())
		require.Empty(t, stderr.String())
	}
}
