package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/requests"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
	"github.com/tokenrelay/tokenrelay/jobs"
	"github.com/tokenrelay/tokenrelay/vendors/sandbox"
)

// The engines as real deployments run them (deployments/README.md): a NATS
// cluster with the stream replicated three times, Redis behind Sentinel,
// a Redis Cluster. Each test starts its own servers and breaks one while
// renewals go on.

// clusterCredentials and clusterLifetime size the runs below: enough
// credentials for renewals to overlap, tokens short enough for several
// renewals within a few seconds.
const (
	clusterCredentials = 8
	clusterLifetime    = 3 * time.Second
)

// TestPipelineOnANATSClusterLosesTheStreamLeader runs the pipeline on a
// 3-node NATS cluster holding the stream in 3 replicas and shuts down the
// server leading the stream mid-run.
func TestPipelineOnANATSClusterLosesTheStreamLeader(t *testing.T) {
	if testing.Short() {
		t.Skip("integration run on a NATS cluster")
	}
	t.Parallel()
	nc := testenv.StartNATSCluster(t, 3)
	p := newPipelineOn(t, testenv.RedisURL(t), clusterCredentials, clusterLifetime, nc.URL, func(c *config.Config) {
		c.NATS.StreamReplicas = 3
	})
	p.renewThrough(func() {
		require.Equal(t, 3, streamReplicas(t, p), "the stream should be created with nats.stream_replicas")
		leader := nc.StreamLeader(p.cfg.NATS.Stream)
		require.NotNil(t, leader, "the stream should have a leader")
		t.Logf("shutting down %s, the stream's leader", leader.Name())
		leader.Shutdown()
		require.Eventually(t, func() bool { return nc.StreamLeader(p.cfg.NATS.Stream) != nil }, 30*time.Second, 50*time.Millisecond,
			"the remaining servers should elect a new stream leader")
	})

	// A process without nats.stream_replicas leaves the stream's replicas
	// as they are.
	p.cfg.NATS.StreamReplicas = 0
	const ready = `"replicas":3,"time"`
	before := strings.Count(p.logs.String(), ready)
	p.worker()
	require.Eventually(t, func() bool { return strings.Count(p.logs.String(), ready) > before }, 10*time.Second, 20*time.Millisecond,
		"a worker at the default replicas should set the stream up with the replicas it has")
	require.Equal(t, 3, streamReplicas(t, p))
}

// TestPipelineThroughASentinelFailover runs the pipeline on a Redis master
// with a replica behind three sentinels, with redis.min_replica_acks 1.
// It holds replication back, makes a credential due, kills the master
// (SIGKILL) right after a worker's claim of it, which the replica cannot
// have, and lets the sentinels promote the replica: the claim is lost with
// the master, yet the vendor sees no second token call for that renewal,
// because a worker calls the vendor only on a claim a replica has
// acknowledged. The old master then comes back as the new one's replica.
func TestPipelineThroughASentinelFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("integration run with a Sentinel failover")
	}
	t.Parallel()
	rs := testenv.StartRedisSentinel(t)
	p := newPipelineOn(t, "redis://ignored/0", clusterCredentials, clusterLifetime, "", func(c *config.Config) {
		c.Redis.Sentinel = config.RedisSentinel{Master: rs.MasterName, Addrs: rs.SentinelAddrs()}
		c.Redis.MinReplicaAcks = 1
		c.Redis.ReplicaAckTimeout = config.Duration(500 * time.Millisecond)
	})
	p.renewThrough(func() {
		// Token calls in flight at the kill: their tokens are issued
		// while the sentinels fail over (they take over a second to
		// notice), and must be committed to the new master, by go-redis's
		// retries or the worker's, not asked for again.
		require.NoError(t, p.sandbox.Inject(sandbox.Fault{Kind: sandbox.FaultLatency, Latency: 500 * time.Millisecond, Times: 4}))
		old := rs.Master
		master := rs.Master.Client(t)
		for try := 1; ; try++ {
			require.LessOrEqual(t, try, 10, "no claim was taken while replication was held back")
			release := holdReplication(t, rs.Master, rs.Replica)
			claimed := p.claimSoon(master, 600*time.Millisecond)
			if claimed != "" && replicaOutputBuffer(t, master) >= 256<<10 {
				// The claim is in the master's memory, behind 256 KiB the
				// replica has not read.
				t.Logf("killing the master right after a claim of %s the replica cannot have (try %d)", claimed, try)
				rs.Master.Kill()
				release()
				break
			}
			release()
		}
		rs.KillMasterAndFailOver(t)
		// Back as a replica (the sentinels turn it into one), so that
		// claims can be acknowledged again.
		old.Start()
		awaitReplicaInSync(t, rs.Master, old)
		rs.Replica = old
	})
}

