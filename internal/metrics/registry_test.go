package metrics_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/internal/buildinfo"
	"github.com/tokenrelay/tokenrelay/internal/metrics"
	"github.com/tokenrelay/tokenrelay/internal/metrics/metricstest"
)

// TestRegistryServesBuildInfo: every registry from NewRegistry (the
// worker's and the scheduler's) serves tokenrelay_build_info 1, labelled
// with this binary's build.
func TestRegistryServesBuildInfo(t *testing.T) {
	t.Parallel()
	bi := buildinfo.Read()
	sc := metricstest.Serve(t, metrics.Handler(metrics.NewRegistry()))
	require.Equal(t, 1.0, sc.Value(t, "tokenrelay_build_info", "version", bi.Version, "commit", bi.Commit, "goversion", bi.GoVersion))
}
