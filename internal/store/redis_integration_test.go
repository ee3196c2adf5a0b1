package store_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
	"github.com/tokenrelay/tokenrelay/secret"
)

// These tests run against the real Redis (internal/testenv): the scripts on
// real Lua, real concurrency, and real memory figures.

func setupReal(t *testing.T) *bundle {
	t.Helper()
	rdb, prefix := testenv.RedisPrefix(t)
	return newBundle(t, rdb, prefix)
}

// TestRealRedisLifecycle runs every script once on the real Redis.
func TestRealRedisLifecycle(t *testing.T) {
	t.Parallel()
	b := setupReal(t)
	b.add(t, "clinic-42")
	res, err := b.store.Upsert(b.ctx, newCred("clinic-42"))
	require.NoError(t, err)
	require.Equal(t, store.Unchanged, res)

	due, err := b.store.ClaimDue(b.ctx, t0, 10, time.Minute)
	require.NoError(t, err)
	require.Equal(t, []store.Due{{ID: "clinic-42"}}, due)

	_, err = b.store.Claim(b.ctx, "clinic-42", 0, "w1", lease)
	require.NoError(t, err)
	_, err = b.store.Claim(b.ctx, "clinic-42", 0, "w2", lease)
	var busy *store.BusyError
	require.ErrorAs(t, err, &busy)
	require.NoError(t, b.store.Release(b.ctx, "clinic-42", "w1", t0))

	_, err = b.store.Claim(b.ctx, "clinic-42", 0, "w2", lease)
	require.NoError(t, err)
	require.NoError(t, b.store.CommitFailure(b.ctx, "clinic-42", "w2", 0,
		store.Failure{State: store.StateFailing, Class: "network", Message: "reset", RetryAt: t0.Add(time.Second)},
		failedEvent(t, events.TypeTokenRefreshFailed, "clinic-42", t0)))

	b.renew(t, "clinic-42", 0, accessToken, refreshToken)
	c, err := b.store.Get(b.ctx, "clinic-42")
	require.NoError(t, err)
	require.EqualValues(t, 1, c.Generation)
	require.Equal(t, store.StateActive, c.State)
	require.Zero(t, c.Failures)
	require.Equal(t, refreshToken, c.Token.RefreshToken.Reveal())
	require.Len(t, b.outbox(t), 2)

	tok, err := b.store.CurrentToken(b.ctx, "clinic-42")
	require.NoError(t, err)
	require.Equal(t, accessToken, tok.Token.AccessToken.Reveal())

	require.NoError(t, b.rdb.Del(b.ctx, b.dueKey()).Err())
	n, err := b.store.Reconcile(b.ctx, t0)
	require.NoError(t, err)
	require.Equal(t, 1, n)

	var seen []string
	require.NoError(t, b.store.Scan(b.ctx, func(s store.Summary) error {
		seen = append(seen, s.ID)
		return nil
	}))
	require.Equal(t, []string{"clinic-42"}, seen)
}

// TestConcurrentClaimersCommitOnce races 20 workers on one generation:
// exactly one renews it.
func TestConcurrentClaimersCommitOnce(t *testing.T) {
	t.Parallel()
	b := setupReal(t)
	b.add(t, "clinic-42")
	b.renew(t, "clinic-42", 0, accessToken, refreshToken) // generation 1
	const gen = 1
	outboxBefore := len(b.outbox(t))

	const workers = 20
	var (
		start     = make(chan struct{})
		wg        sync.WaitGroup
		mu        sync.Mutex
		committed []string
		refused   = map[string]int{}
	)
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			owner := "worker-" + strconv.Itoa(i)
			<-start
			now := b.clock.Now()
			_, err := b.store.Claim(b.ctx, "clinic-42", gen, owner, lease)
			if err == nil {
				err = b.store.CommitRenewal(b.ctx, "clinic-42", owner, gen,
					renewal(now, accessToken2+"-"+owner, refreshToken2), renewedEvent(t, "clinic-42", gen+1, now))
			}
			mu.Lock()
			defer mu.Unlock()
			var busy *store.BusyError
			switch {
			case err == nil:
				committed = append(committed, owner)
			case errors.As(err, &busy):
				refused["busy"]++
			case errors.Is(err, store.ErrStale):
				refused["stale"]++
			default:
				refused[err.Error()]++
			}
		}()
	}
	close(start)
	wg.Wait()

	require.Len(t, committed, 1, "refusals: %v", refused)
	require.Equal(t, workers-1, refused["busy"]+refused["stale"], "refusals: %v", refused)

	c, err := b.store.Get(b.ctx, "clinic-42")
	require.NoError(t, err)
	require.EqualValues(t, gen+1, c.Generation)
	require.Equal(t, accessToken2+"-"+committed[0], c.Token.AccessToken.Reveal())
	require.Equal(t, store.StateActive, c.State)
	require.Len(t, b.outbox(t), outboxBefore+1)
}

