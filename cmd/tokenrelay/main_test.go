package main

import (
	"bytes"
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
