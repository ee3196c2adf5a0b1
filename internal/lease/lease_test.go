package lease_test

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/internal/lease"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
)

func TestLeaseIsExclusive(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb, prefix := testenv.RedisPrefix(t)
	key := prefix + "lease"
	a := lease.New(rdb, key, "a", time.Minute)
	b := lease.New(rdb, key, "b", time.Minute)

	o, err := a.Acquire(ctx)
	require.NoError(t, err)
	require.Equal(t, lease.Taken, o)
	require.True(t, a.Valid())

	o, err = b.Acquire(ctx)
	require.NoError(t, err)
	require.Equal(t, lease.HeldByOther, o, "a held lease is not taken")
	require.False(t, b.Valid())
	require.Equal(t, "a", rdb.Get(ctx, key).Val())

	o, err = a.Acquire(ctx)
	require.NoError(t, err)
	require.Equal(t, lease.Extended, o, "the holder's acquire extends")
}

func TestLeaseRenewAndReleaseByHolderOnly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb, prefix := testenv.RedisPrefix(t)
	key := prefix + "lease"
	a := lease.New(rdb, key, "a", 10*time.Second)
	b := lease.New(rdb, key, "b", time.Minute)
	_, err := a.Acquire(ctx)
	require.NoError(t, err)

	ok, err := b.Renew(ctx)
	require.NoError(t, err)
	require.False(t, ok, "only the holder renews")
	require.LessOrEqual(t, rdb.PTTL(ctx, key).Val(), 10*time.Second, "a stranger's renew must not extend")

	require.NoError(t, b.Release(ctx))
	require.Equal(t, "a", rdb.Get(ctx, key).Val(), "only the holder releases")

	ok, err = a.Renew(ctx)
	require.NoError(t, err)
	require.True(t, ok)
	require.NoError(t, a.Release(ctx))
	require.Zero(t, rdb.Exists(ctx, key).Val(), "the holder's release ends the lease")
	require.False(t, a.Valid())
	ok, err = a.Renew(ctx)
	require.NoError(t, err)
	require.False(t, ok, "a released lease is not renewed")
}

func TestLeaseTakenOverAfterExpiry(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb, prefix := testenv.RedisPrefix(t)
	key := prefix + "lease"
	a := lease.New(rdb, key, "a", 100*time.Millisecond)
	b := lease.New(rdb, key, "b", time.Minute)
	_, err := a.Acquire(ctx)
	require.NoError(t, err)

	require.Eventually(t, func() bool {
		o, err := b.Acquire(ctx)
		return err == nil && o == lease.Taken
	}, 5*time.Second, 20*time.Millisecond)
	require.False(t, a.Valid(), "the local bound ends with the TTL")

	ok, err := a.Renew(ctx)
	require.NoError(t, err)
	require.False(t, ok, "the old holder cannot extend the new holder's lease")
	require.NoError(t, a.Release(ctx))
	require.Equal(t, "b", rdb.Get(ctx, key).Val(), "the old holder cannot release the new holder's lease")
}

func TestKeepRenewsUntilTaken(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb, prefix := testenv.RedisPrefix(t)
	key := prefix + "lease"
	// A TTL long enough that a loaded CI machine (-race, two cores) still
	// renews in time; 150 ms failed there once.
	a := lease.New(rdb, key, "a", 600*time.Millisecond)
	_, err := a.Acquire(ctx)
	require.NoError(t, err)

	done := make(chan error, 1)
	go func() { done <- a.Keep(ctx, nil) }()
	// Kept alive past several TTLs.
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		require.Equal(t, "a", rdb.Get(ctx, key).Val())
		time.Sleep(20 * time.Millisecond)
	}
	require.True(t, a.Valid())

	// Another owner's token in the key (as after an expiry and a take).
	require.NoError(t, rdb.Set(ctx, key, "b", time.Minute).Err())
	select {
	case err := <-done:
		require.True(t, errors.Is(err, lease.ErrTaken), "got %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("Keep did not notice the lease was taken")
	}
	require.Equal(t, "b", rdb.Get(ctx, key).Val())
}

func TestKeepStopsWithContext(t *testing.T) {
	t.Parallel()
	rdb, prefix := testenv.RedisPrefix(t)
	a := lease.New(rdb, prefix+"lease", "a", time.Minute)
	_, err := a.Acquire(context.Background())
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.NoError(t, a.Keep(ctx, nil))
}

// A holder that cannot reach Redis learns that its lease has expired, from
// its local bound, instead of acting on it for ever: Keep reports each
// failed renewal and returns ErrExpired once the lease may have passed on.
func TestKeepReportsExpiryWhileRedisIsDown(t *testing.T) {
	t.Parallel()
	srv := testenv.StartRedisServer(t)
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + strconv.Itoa(srv.Port), MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	a := lease.New(rdb, "lease", "a", 300*time.Millisecond)
	_, err := a.Acquire(context.Background())
	require.NoError(t, err)
	srv.Kill()

	var failures atomic.Int32
	err = a.Keep(context.Background(), func(error, time.Time) { failures.Add(1) })
	require.ErrorIs(t, err, lease.ErrExpired)
	require.Positive(t, failures.Load(), "each failed renewal is reported")
	require.False(t, a.Valid())
}
