package app_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/app"
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
	code := app.Main("worker", []string{"-config", path}, &stderr, func(context.Context, *app.Env) error {
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
	code := app.Main("scheduler", nil, &stderr, func(context.Context, *app.Env) error { return nil })
	require.Equal(t, 2, code)
	require.Contains(t, stderr.String(), "TOKENRELAY_CONFIG")
}