// holdReplication keeps what master is told next from reaching replica:
// on a fresh replication connection (its socket buffers small), it stops
// the replica's process (SIGSTOP) and writes filler to the master until
// the master keeps 1 MiB of the replication stream in the replica's output
// buffer, its own memory, having filled the sockets between them. What
// the master is told next is lost if it is killed before the returned
// function lets the replica go on (SIGCONT). The replica must go on within
// the sentinels' down-after-milliseconds (1 s), or they would not promote
// it.
func holdReplication(t *testing.T, master, replica *testenv.RedisServer) (release func()) {
	t.Helper()
	ctx := context.Background()
	m, r := master.Client(t), replica.Client(t)
	require.NoError(t, m.ClientKillByFilter(ctx, "TYPE", "replica").Err())
	awaitReplicaInSync(t, master, replica)
	pid, err := strconv.Atoi(infoField(r, "server", "process_id"))
	require.NoError(t, err)
	require.NoError(t, syscall.Kill(pid, syscall.SIGSTOP))
	released := false
	release = func() {
		if !released {
			released = true
			require.NoError(t, syscall.Kill(pid, syscall.SIGCONT))
		}
	}
	t.Cleanup(release)
	filler := strings.Repeat("x", 256<<10)
	for i := 0; replicaOutputBuffer(t, m) < 1<<20; i++ {
		require.Less(t, i, 1024, "the replica's output buffer should fill")
		require.NoError(t, m.Set(ctx, "filler:"+strconv.Itoa(i%8), filler, 0).Err())
	}
	return release
}

// replicaOutputBuffer is the output buffer memory (omem) of master's
// connection to its replica, 0 when it has none.
func replicaOutputBuffer(t *testing.T, master *redis.Client) int {
	t.Helper()
	clients, err := master.ClientList(context.Background()).Result() // go-redis has no CLIENT LIST TYPE
	require.NoError(t, err)
	for line := range strings.SplitSeq(clients, "\n") {
		if !strings.Contains(line, " flags=S ") {
			continue
		}
		for field := range strings.FieldsSeq(line) {
			if v, ok := strings.CutPrefix(field, "omem="); ok {
				n, _ := strconv.Atoi(v)
				return n
			}
		}
	}
	return 0
}

// claimSoon makes one of the pipeline's credentials that no worker holds
// due at once, on master, and waits up to within for a worker to claim it;
// it returns its id, or "" when it was not claimed in time.
func (p *pipeline) claimSoon(master *redis.Client, within time.Duration) string {
	t := p.t
	t.Helper()
	ctx := context.Background()
	key := func(id string) string { return p.cfg.Redis.Prefix + "cred:" + id }
	var id string
	for _, c := range p.cfg.Credentials {
		if owner, _ := master.HGet(ctx, key(c.ID), "claim_owner").Result(); owner == "" {
			id = c.ID
			break
		}
	}
	if id == "" {
		return ""
	}
	require.NoError(t, master.ZAdd(ctx, p.cfg.Redis.Prefix+"due", redis.Z{Score: float64(time.Now().UnixMilli()), Member: id}).Err())
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if owner, _ := master.HGet(ctx, key(id), "claim_owner").Result(); owner != "" {
			return id
		}
		time.Sleep(time.Millisecond) // polling another process's writes
	}
	return ""
}

