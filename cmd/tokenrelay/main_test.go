package main

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/internal/buildinfo"
)

// TestVersion: "tokenrelay version" and "tokenrelay -version" print the
// build to stdout and exit 0; the usage names the command.
func TestVersion(t *testing.T) {
	t.Parallel()
	for _, arg := range []string{"version", "-version", "--version"} {
		var stdout, stderr bytes.Buffer
		require.Equal(t, 0, run([]string{arg}, &stdout, &stderr), arg)
		require.Equal(t, buildinfo.Read().String()+"\n", stdout.String(), arg)
		require.Empty(t, stderr.String(), arg)
	}
	var stderr bytes.Buffer
	require.Equal(t, 2, run(nil, &bytes.Buffer{}, &stderr))
	require.Contains(t, stderr.String(), "tokenrelay version")
}

// TestDevModeIsNotHere: "tokenrelay dev" points to the dev mode's own
// command, and the operator CLI links none of it (the embedded Redis and
// NATS servers, the sandbox).
func TestDevModeIsNotHere(t *testing.T) {
	t.Parallel()
	var stderr bytes.Buffer
	require.Equal(t, 2, run([]string{"dev"}, &bytes.Buffer{}, &stderr))
	require.Contains(t, stderr.String(), "make run")

	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	require.NoError(t, err, "%s", out)
	for _, pkg := range strings.Fields(string(out)) {
		for _, banned := range []string{"/internal/devmode", "/vendors/sandbox", "github.com/alicebob/miniredis", "github.com/nats-io/nats-server"} {
			require.NotContains(t, pkg, banned, "the operator CLI links the dev mode")
		}
	}
}
