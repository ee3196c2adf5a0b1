package adminclient_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestLinksNoServer: the admin API's client links none of tokenrelay's
// internal packages (the admin server, the store, rotation, request jobs):
// it owns the API's JSON, and the server imports it.
func TestLinksNoServer(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	require.NoError(t, err, "%s", out)
	for _, pkg := range strings.Fields(string(out)) {
		require.NotContains(t, pkg, "github.com/tokenrelay/tokenrelay/internal/", "adminclient links a server package")
		require.NotEqual(t, "github.com/tokenrelay/tokenrelay/jobs", pkg, "adminclient links the worker's job handlers")
	}
}
