package app_test

import (
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/client"
	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
)

// TestPipelineRenewsExactlyOnce runs 500 credentials whose tokens live 3 s
// through 2 schedulers and 3 workers over at least three renewals each,
// with services fetching and using the tokens all along, and one worker
// stopped midway.
func TestPipelineRenewsExactlyOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("integration run of 500 credentials")
	}
	t.Parallel()
	const (
		credentials = 500
		lifetime    = 3 * time.Second
		renewals    = 3
	)
	p := newPipeline(t, credentials, lifetime, "")
	schedulers := []*role{p.scheduler(), p.scheduler()}
	workers := []*role{p.worker(), p.worker(), p.worker()}

	useCtx, stopUsing := context.WithCancel(context.Background())
	users := p.useTokens(useCtx, p.inspect.NATS, 8)

	p.waitGenerations(2, time.Minute)
	workers[2].stop(t) // a worker leaves mid-run; the others carry on
	p.waitGenerations(1+renewals+1, 2*time.Minute)

	stopUsing()
	users.Wait()
	t.Logf("the sandbox accepted %d requests of the users; token errors: %v", users.Accepted.Load(), users.Errors())
	// The tokens were really used. (How often depends on the machine: about
	// 14,000 requests on a quiet 2-core one, 700 with three such runs at
	// once, 215 in a CI run at load average 15; the bound only says that
	// tokens reached their users and worked.)
	require.Greater(t, users.Accepted.Load(), int64(credentials/10), "requests the sandbox accepted")
	for _, w := range workers[:2] {
		w.stop(t)
	}
	p.waitOutboxEmpty()
	for _, s := range schedulers {
		s.stop(t)
	}

	sums := p.summaries()
	require.Len(t, sums, credentials)
	for _, c := range p.cfg.Credentials {
		s := sums[c.ID]
		require.Equal(t, store.StateActive, s.State, "credential %s", c.ID)
		require.GreaterOrEqual(t, s.Generation, int64(1+renewals))
		// Exactly one token-endpoint call per renewal.
		require.Equal(t, int(s.Generation), p.sandbox.TokenCalls(c.ClientID), "credential %s: token calls vs renewals", c.ID)
	}
	evs := p.readStream(p.inspect.JS)
	require.Zero(t, p.sandbox.ExpiredUses(), "no request may be sent with an expired token:\n%s", p.explainExpiredUses(evs))
	require.Zero(t, p.sandbox.UnknownUses())

	p.checkRenewals(evs, sums)

	// No secret anywhere: not in a log line, not in an event.
	logs := p.logs.String()
	require.NotEmpty(t, logs)
	var all strings.Builder
	all.WriteString(logs)
	for _, e := range evs {
		all.WriteString(e.Raw)
	}
	haystack := all.String()
	secrets := p.secretsOf()
	require.Greater(t, len(secrets), credentials*(renewals+1))
	for _, s := range secrets {
		if strings.Contains(haystack, s) {
			t.Fatalf("a secret (%.4s…) appears in the logs or events", s)
		}
	}
}

// TestPipelineSurvivesNATSOutage stops the NATS server while renewals go
// on, starts it again, and expects every event in the stream exactly once.
func TestPipelineSurvivesNATSOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("integration run with a NATS outage")
	}
	t.Parallel()
	ns, url := testenv.StartNATS(t, 0, t.TempDir())
	storeDir := ns.StoreDir()
	port := ns.Addr().(*net.TCPAddr).Port

	p := newPipeline(t, 20, 2*time.Second, url)
	sched := p.scheduler()
	work := p.worker()
	p.waitGenerations(2, 30*time.Second)

	ns.Shutdown()
	ns.WaitForShutdown()
	before := p.summaries()
	// Renewals go on while NATS is away; their events wait in the outbox.
	require.Eventually(t, func() bool {
		for id, s := range p.summaries() {
			if s.Generation < before[id].Generation+2 {
				return false
			}
		}
		return true
	}, 30*time.Second, 100*time.Millisecond)
	depth, err := events.NewOutbox(p.inspect.Redis, p.cfg.Redis.Prefix).Depth(context.Background())
	require.NoError(t, err)
	require.Positive(t, depth, "events should be waiting in the outbox while NATS is down")

	ns2, _ := testenv.StartNATS(t, port, storeDir)
	_ = ns2
	p.waitOutboxEmpty()
	work.stop(t)
	p.waitOutboxEmpty()
	sched.stop(t)

	nc, err := nats.Connect(url)
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	p.checkRenewals(p.readStream(js), p.summaries())
}

