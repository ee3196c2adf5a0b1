package store_test

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
)

// TestReplicaAcks runs the writes that fence vendor calls with
// Replication.MinAcks 1: on a master without a replica each is refused
// with ErrNotReplicated and counted; once a replica follows the master,
// they go through, and the replica holds each one by the time it returns.
func TestReplicaAcks(t *testing.T) {
	t.Parallel()
	master := testenv.StartRedisServer(t)
	rdb := master.Client(t)
	var (
		mu         sync.Mutex
		shortfalls []string
	)
	b := newBundle(t, rdb, "t:")
	acked, err := store.New(rdb, store.Options{Prefix: "t:", Keyring: b.ring, Clock: b.clock.Now, Replication: store.Replication{
		MinAcks: 1, Timeout: 20 * time.Millisecond,
		Shortfall: func(op string) { mu.Lock(); shortfalls = append(shortfalls, op); mu.Unlock() },
	}})
	require.NoError(t, err)
	b.add(t, "c1")
	b.add(t, "c2")

	// No replica: the claim, the batch claim and a commit are refused.
	_, err = acked.Claim(b.ctx, "c1", 0, "w1", lease)
	require.ErrorIs(t, err, store.ErrNotReplicated)
	require.ErrorContains(t, err, "0 of 1 replicas acknowledged within 20ms")
	_, err = acked.ClaimBatch(b.ctx, []store.Due{{ID: "c2"}}, "w1", lease)
	require.ErrorIs(t, err, store.ErrNotReplicated)
	now := b.clock.Now()
	_, err = acked.CommitRenewals(b.ctx, []store.RenewalCommit{{ID: "c1", Owner: "w1", Generation: 0,
		Renewal: renewal(now, accessToken, refreshToken), Event: renewedEvent(t, "c1", 1, now)}})
	require.ErrorIs(t, err, store.ErrNotReplicated)
	_, err = acked.BeginRotation(b.ctx, "c2", "w1", lease)
	require.ErrorIs(t, err, store.ErrNotReplicated)
	mu.Lock()
	require.Equal(t, []string{"claim", "claim", "commit_renewal", "begin_rotation"}, shortfalls)
	shortfalls = nil
	mu.Unlock()

	// A replica: everything goes through, and is on the replica on return,
	// even a script the new master has never seen (EVALSHA answered
	// NOSCRIPT, then EVAL, each followed by WAIT).
	replica := testenv.StartRedisServer(t)
	rrdb := replica.Client(t)
	require.NoError(t, rdb.ConfigSet(b.ctx, "repl-diskless-sync-delay", "0").Err()) // sync at once, not 5 s later
	require.NoError(t, rrdb.ReplicaOf(b.ctx, "127.0.0.1", strconv.Itoa(master.Port)).Err())
	require.Eventually(t, func() bool {
		info, err := rrdb.Info(b.ctx, "replication").Result()
		return err == nil && strings.Contains(info, "master_link_status:up")
	}, 30*time.Second, 20*time.Millisecond, "the replica should sync")
	require.NoError(t, rdb.ScriptFlush(b.ctx).Err())

	acked, err = store.New(rdb, store.Options{Prefix: "t:", Keyring: b.ring, Clock: b.clock.Now, Replication: store.Replication{
		MinAcks: 1, Timeout: time.Second,
		Shortfall: func(op string) { mu.Lock(); shortfalls = append(shortfalls, op); mu.Unlock() },
	}})
	require.NoError(t, err)
	// The refused writes were made on the master, only not known to be
	// replicated: c1's commit took it to generation 1.
	c, err := acked.Claim(b.ctx, "c1", 1, "w2", lease)
	require.NoError(t, err)
	require.EqualValues(t, 1, c.Generation)
	owner, err := rrdb.HGet(context.Background(), "t:cred:c1", "claim_owner").Result()
	require.NoError(t, err, "the replica should hold the claim once Claim returns")
	require.Equal(t, "w2", owner)
	now = b.clock.Now()
	errs, err := acked.CommitRenewals(b.ctx, []store.RenewalCommit{{ID: "c1", Owner: "w2", Generation: 1,
		Renewal: renewal(now, accessToken, refreshToken), Event: renewedEvent(t, "c1", 2, now)}})
	require.NoError(t, err)
	require.NoError(t, errs[0])
	gen, err := rrdb.HGet(context.Background(), "t:cred:c1", "gen").Result()
	require.NoError(t, err)
	require.Equal(t, "2", gen, "the replica should hold the commit once CommitRenewals returns")
	mu.Lock()
	require.Empty(t, shortfalls)
	mu.Unlock()
}

// TestReplicaAcksOnACluster runs a claim with Replication.MinAcks 1 on a
// Redis Cluster of masters without replicas: the script runs on the master
// of the keys' slot, and no replica acknowledges it, so it is refused.
// (That WAIT goes to that same master matters only with replicas, which
// testenv's clusters do not have: see connFor.)
func TestReplicaAcksOnACluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Redis Cluster")
	}
	t.Parallel()
	rc := testenv.StartRedisCluster(t, 3)
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: rc.Addrs()})
	t.Cleanup(func() { _ = rdb.Close() })
	const prefix = "{t}:"
	b := newBundle(t, rdb, prefix)
	acked, err := store.New(rdb, store.Options{Prefix: prefix, Keyring: b.ring, Clock: b.clock.Now,
		Replication: store.Replication{MinAcks: 1, Timeout: 20 * time.Millisecond}})
	require.NoError(t, err)
	b.add(t, "c1")

	_, err = acked.Claim(b.ctx, "c1", 0, "w1", lease)
	require.ErrorIs(t, err, store.ErrNotReplicated)
	owner, err := rc.MasterOf(t, prefix).Client(t).HGet(b.ctx, prefix+"cred:c1", "claim_owner").Result()
	require.NoError(t, err)
	require.Equal(t, "w1", owner, "the claim should have run on the slot's master")
}
