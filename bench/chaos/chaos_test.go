package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// binaries builds the binaries once for every test of the package.
var binaries = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "tokenrelay-chaos-bin-")
	if err != nil {
		return "", err
	}
	return dir, buildBinaries(context.Background(), dir)
})

func TestMain(m *testing.M) {
	code := m.Run()
	if dir, err := binaries(); err == nil && dir != "" {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

// needProcesses skips a test under -short or without redis-server and
// nats-server, and returns the built binaries.
func needProcesses(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("runs the real binaries for a minute or more; make chaos runs the full scenarios")
	}
	for _, bin := range []string{"redis-server", natsServerPath()} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s is not installed", bin)
		}
	}
	dir, err := binaries()
	require.NoError(t, err)
	return dir
}

// TestShortChaos is make chaos shortened for make test: fewer credentials,
// 45 s of chaos with a SIGKILL every ~6 s, one Redis SIGKILL and a
// 10 s NATS stop, judged as the full run is.
func TestShortChaos(t *testing.T) {
	o := fullScenario()
	o.Bin = needProcesses(t)
	o.Credentials = 24
	o.Duration = 45 * time.Second
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

// TestRotationCrash (issue 12, point 5): a HealthSync API-key rotation
// whose worker is SIGKILLed while it creates the new key, then the next one
// while it verifies it, then the next while it revokes the old one (each
// time the vendor completes the call and the answer is lost) is carried on
// by another worker within a minute of each kill and completed: one live
// key at the vendor, the credential's, one key.rotated and one key.revoked.
// The hold is 10 s here to keep the test short; make chaos runs it with
// the default 30 s.
func TestRotationCrash(t *testing.T) {
	o := fullScenario()
	o.Bin = needProcesses(t)
	o.TokenLifetime = time.Hour
	o.Dir = t.TempDir()
	var progress bytes.Buffer
	o.Out = &progress
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rep, err := rotationCrash(ctx, o, rotationOptions{Hold: 10 * time.Second,
		KillAt: []string{stepCreate, stepVerify, stepRevoke}, Resume: time.Minute})
	require.NoError(t, err, "progress:\n%s", progress.String())
	var out bytes.Buffer
	printRotationReport(&out, rep)
	t.Log("\n" + progress.String() + out.String())
	require.Empty(t, rep.Violations)
	require.Len(t, rep.Kills, 3)
	require.Len(t, rep.Resumed, 3)
}