// TestPipelineDeletedClientIsRevokedOnce deletes a client at the vendor, as
// a patient deleting a portal key does: one key.revoked, no more token calls.
func TestPipelineDeletedClientIsRevokedOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("integration run")
	}
	t.Parallel()
	p := newPipeline(t, 8, 2*time.Second, "")
	sched := p.scheduler()
	work := p.worker()
	p.waitGenerations(2, 30*time.Second)

	doomed := p.cfg.Credentials[3] // a portal (generic OAuth2) credential
	require.Equal(t, "portal", doomed.Vendor)
	p.sandbox.DeleteClient(doomed.ClientID)
	require.Eventually(t, func() bool { return p.summaries()[doomed.ID].State == store.StateRevoked },
		10*time.Second, 50*time.Millisecond)
	calls := p.sandbox.TokenCalls(doomed.ClientID)
	gen := p.summaries()[doomed.ID].Generation
	require.Equal(t, int(gen)+1, calls, "the refused call is the only one past the last renewal")

	// The others renew twice more; the revoked one is never called again.
	now := p.summaries()
	require.Eventually(t, func() bool {
		for id, s := range p.summaries() {
			if id != doomed.ID && s.Generation < now[id].Generation+2 {
				return false
			}
		}
		return true
	}, 30*time.Second, 100*time.Millisecond)
	require.Equal(t, calls, p.sandbox.TokenCalls(doomed.ClientID))
	work.stop(t)
	p.waitOutboxEmpty()
	sched.stop(t)

	var revoked []events.KeyRevoked
	for _, e := range p.readStream(p.inspect.JS) {
		if e.Env.Type == events.TypeKeyRevoked {
			var d events.KeyRevoked
			require.NoError(t, json.Unmarshal(e.Env.Data, &d))
			revoked = append(revoked, d)
		}
		if e.Env.Type == events.TypeTokenRefreshFailed {
			t.Errorf("a definitive refusal is not a transient failure: %s", e.Raw)
		}
	}
	require.Len(t, revoked, 1)
	require.Equal(t, doomed.ID, revoked[0].Credential)
	require.Equal(t, events.ReasonRevokedByVendor, revoked[0].Reason)
}

// TestPipelineSurvivesARedisCrash kills the Redis server (SIGKILL) while
// renewals go on and starts it again from its append-only file: the
// scheduler and the worker carry on by themselves, every credential goes
// on renewing, and every generation's token.renewed is in the stream once.
func TestPipelineSurvivesARedisCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("integration run with a Redis crash")
	}
	t.Parallel()
	rs := testenv.StartRedisServer(t)
	p := newPipelineOn(t, rs.URL(), 20, 4*time.Second, "")
	sched := p.scheduler()
	work := p.worker()
	p.waitGenerations(2, 30*time.Second)

	rs.Kill()
	time.Sleep(1500 * time.Millisecond) // the outage itself: Redis stays away this long
	rs.Start()
	before := p.summaries()
	require.Eventually(t, func() bool {
		for id, s := range p.summaries() {
			if s.Generation < before[id].Generation+2 {
				return false
			}
		}
		return true
	}, time.Minute, 100*time.Millisecond, "every credential should renew twice more after Redis is back")

	work.stop(t)
	p.waitOutboxEmpty()
	sched.stop(t)
	sums := p.summaries()
	for id, s := range sums {
		require.Equal(t, store.StateActive, s.State, "credential %s: %s", id, s.LastError)
	}
	evs := p.readStream(p.inspect.JS)
	p.checkRenewals(evs, sums)
	require.Zero(t, p.sandbox.ExpiredUses(), p.explainExpiredUses(evs))
}

// TestWorkerServesTokensThroughARedisOutage asks a worker for every
// credential's token, kills its Redis, and asks again: the worker answers
// with the same, still valid tokens from its cache.
func TestWorkerServesTokensThroughARedisOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("integration run with a Redis outage")
	}
	t.Parallel()
	rs := testenv.StartRedisServer(t)
	p := newPipelineOn(t, rs.URL(), 3, time.Minute, "")
	p.scheduler()
	p.worker()
	p.waitGenerations(1, 30*time.Second)

	nc, _, _ := testenv.NATS(t)
	ask := func(id string) client.TokenReply {
		t.Helper()
		msg, err := nc.Request(client.TokenSubject(p.cfg.NATS.SubjectPrefix, p.cfg.Credentials[0].Vendor, id), nil, 5*time.Second)
		require.NoError(t, err)
		var reply client.TokenReply
		require.NoError(t, json.Unmarshal(msg.Data, &reply))
		return reply
	}
	before := map[string]client.TokenReply{}
	for _, c := range p.cfg.Credentials {
		before[c.ID] = ask(c.ID)
		require.NotEmpty(t, before[c.ID].AccessToken, "credential %s: %s", c.ID, before[c.ID].Error)
	}

	rs.Kill()
	for _, c := range p.cfg.Credentials {
		got := ask(c.ID)
		require.Empty(t, got.Error, "credential %s while Redis is down", c.ID)
		if got.Generation == before[c.ID].Generation {
			require.Equal(t, before[c.ID].AccessToken, got.AccessToken)
		}
		require.True(t, time.Now().Before(got.ExpiresAt))
	}
	rs.Start() // so that the roles stop cleanly
	out := p.logs.String()
	for _, s := range p.secretsOf() {
		require.NotContains(t, out, s)
	}
}
