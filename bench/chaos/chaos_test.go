package main

import (
	"bytes"
	"context"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestShortChaos is make chaos shortened for make test: fewer credentials,
// a minute of chaos with a SIGKILL every ~6 s, one Redis SIGKILL and a
// 10 s NATS stop, judged as the full run is.
func TestShortChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("a minute and a half of chaos; make chaos runs the full scenario")
	}
	for _, bin := range []string{"redis-server", natsServerPath()} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s is not installed", bin)
		}
	}
	o := fullScenario()
	o.Credentials = 24
	o.Duration = 60 * time.Second
	o.KillEvery = 6 * time.Second
	o.RedisKills = 1
	o.NATSDown = 10 * time.Second
	o.Consumers = 2
	o.ConsumerPause = 100 * time.Millisecond
	o.Settle = 90 * time.Second
	o.Dir = t.TempDir()
	var progress bytes.Buffer
	o.Out = &progress
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rep, err := run(ctx, o)
	require.NoError(t, err, "progress:\n%s", progress.String())
	var out bytes.Buffer
	printReport(&out, rep)
	t.Log("\n" + progress.String() + out.String())
	require.Empty(t, rep.violations())
	require.Equal(t, o.Credentials, rep.Verdict.Active)
	require.NotZero(t, rep.Kills["scheduler"]+rep.Kills["worker"], "the run killed nothing")
	require.Len(t, rep.RedisOutages, 1)
	require.NotZero(t, rep.NATSOutage)
	require.NotZero(t, rep.Consumers.VendorChecks, "no token was used at the vendor")
}