// TestMemoryPerCredential logs what one credential costs in Redis: its
// hash (MEMORY USAGE), and the whole footprint with the index entries,
// measured as the used_memory delta of 1000 credentials in a database of
// their own. The figures are approximate when other tests share the server.
func TestMemoryPerCredential(t *testing.T) {
	t.Parallel()
	b := setupReal(t)
	b.add(t, "clinic-42")
	b.renew(t, "clinic-42", 0, accessToken, refreshToken)
	hash, err := b.rdb.MemoryUsage(b.ctx, b.credKey("clinic-42"), 0).Result()
	require.NoError(t, err)
	t.Logf("MEMORY USAGE of one renewed credential hash (%d-byte access token): %d bytes", len(accessToken), hash)
	require.Less(t, hash, int64(2048))

	// The same with a JWT-sized access token, as some vendors hand out.
	jwt := "eyJ" + strings.Repeat("x", 797)
	b.add(t, "clinic-jwt")
	b.renew(t, "clinic-jwt", 0, jwt, refreshToken)
	hashJWT, err := b.rdb.MemoryUsage(b.ctx, b.credKey("clinic-jwt"), 0).Result()
	require.NoError(t, err)
	t.Logf("MEMORY USAGE with an 800-byte access token: %d bytes", hashJWT)

	_, rdb := testenv.RedisDB(t)
	perCred := footprint(t, rdb, 1000)
	t.Logf("used_memory per credential, 1000 renewed credentials (hash + creds + due entries): %d bytes", perCred)
}

// footprint fills a fresh database with n renewed credentials and returns
// the used_memory increase per credential.
func footprint(t *testing.T, rdb *redis.Client, n int) int64 {
	t.Helper()
	ctx := context.Background()
	s := newBundle(t, rdb, events.DefaultPrefix)
	usedMemory := func() int64 {
		info, err := rdb.Info(ctx, "memory").Result()
		require.NoError(t, err)
		for line := range strings.SplitSeq(info, "\r\n") {
			if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
				n, err := strconv.ParseInt(v, 10, 64)
				require.NoError(t, err)
				return n
			}
		}
		t.Fatal("no used_memory in INFO memory")
		return 0
	}
	// Create the three shared keys first so that their fixed cost is not
	// counted.
	s.add(t, "warm-up")
	before := usedMemory()
	for i := range n {
		id := "clinic-" + strconv.Itoa(100000+i)
		_, err := s.store.Upsert(ctx, store.NewCredential{
			ID: id, Vendor: vendor, ClientID: clientID, Keys: store.Keys{ClientSecret: secret.New(clientSecret)},
		})
		require.NoError(t, err)
		s.renew(t, id, 0, accessToken, refreshToken)
	}
	after := usedMemory()
	// Stop the outbox from counting: its entries belong to the relay.
	outbox, err := rdb.MemoryUsage(ctx, s.outboxKey(), 0).Result()
	require.NoError(t, err)
	return (after - before - outbox) / int64(n)
}
