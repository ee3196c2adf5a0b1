package store_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
)

// BenchmarkRenewalBatch is the store's part of a batch of 16 renewals on
// the real Redis: one ClaimBatch and one CommitRenewals (client side:
// encoding, sealing, opening, decoding, and the round trips).
func BenchmarkRenewalBatch(b *testing.B) {
	const per = 16
	rdb, prefix := testenv.RedisPrefix(b)
	bb := newBundle(b, rdb, prefix)
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
		claims, err := bb.store.ClaimBatch(bb.ctx, items, "w1", time.Minute)
		if err != nil {
			b.Fatal(err)
		}
		for _, c := range claims {
			if c.Err != nil {
				b.Fatal(c.Err)
			}
		}
		errs, err := bb.store.CommitRenewals(bb.ctx, commits)
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
