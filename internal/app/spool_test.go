package app_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/internal/testenv"
	"github.com/tokenrelay/tokenrelay/vendors/sandbox"
)

// TestWorkerStoppedDuringARedisOutageSpoolsTheToken stops a worker while
// the token a vendor has just issued waits for Redis: the worker spools it,
// and the next worker stores it when it starts, so that the renewal costs
// one token call, not two.
func TestWorkerStoppedDuringARedisOutageSpoolsTheToken(t *testing.T) {
	if testing.Short() {
		t.Skip("integration run with a Redis outage")
	}
	t.Parallel()
	rs := testenv.StartRedisServer(t)
	// A lifetime long enough for the spooled token to outlive what follows
	// its issue (the vendor's second, the outage, two worker stops and a
	// start): an expired one is abandoned, not stored, by design.
	p := newPipelineOn(t, rs.URL(), 1, 10*time.Second, "")
	client := p.cfg.Credentials[0].ClientID
	// Each token answer takes a second: time to take Redis away meanwhile.
	require.NoError(t, p.sandbox.Inject(sandbox.Fault{ClientID: client, Kind: sandbox.FaultLatency, Latency: time.Second}))
	sched := p.scheduler()
	work := p.worker()
	p.waitGenerations(1, 30*time.Second)

	calls := p.sandbox.TokenCalls(client)
	require.Eventually(t, func() bool { return p.sandbox.TokenCalls(client) > calls }, 30*time.Second, 10*time.Millisecond,
		"the next renewal should call the vendor")
	rs.Kill() // while the vendor answers
	require.Eventually(t, func() bool {
		return strings.Contains(p.logs.String(), "store unreachable with an issued token; retrying its commit")
	}, 30*time.Second, 10*time.Millisecond, "the worker should hold the issued token, waiting for Redis")
	work.stop(t)
	spooled, err := os.ReadDir(p.cfg.Worker.SpoolDir)
	require.NoError(t, err)
	require.Len(t, spooled, 1, "the stopped worker should have spooled the token")

	rs.Start()
	// No further renewal from here: the spooled token is the one to see
	// committed, and a renewal of it that the stop below catches in flight
	// (its token answer takes a second) would be one more call that is no
	// part of this.
	sched.stop(t)
	// Read before the next worker starts: it commits the spooled token as
	// it starts, so this generation's successor is the spooled one, and no
	// further renewal (which waits for asynq to recover the interrupted
	// task) is needed to see it.
	gen := p.summaries()[p.cfg.Credentials[0].ID].Generation
	work = p.worker()
	p.waitGenerations(gen+1, 30*time.Second)
	work.stop(t)
	spooled, err = os.ReadDir(p.cfg.Worker.SpoolDir)
	require.NoError(t, err)
	require.Empty(t, spooled)
	// One token call per generation: the spooled answer was not asked for again.
	s := p.summaries()[p.cfg.Credentials[0].ID]
	require.Equal(t, int(s.Generation), p.sandbox.TokenCalls(client), "token calls per generation")
	require.NotContains(t, p.logs.String(), "issued token abandoned")
}