// infoField reads one field of a section of rdb's INFO ("" when rdb does
// not answer or has no such field).
func infoField(rdb *redis.Client, section, field string) string {
	info, err := rdb.Info(context.Background(), section).Result()
	if err != nil {
		return ""
	}
	_, rest, _ := strings.Cut(info, "\r\n"+field+":")
	value, _, _ := strings.Cut(rest, "\r\n")
	return value
}

// awaitReplicaInSync waits until replica follows master and has
// everything master has written.
func awaitReplicaInSync(t *testing.T, master, replica *testenv.RedisServer) {
	t.Helper()
	m, r := master.Client(t), replica.Client(t)
	require.Eventually(t, func() bool {
		return infoField(r, "replication", "master_link_status") == "up" &&
			infoField(r, "replication", "slave_repl_offset") == infoField(m, "replication", "master_repl_offset")
	}, time.Minute, 20*time.Millisecond, "%s should become %s's replica and catch up", replica, master)
}

// TestPipelineOnARedisCluster runs the pipeline, and request jobs through
// the shared budget, on a Redis Cluster of three masters: every script and
// transaction of the store, the outbox, the budget and the request queues
// must find its keys in one slot.
func TestPipelineOnARedisCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("integration run on a Redis Cluster")
	}
	t.Parallel()
	rc := testenv.StartRedisCluster(t, 3)
	const prefix = "{tokenrelay}:"
	p := newPipelineOn(t, "redis://ignored", clusterCredentials, clusterLifetime, "", func(c *config.Config) {
		c.Redis.Cluster.Addrs = rc.Addrs()
		c.Redis.Prefix = prefix
	})
	p.renewThrough(func() {
		// Request jobs go through the budget's and the queues' scripts.
		completed := p.requestsCompleted()
		var ids []string
		for _, c := range p.cfg.Credentials {
			if c.Vendor != "halaxy-au" {
				continue
			}
			id := fmt.Sprintf("cluster-%d", len(ids))
			body := fmt.Sprintf(`{"id":%q,"credential":%q,"method":"GET","path":"Patient","batch":"b1"}`, id, c.ID)
			msg, err := p.inspect.NATS.Request(p.cfg.NATS.SubjectPrefix+requests.SubjectSubmit, []byte(body), 5*time.Second)
			require.NoError(t, err)
			require.JSONEq(t, fmt.Sprintf(`{"id":%q,"accepted":true}`, id), string(msg.Data))
			ids = append(ids, id)
		}
		completed.await(t, ids...)
	})
	// A feeder that stopped between taking requests from their queue and
	// enqueueing them loses none on a cluster either: the next one finds
	// them by SCAN, which go-redis sends to the node of the pattern's hash
	// tag (the prefix's), not to a random node.
	home := rc.MasterOf(t, prefix)
	stranded := p.strandReleasedRequest(home.Client(t), prefix)
	completed := p.requestsCompleted()
	p.scheduler() // relays the outcome
	p.worker()
	completed.await(t, stranded)

	// Everything tokenrelay keeps is on the one node of the prefix's slot;
	// asynq's queues are spread by their own hash tags.
	for _, n := range rc.Nodes {
		keys, err := n.Client(t).Keys(context.Background(), prefix+"*").Result()
		require.NoError(t, err)
		if n == home {
			require.NotEmpty(t, keys)
		} else {
			require.Empty(t, keys, "%s holds keys of the prefix's slot", n)
		}
	}
}

// renewThrough runs a scheduler and two workers until every credential has
// renewed once, calls fault, and checks that every credential then renews
// twice more, that the stream holds exactly one token.renewed per
// generation and no event twice, and that the vendor saw exactly one token
// call per generation: no process was killed, so none is excused.
func (p *pipeline) renewThrough(fault func()) {
	t := p.t
	t.Helper()
	sched := p.scheduler()
	workers := []*role{p.worker(), p.worker()}
	p.waitGenerations(2, 30*time.Second)

	before := p.summaries()
	fault()
	require.Eventually(t, func() bool {
		sums := p.summaries()
		for id, b := range before {
			if sums[id].Generation < b.Generation+2 {
				return false
			}
		}
		return true
	}, time.Minute, 100*time.Millisecond, "every credential should renew twice more after the fault")

	for _, w := range workers {
		w.stop(t)
	}
	p.waitOutboxEmpty()
	sched.stop(t)
	sums := p.summaries()
	require.Len(t, sums, len(p.cfg.Credentials))
	for _, c := range p.cfg.Credentials {
		s := sums[c.ID]
		require.Equal(t, store.StateActive, s.State, "credential %s: %s", c.ID, s.LastError)
		require.Equal(t, int(s.Generation), p.sandbox.TokenCalls(c.ClientID), "credential %s: token calls vs renewals", c.ID)
	}
	p.checkRenewals(p.readStream(p.inspect.JS), sums)
}

