package jobs

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/internal/seal"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
	"github.com/tokenrelay/tokenrelay/internal/testenv/storetest"
)

// TestRefreshDoesNotCallTheVendorOnAnUnreplicatedClaim runs a renewal on a
// store that wants a replica's acknowledgement of each claim
// (redis.min_replica_acks: 1) on a Redis that has none: the claim is
// refused as not replicated, the vendor is not called (a failover could
// lose such a claim, and another worker call the vendor again), and the
// task fails for asynq to retry.
func TestRefreshDoesNotCallTheVendorOnAnUnreplicatedClaim(t *testing.T) {
	t.Parallel()
	rdb := testenv.StartRedisServer(t).Client(t)
	ring, err := seal.NewKeyring(make([]byte, seal.KeySize))
	require.NoError(t, err)
	b := &bundle{clock: testenv.NewClock(storetest.T0), rdb: rdb}
	var shortfalls []string
	b.st, err = store.New(rdb, store.Options{Prefix: "t:", Keyring: ring, Clock: b.clock.Now,
		Replication: store.Replication{MinAcks: 1, Timeout: 10 * time.Millisecond, Shortfall: func(op string) { shortfalls = append(shortfalls, op) }}})
	require.NoError(t, err)
	b.init(t, RefreshDeps{})

	err = b.h.Handle(context.Background(), Refresh{Credential: "c1", Generation: 0})
	require.ErrorIs(t, err, store.ErrNotReplicated)
	err = b.h.HandleBatch(context.Background(), RefreshBatch{Items: []Refresh{{Credential: "c1", Generation: 0}}})
	require.ErrorIs(t, err, store.ErrNotReplicated)
	require.Zero(t, b.callCount(), "the vendor must not be called on a claim no replica acknowledged")
	require.Equal(t, []string{"claim", "claim"}, shortfalls)
}
