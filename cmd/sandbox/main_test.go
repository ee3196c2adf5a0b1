package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/internal/buildinfo"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
)

func TestParseFlags(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "clients.txt")
	require.NoError(t, os.WriteFile(file, []byte("# clinics\nc1:s1\n\n  c2:s2:with:colons  \n"), 0o600))
	bad := filepath.Join(dir, "bad.txt")
	require.NoError(t, os.WriteFile(bad, []byte("c1:s1\nnosecret\n"), 0o600))

	cfg, err := parseFlags(nil, &bytes.Buffer{})
	require.NoError(t, err)
	require.Equal(t, config{addr: "127.0.0.1:8090", tokenLifetime: 15 * time.Minute,
		claimedExpiresIn: time.Hour, level: zerolog.InfoLevel}, cfg)

	cfg, err = parseFlags([]string{"-addr", ":0", "-token-lifetime", "5m", "-claimed-expires-in", "0s",
		"-client", "a:b", "-clients", file, "-client", "x:y", "-log-level", "debug"}, &bytes.Buffer{})
	require.NoError(t, err)
	require.Equal(t, config{addr: ":0", tokenLifetime: 5 * time.Minute, level: zerolog.DebugLevel,
		clients: []client{{"a", "b"}, {"c1", "s1"}, {"c2", "s2:with:colons"}, {"x", "y"}}}, cfg)

	for _, args := range [][]string{
		{"-client", "nosecret"},
		{"-client", ":s"},
		{"-clients", bad},
		{"-clients", filepath.Join(dir, "missing.txt")},
		{"-token-lifetime", "0s"},
		{"-token-lifetime", "soon"},
		{"-log-level", "loud"},
		{"extra"},
	} {
		_, err := parseFlags(args, &bytes.Buffer{})
		require.Error(t, err, "%q", args)
	}
	_, err = parseFlags([]string{"-clients", bad}, &bytes.Buffer{})
	require.ErrorContains(t, err, "bad.txt:2")
}

// TestRunVersion: -version prints the build and returns without serving.
func TestRunVersion(t *testing.T) {
	t.Parallel()
	var stdout, logs bytes.Buffer
	require.NoError(t, run(t.Context(), []string{"-version"}, &stdout, &logs))
	require.Equal(t, buildinfo.Read().String()+"\n", stdout.String())
	require.Empty(t, logs.String(), "nothing served, nothing logged")
}

func TestRun(t *testing.T) {
	t.Parallel()
	logs := &testenv.Buffer{} // the test reads it while the server writes
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-addr", "127.0.0.1:0", "-client", "c1:" + "topsecret"}, io.Discard, logs)
	}()

	// Wait for the listening line and read the address from it.
	var addr string
	require.Eventually(t, func() bool {
		for line := range bytes.SplitSeq([]byte(logs.String()), []byte("\n")) {
			var entry struct {
				Message string `json:"message"`
				Addr    string `json:"addr"`
			}
			if json.Unmarshal(line, &entry) == nil && entry.Message == "sandbox listening" {
				addr = entry.Addr
				return true
			}
		}
		return false
	}, 5*time.Second, 5*time.Millisecond)

	resp, err := testenv.HTTPClient().Get("http://" + addr + "/_sandbox/clients")
	require.NoError(t, err)
	var ids []string
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&ids))
	resp.Body.Close()
	require.Equal(t, []string{"c1"}, ids)

	cancel()
	require.NoError(t, <-done)
	require.Contains(t, logs.String(), "sandbox stopped")
	require.NotContains(t, logs.String(), "topsecret")
}