// strandReleasedRequest submits a request with no worker running and
// moves it, as release.lua does, from its queue and the queued set to the
// account's releasing hash under its first release, where a feeder that stopped before enqueueing it leaves
// it; node is the Redis node holding the prefix's slot. It returns the
// request's id.
func (p *pipeline) strandReleasedRequest(node *redis.Client, prefix string) string {
	t := p.t
	t.Helper()
	ctx := context.Background()
	sub, err := requests.NewSubmitter(requests.SubmitterOptions{Redis: p.inspect.Redis, Prefix: prefix, Credentials: p.inspect.Store,
		Vendors: p.cfg.Vendors, Keyring: p.inspect.Store.Keyring()})
	require.NoError(t, err)
	c := p.cfg.Credentials[0]
	r := jobs.NewRequest(c.ID, http.MethodGet, "Patient")
	r.Batch = "stranded"
	_, err = sub.Submit(ctx, r)
	require.NoError(t, err)
	account := requests.AccountFor(p.cfg.Vendors)(c.Vendor, c.ID)
	queues, err := node.Keys(ctx, prefix+"req:q:"+account+":*.stranded").Result()
	require.NoError(t, err)
	require.Len(t, queues, 1)
	item, err := node.LPop(ctx, queues[0]).Result()
	require.NoError(t, err)
	require.NoError(t, node.SRem(ctx, prefix+"req:queued", r.ID).Err())
	require.NoError(t, node.HIncrBy(ctx, prefix+"req:r:"+r.ID, "releases", 1).Err())
	require.NoError(t, node.HSet(ctx, prefix+"req:releasing:"+account, r.ID, "1|"+item).Err())
	require.NoError(t, node.Del(ctx, prefix+"req:ring:"+account).Err())
	require.NoError(t, node.HDel(ctx, prefix+"req:accounts", account).Err())
	return r.ID
}

// completions are the ids of the request.completed events a test hears.
type completions chan string

// requestsCompleted subscribes to request.completed events until the test
// ends.
func (p *pipeline) requestsCompleted() completions {
	ids := make(completions, 64)
	sub, err := p.inspect.NATS.Subscribe(p.cfg.NATS.SubjectPrefix+events.TypeRequestCompleted+".>", func(msg *nats.Msg) {
		var env events.Envelope
		var data events.RequestCompleted
		if json.Unmarshal(msg.Data, &env) == nil && json.Unmarshal(env.Data, &data) == nil {
			ids <- data.ID
		}
	})
	require.NoError(p.t, err)
	p.t.Cleanup(func() { _ = sub.Unsubscribe() })
	return ids
}

// await waits until every one of ids has completed.
func (c completions) await(t *testing.T, ids ...string) {
	t.Helper()
	missing := map[string]bool{}
	for _, id := range ids {
		missing[id] = true
	}
	deadline := time.After(30 * time.Second)
	for len(missing) > 0 {
		select {
		case id := <-c:
			delete(missing, id)
		case <-deadline:
			t.Fatalf("no request.completed for %v", missing)
		}
	}
}

// streamReplicas reads the replica count of the pipeline's stream.
func streamReplicas(t *testing.T, p *pipeline) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stream, err := p.inspect.JS.Stream(ctx, p.cfg.NATS.Stream)
	require.NoError(t, err)
	info, err := stream.Info(ctx)
	require.NoError(t, err)
	return info.Config.Replicas
}
