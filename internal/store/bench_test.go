package store_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
)

// BenchmarkRenewalBatch is the store's part of a batch of 16 renewals on
// the real Redis: one ClaimBatch and one CommitRenewals (client side:
// encoding, sealing, opening, decoding, and the round trips).
func BenchmarkRenewalBatch(b *testing.B) {
	rdb, prefix := testenv.RedisPrefix(b)
	bb := newBundle(b, rdb, prefix)
	renewalBatches(b, bb, bb.store)
}

// BenchmarkRenewalBatchReplicated is BenchmarkRenewalBatch on a master of
// its own with one replica, without and with Replication.MinAcks 1 (a WAIT
// after the claim and after the commit): what redis.min_replica_acks costs.
func BenchmarkRenewalBatchReplicated(b *testing.B) {
	master, replica := testenv.StartRedisServer(b), testenv.StartRedisServer(b)
	m, r := master.Client(b), replica.Client(b)
	// As the shared Redis runs (no fsync on every write), so that the
	// figures are the round trips', not the disk's; the replica syncs at
	// once, not 5 s later.
	for _, c := range []*redis.Client{m, r} {
		if err := c.ConfigSet(context.Background(), "appendonly", "no").Err(); err != nil {
			b.Fatal(err)
		}
	}
	if err := m.ConfigSet(context.Background(), "repl-diskless-sync-delay", "0").Err(); err != nil {
		b.Fatal(err)
	}
	if err := r.ReplicaOf(context.Background(), "127.0.0.1", strconv.Itoa(master.Port)).Err(); err != nil {
		b.Fatal(err)
	}
	for {
		info, err := r.Info(context.Background(), "replication").Result()
		if err == nil && strings.Contains(info, "master_link_status:up") {
			break
		}
		time.Sleep(10 * time.Millisecond) // polling the replica's first sync
	}
	for _, acks := range []int{0, 1} {
		b.Run("min_replica_acks="+strconv.Itoa(acks), func(b *testing.B) {
			bb := newBundle(b, m, testenv.Unique("b")+":") // a fresh prefix for each run of the sub-benchmark
			st, err := store.New(m, store.Options{Prefix: bb.prefix, Keyring: bb.ring, Clock: bb.clock.Now,
				Replication: store.Replication{MinAcks: acks}})
			if err != nil {
				b.Fatal(err)
			}
			renewalBatches(b, bb, st)
		})
	}
}

// renewalBatches renews 16 credentials of bb per iteration through st.
func renewalBatches(b *testing.B, bb *bundle, st *store.Store) {
	const per = 16
	items := make([]store.Due, per)
	commits := make([]store.RenewalCommit, per)
	now := bb.clock.Now()
	for i := range items {
		id := "clinic-" + strconv.Itoa(i)
		bb.add(b, id)
		items[i] = store.Due{ID: id}
		commits[i] = store.RenewalCommit{ID: id, Owner: "w1", Renewal: renewal(now, accessToken, ""), Event: renewedEvent(b, id, 1, now)}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for gen := range b.N {
		for i := range items {
			items[i].Generation, commits[i].Generation = int64(gen), int64(gen)
		}
		claims, err := st.ClaimBatch(bb.ctx, items, "w1", time.Minute)
		if err != nil {
			b.Fatal(err)
		}
		for _, c := range claims {
			if c.Err != nil {
				b.Fatal(c.Err)
			}
		}
		errs, err := st.CommitRenewals(bb.ctx, commits)
		if err != nil {
			b.Fatal(err)
		}
		for _, err := range errs {
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*per), "ns/renewal")
}
