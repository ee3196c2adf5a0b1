package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/policy"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
	"github.com/tokenrelay/tokenrelay/internal/testenv/storetest"
	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/vendors"
)

// tokenFunc is a fake vendor built from a func.
type tokenFunc func(ctx context.Context, c vendors.Credential) (vendors.Token, error)

func (f tokenFunc) Token(ctx context.Context, c vendors.Credential) (vendors.Token, error) {
	return f(ctx, c)
}

type bundle struct {
	st     *store.Store
	rdb    *redis.Client
	clock  *testenv.Clock
	h      *RefreshHandler
	calls  int
	next   func() (vendors.Token, error) // what the fake vendor answers
	onCall func()                        // if set, run on each vendor call
	vendor Vendor
	mu     sync.Mutex
}

func setup(t *testing.T) *bundle {
	t.Helper()
	b := &bundle{clock: testenv.NewClock(storetest.T0)}
	b.st, b.rdb = storetest.New(t, b.clock.Now)
	return b.init(t, RefreshDeps{})
}

// init fills the bundle around its store: the fake vendor, the handler
// (built from d, defaults otherwise), credential c1 and a first answer.
func (b *bundle) init(t *testing.T, d RefreshDeps) *bundle {
	t.Helper()
	b.vendor = Vendor{
		Tokens: tokenFunc(func(context.Context, vendors.Credential) (vendors.Token, error) {
			b.mu.Lock()
			b.calls++
			next, onCall := b.next, b.onCall
			b.mu.Unlock()
			if onCall != nil {
				onCall()
			}
			return next()
		}),
		MaxLifetime: 15 * time.Minute,
		Renewal:     policy.Renewal{At: 2.0 / 3.0, Jitter: -1},
	}
	b.h = b.handler(t, d)
	_, err := b.st.Upsert(context.Background(), store.NewCredential{ID: "c1", Vendor: "halaxy-au", ClientID: "cid", Keys: store.Keys{ClientSecret: secret.New("csecret")}})
	require.NoError(t, err)
	b.answer(halaxyToken(b.clock.Now(), "tok-1"), nil)
	return b
}

// handler builds a refresh handler on the bundle's store (unless d has
// one), clock and vendor from d (defaults otherwise).
func (b *bundle) handler(t *testing.T, d RefreshDeps) *RefreshHandler {
	t.Helper()
	if d.Store == nil {
		d.Store = b.st
	}
	d.Clock, d.Rand = b.clock.Now, func() float64 { return 0 }
	d.Vendor = func(name string) (Vendor, bool) { return b.vendor, name == "halaxy-au" }
	h, err := NewRefreshHandler(d)
	require.NoError(t, err)
	return h
}

func halaxyToken(now time.Time, tok string) vendors.Token {
	return vendors.Token{AccessToken: secret.New(tok), TokenType: "Bearer", ClaimedLifetime: time.Hour, IssuedAt: now}
}

func (b *bundle) answer(tok vendors.Token, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.next = func() (vendors.Token, error) { return tok, err }
}

func (b *bundle) callCount() int { b.mu.Lock(); defer b.mu.Unlock(); return b.calls }

// outbox returns the events written so far, in order.
func (b *bundle) outbox(t *testing.T) []events.Envelope {
	t.Helper()
	msgs, err := b.rdb.XRange(context.Background(), events.OutboxKey("t:"), "-", "+").Result()
	require.NoError(t, err)
	var out []events.Envelope
	for _, m := range msgs {
		var env events.Envelope
		require.NoError(t, json.Unmarshal([]byte(m.Values[events.OutboxFieldEvent].(string)), &env))
		require.NoError(t, env.Validate())
		out = append(out, env)
	}
	return out
}

func data[T any](t *testing.T, env events.Envelope) T {
	t.Helper()
	var v T
	require.NoError(t, json.Unmarshal(env.Data, &v))
	return v
}

func (b *bundle) run(t *testing.T, gen int64) {
	t.Helper()
	require.NoError(t, b.h.Handle(context.Background(), Refresh{Credential: "c1", Generation: gen}))
}

func TestRefreshCapsLifetimeAndSchedulesAtTwoThirds(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.run(t, 0)
	c, err := b.st.Get(context.Background(), "c1")
	require.NoError(t, err)
	require.Equal(t, int64(1), c.Generation)
	require.Equal(t, store.StateActive, c.State)
	// Halaxy claims an hour; the 15 minute cap wins, renewal at 10 minutes.
	require.Equal(t, b.clock.Now().Add(15*time.Minute), c.Token.ExpiresAt)
	require.Equal(t, b.clock.Now().Add(10*time.Minute), c.NextRefresh)
	require.Equal(t, "tok-1", c.Token.AccessToken.Reveal())

	evs := b.outbox(t)
	require.Len(t, evs, 1)
	require.Equal(t, events.TypeTokenRenewed, evs[0].Type)
	require.Equal(t, "token.renewed.halaxy-au.c1", evs[0].Subject)
	d := data[events.TokenRenewed](t, evs[0])
	require.Equal(t, int64(1), d.Generation)
	require.False(t, d.Recovered)
	require.True(t, d.PreviousExpiresAt.IsZero(), "no token before the first")
	require.Equal(t, secret.Fingerprint("tok-1"), d.Fingerprint)
}

func TestRefreshDuplicateAndLateTasksAreNoOps(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.run(t, 0)
	b.run(t, 0) // duplicate of the same generation
	b.run(t, 0)
	require.Equal(t, 1, b.callCount(), "a duplicate task must not call the token endpoint again")
	require.Len(t, b.outbox(t), 1)
	b.run(t, 1)
	require.Equal(t, 2, b.callCount())
	require.Len(t, b.outbox(t), 2)
}

func TestRefreshConcurrentTasksCallVendorOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	release := make(chan struct{})
	var started sync.Once
	inCall := make(chan struct{})
	b.mu.Lock()
	b.next = func() (vendors.Token, error) {
		started.Do(func() { close(inCall) })
		<-release
		return halaxyToken(b.clock.Now(), "tok-x"), nil
	}
	b.mu.Unlock()
	errc := make(chan error, 1)
	go func() { errc <- b.h.Handle(context.Background(), Refresh{Credential: "c1", Generation: 0}) }()
	<-inCall
	// While the first worker is in the vendor call, others get the same task.
	for range 5 {
		require.NoError(t, b.h.Handle(context.Background(), Refresh{Credential: "c1", Generation: 0}))
	}
	close(release)
	require.NoError(t, <-errc)
	require.Equal(t, 1, b.callCount())
	require.Len(t, b.outbox(t), 1)
}

func TestRefreshTransientFailureRetriesBeforeExpiryThenRecovers(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	b.run(t, 0)
	b.clock.Advance(10 * time.Minute) // renewal time; 5 minutes of validity left
	b.answer(vendors.Token{}, &vendors.Error{Vendor: "halaxy", Op: "request token", Class: vendors.ClassServer, Status: 503})
	b.run(t, 1)

	c, err := b.st.Get(ctx, "c1")
	require.NoError(t, err)
	require.Equal(t, store.StateFailing, c.State)
	require.Equal(t, int64(1), c.Generation, "a failure does not bump the generation")
	require.Equal(t, 1, c.Failures)
	require.True(t, c.NextRefresh.Before(c.Token.ExpiresAt), "retry %v must come before expiry %v", c.NextRefresh, c.Token.ExpiresAt)
	evs := b.outbox(t)
	require.Len(t, evs, 2)
	f := data[events.TokenRefreshFailed](t, evs[1])
	require.Equal(t, events.TypeTokenRefreshFailed, evs[1].Type)
	require.Equal(t, vendors.ClassServer, f.Class)
	require.Equal(t, 1, f.Attempt)
	require.Equal(t, "failing", f.State)

	b.clock.Advance(time.Second)
	b.answer(halaxyToken(b.clock.Now(), "tok-2"), nil)
	b.run(t, 1)
	evs = b.outbox(t)
	require.Len(t, evs, 3)
	r := data[events.TokenRenewed](t, evs[2])
	require.Equal(t, int64(2), r.Generation)
	require.Equal(t, storetest.T0.Add(15*time.Minute), r.PreviousExpiresAt, "the expiry of the token it replaces")
	require.True(t, r.Recovered, "the first success after failures says recovered")
	c, err = b.st.Get(ctx, "c1")
	require.NoError(t, err)
	require.Equal(t, store.StateActive, c.State)
	require.Zero(t, c.Failures)
}

func TestRefreshHonoursRetryAfter(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.run(t, 0)
	b.clock.Advance(10 * time.Minute)
	b.answer(vendors.Token{}, &vendors.Error{Vendor: "halaxy", Op: "request token", Class: vendors.ClassRateLimited, Status: 429, RetryAfter: 42 * time.Second})
	b.run(t, 1)
	c, err := b.st.Get(context.Background(), "c1")
	require.NoError(t, err)
	require.Equal(t, b.clock.Now().Add(42*time.Second), c.NextRefresh)
	require.Equal(t, vendors.ClassRateLimited, c.LastClass)
}

func TestRefreshExpiredEmitsTokenExpiredOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.run(t, 0)
	b.clock.Advance(16 * time.Minute) // past expiry
	b.answer(vendors.Token{}, &vendors.Error{Vendor: "halaxy", Op: "request token", Class: vendors.ClassNetwork})
	b.run(t, 1)
	b.clock.Advance(time.Minute)
	b.run(t, 1)
	c, err := b.st.Get(context.Background(), "c1")
	require.NoError(t, err)
	require.Equal(t, store.StateExpired, c.State)
	var expired, failed int
	for _, ev := range b.outbox(t) {
		switch ev.Type {
		case events.TypeTokenExpired:
			expired++
		case events.TypeTokenRefreshFailed:
			failed++
			require.Equal(t, "expired", data[events.TokenRefreshFailed](t, ev).State)
		}
	}
	require.Equal(t, 1, expired)
	require.Equal(t, 2, failed)
}

func TestRefreshRevokedStopsScheduling(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.run(t, 0)
	b.clock.Advance(10 * time.Minute)
	b.answer(vendors.Token{}, &vendors.Error{Vendor: "halaxy", Op: "request token", Class: vendors.ClassRevoked, Status: 401, Err: vendors.ErrRevoked})
	b.run(t, 1)
	c, err := b.st.Get(context.Background(), "c1")
	require.NoError(t, err)
	require.Equal(t, store.StateRevoked, c.State)
	evs := b.outbox(t)
	require.Len(t, evs, 2)
	require.Equal(t, events.TypeKeyRevoked, evs[1].Type)
	k := data[events.KeyRevoked](t, evs[1])
	require.Equal(t, events.ReasonRevokedByVendor, k.Reason)
	require.Equal(t, secret.Fingerprint("cid"), k.KeyFingerprint)

	// Never due again, and a late task is a no-op.
	b.clock.Advance(time.Hour)
	due, err := b.st.ClaimDue(context.Background(), b.clock.Now(), 10, time.Second)
	require.NoError(t, err)
	require.Empty(t, due)
	b.run(t, 1)
	require.Equal(t, 2, b.callCount())
}

func TestRefreshStoreDownIsAnError(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.NoError(t, b.rdb.Close())
	err := b.h.Handle(context.Background(), Refresh{Credential: "c1", Generation: 0})
	require.Error(t, err)
	require.False(t, errors.Is(err, store.ErrStale))
}

func TestRefreshBatchRenewsEachOnceAndRetriesAreNoOps(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	for _, id := range []string{"c2", "c3"} {
		_, err := b.st.Upsert(ctx, store.NewCredential{ID: id, Vendor: "halaxy-au", ClientID: "cid-" + id, Keys: store.Keys{ClientSecret: secret.New("s")}})
		require.NoError(t, err)
	}
	batch := RefreshBatch{Items: []Refresh{{Credential: "c1"}, {Credential: "c2"}, {Credential: "c3"}, {Credential: "gone"}}}
	require.NoError(t, b.h.HandleBatch(ctx, batch))
	require.Equal(t, 3, b.callCount())
	require.NoError(t, b.h.HandleBatch(ctx, batch), "a retried batch redoes nothing")
	require.Equal(t, 3, b.callCount())
	for _, id := range []string{"c1", "c2", "c3"} {
		c, err := b.st.Get(ctx, id)
		require.NoError(t, err)
		require.Equal(t, int64(1), c.Generation)
	}
	require.Len(t, b.outbox(t), 3)
}

func TestRefreshBatchRecordsFailuresAndCommitsTheRest(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	for _, id := range []string{"c2", "c3"} {
		_, err := b.st.Upsert(ctx, store.NewCredential{ID: id, Vendor: "halaxy-au", ClientID: "cid-" + id, Keys: store.Keys{ClientSecret: secret.New("s")}})
		require.NoError(t, err)
	}
	b.mu.Lock()
	b.next = nil
	b.mu.Unlock()
	h, err := NewRefreshHandler(RefreshDeps{
		Store: b.st, Clock: b.clock.Now, Rand: func() float64 { return 0 }, Logger: zerolog.Nop(),
		Vendor: func(string) (Vendor, bool) {
			return Vendor{
				Tokens: tokenFunc(func(_ context.Context, c vendors.Credential) (vendors.Token, error) {
					if c.ID == "c2" {
						return vendors.Token{}, &vendors.Error{Vendor: "halaxy", Op: "request token", Class: vendors.ClassServer, Status: 503}
					}
					return halaxyToken(b.clock.Now(), "tok-"+c.ID), nil
				}),
				MaxLifetime: 15 * time.Minute, Renewal: policy.Renewal{At: 2.0 / 3.0, Jitter: -1},
			}, true
		},
	})
	require.NoError(t, err)
	require.NoError(t, h.HandleBatch(ctx, RefreshBatch{Items: []Refresh{{Credential: "c1"}, {Credential: "c2"}, {Credential: "c3"}}}))

	for id, want := range map[string]int64{"c1": 1, "c2": 0, "c3": 1} {
		c, err := b.st.Get(ctx, id)
		require.NoError(t, err)
		require.Equal(t, want, c.Generation, id)
		if want == 1 {
			require.Equal(t, store.StateActive, c.State, id)
			require.Equal(t, "tok-"+id, c.Token.AccessToken.Reveal(), id)
		} else {
			require.Equal(t, store.StateFailing, c.State, id)
			require.Equal(t, 1, c.Failures, id)
		}
	}
	types := map[string]int{}
	for _, ev := range b.outbox(t) {
		types[ev.Type]++
	}
	require.Equal(t, map[string]int{events.TypeTokenRenewed: 2, events.TypeTokenRefreshFailed: 1}, types)
}

// A slow vendor call does not hold back the commits of the rest of its
// batch.
func TestRefreshBatchDoesNotWaitForASlowCall(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	_, err := b.st.Upsert(ctx, store.NewCredential{ID: "slow", Vendor: "halaxy-au", ClientID: "cid-slow", Keys: store.Keys{ClientSecret: secret.New("s")}})
	require.NoError(t, err)
	release := make(chan struct{})
	h, err := NewRefreshHandler(RefreshDeps{
		Store: b.st, Clock: b.clock.Now, Rand: func() float64 { return 0 }, Logger: zerolog.Nop(),
		Vendor: func(string) (Vendor, bool) {
			return Vendor{
				Tokens: tokenFunc(func(_ context.Context, c vendors.Credential) (vendors.Token, error) {
					if c.ID == "slow" {
						<-release
					}
					return halaxyToken(b.clock.Now(), "tok-"+c.ID), nil
				}),
				MaxLifetime: 15 * time.Minute, Renewal: policy.Renewal{At: 2.0 / 3.0, Jitter: -1},
			}, true
		},
	})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() {
		done <- h.HandleBatch(ctx, RefreshBatch{Items: []Refresh{{Credential: "slow"}, {Credential: "c1"}}})
	}()
	require.Eventually(t, func() bool {
		c, err := b.st.Get(ctx, "c1")
		return err == nil && c.Generation == 1
	}, 5*time.Second, 5*time.Millisecond, "c1 is committed while the slow call is still in flight")
	close(release)
	require.NoError(t, <-done)
	c, err := b.st.Get(ctx, "slow")
	require.NoError(t, err)
	require.EqualValues(t, 1, c.Generation)
	require.Len(t, b.outbox(t), 2)
}

// Batches carrying the same renewal, run at once by several workers, call
// the vendor once for it.
func TestRefreshConcurrentBatchesCallVendorOncePerRenewal(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	ids := []string{"c1", "c2", "c3", "c4"}
	for _, id := range ids[1:] {
		_, err := b.st.Upsert(ctx, store.NewCredential{ID: id, Vendor: "halaxy-au", ClientID: "cid-" + id, Keys: store.Keys{ClientSecret: secret.New("s")}})
		require.NoError(t, err)
	}
	items := make([]Refresh, len(ids))
	for i, id := range ids {
		items[i] = Refresh{Credential: id}
	}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each its own order, and one with every item twice.
			batch := append([]Refresh(nil), items[w%len(items):]...)
			batch = append(batch, items[:w%len(items)]...)
			if w == 0 {
				batch = append(batch, batch...)
			}
			require.NoError(t, b.h.HandleBatch(ctx, RefreshBatch{Items: batch}))
		}()
	}
	wg.Wait()
	require.Equal(t, len(ids), b.callCount())
	require.Len(t, b.outbox(t), len(ids))
}

// A renewal that waited for its turn until its claim is nearly over is
// handed back rather than called: the call could outlive the claim.
func TestRefreshBatchReleasesClaimsTooOldToCall(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	_, err := b.st.Upsert(ctx, store.NewCredential{ID: "c2", Vendor: "halaxy-au", ClientID: "cid-c2", Keys: store.Keys{ClientSecret: secret.New("s")}})
	require.NoError(t, err)
	var (
		mu     sync.Mutex
		called []string
	)
	h, err := NewRefreshHandler(RefreshDeps{
		Store: b.st, Clock: b.clock.Now, Rand: func() float64 { return 0 }, Logger: zerolog.Nop(),
		ClaimLease: 200 * time.Millisecond, BatchParallel: 1,
		Vendor: func(string) (Vendor, bool) {
			return Vendor{
				Tokens: tokenFunc(func(callCtx context.Context, c vendors.Credential) (vendors.Token, error) {
					mu.Lock()
					called = append(called, c.ID)
					mu.Unlock()
					<-callCtx.Done() // the first call takes all the time it is given
					return vendors.Token{}, &vendors.Error{Vendor: "halaxy", Op: "request token", Class: vendors.ClassNetwork, Err: callCtx.Err()}
				}),
				MaxLifetime: 15 * time.Minute, Renewal: policy.Renewal{At: 2.0 / 3.0, Jitter: -1},
			}, true
		},
	})
	require.NoError(t, err)
	require.NoError(t, h.HandleBatch(ctx, RefreshBatch{Items: []Refresh{{Credential: "c1"}, {Credential: "c2"}}}))
	require.Len(t, called, 1, "one call, then no time left for the other")
	other := map[string]string{"c1": "c2", "c2": "c1"}[called[0]]
	c, err := b.st.Get(ctx, other)
	require.NoError(t, err)
	require.Equal(t, store.StateActive, c.State, "handed back as it was")
	require.Zero(t, c.Failures)
	raw, err := b.rdb.HGetAll(ctx, "t:cred:"+other).Result()
	require.NoError(t, err)
	require.NotContains(t, raw, "claim_owner")
}

// A worker shutting down hands back the renewals of a batch it has not
// started, and still stores the token of a call in flight.
func TestRefreshBatchShutdownReleasesWhatHasNotStarted(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err := b.st.Upsert(ctx, store.NewCredential{ID: "c2", Vendor: "halaxy-au", ClientID: "cid-c2", Keys: store.Keys{ClientSecret: secret.New("s")}})
	require.NoError(t, err)
	inCall, finish := make(chan string, 2), make(chan struct{})
	h, err := NewRefreshHandler(RefreshDeps{
		Store: b.st, Clock: b.clock.Now, Rand: func() float64 { return 0 }, Logger: zerolog.Nop(), BatchParallel: 1,
		Vendor: func(string) (Vendor, bool) {
			return Vendor{
				Tokens: tokenFunc(func(_ context.Context, c vendors.Credential) (vendors.Token, error) {
					inCall <- c.ID
					<-finish
					return halaxyToken(b.clock.Now(), "tok-"+c.ID), nil
				}),
				MaxLifetime: 15 * time.Minute, Renewal: policy.Renewal{At: 2.0 / 3.0, Jitter: -1},
			}, true
		},
	})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() {
		done <- h.HandleBatch(ctx, RefreshBatch{Items: []Refresh{{Credential: "c1"}, {Credential: "c2"}}})
	}()
	called := <-inCall
	cancel() // shutdown while the other waits for its turn
	require.Eventually(t, func() bool {
		other := map[string]string{"c1": "c2", "c2": "c1"}[called]
		c, err := b.st.Get(context.Background(), other)
		return err == nil && c.State == store.StateActive
	}, 5*time.Second, 5*time.Millisecond, "the renewal not started is handed back")
	close(finish)
	require.ErrorIs(t, <-done, context.Canceled, "asynq retries the batch later")
	c, err := b.st.Get(context.Background(), called)
	require.NoError(t, err)
	require.EqualValues(t, 1, c.Generation, "the token of the call in flight is stored")
	require.Len(t, inCall, 0, "the other was never called")
}

// A user's delegation (healthsync oauth) is seeded with the refresh token it
// was granted; renewals redeem the newest one the vendor returned, keep it
// when the vendor returns none, and new keys from a re-enable start afresh.
func TestRefreshRedeemsTheGrantedThenTheRotatedRefreshToken(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	_, err := b.st.Upsert(ctx, store.NewCredential{ID: "c1", Vendor: "halaxy-au", ClientID: "cid",
		Keys: store.Keys{ClientSecret: secret.New("csecret"), RefreshToken: secret.New("rt-granted")}})
	require.NoError(t, err)

	var redeemed []string
	var mu sync.Mutex
	answerWith := func(rotated string) {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.next = func() (vendors.Token, error) {
			tok := halaxyToken(b.clock.Now(), "tok")
			tok.RefreshToken = secret.New(rotated) // "" means none returned
			return tok, nil
		}
	}
	vendor := Vendor{
		Tokens: tokenFunc(func(_ context.Context, c vendors.Credential) (vendors.Token, error) {
			mu.Lock()
			redeemed = append(redeemed, c.RefreshToken.Reveal())
			mu.Unlock()
			b.mu.Lock()
			next := b.next
			b.mu.Unlock()
			return next()
		}),
		MaxLifetime: 15 * time.Minute,
		Renewal:     policy.Renewal{At: 2.0 / 3.0, Jitter: -1},
	}
	b.h, err = NewRefreshHandler(RefreshDeps{
		Store: b.st, Clock: b.clock.Now, Rand: func() float64 { return 0 }, Logger: zerolog.Nop(),
		Vendor: func(name string) (Vendor, bool) { return vendor, name == "halaxy-au" },
	})
	require.NoError(t, err)

	answerWith("rt-1")
	b.run(t, 0)
	answerWith("") // not rotated this time: the store keeps rt-1
	b.run(t, 1)
	answerWith("rt-2")
	b.run(t, 2)
	b.run(t, 3)
	require.Equal(t, []string{"rt-granted", "rt-1", "rt-1", "rt-2"}, redeemed)

	// Re-enabled with a new grant: the new refresh token, not rt-2.
	require.NoError(t, b.st.Enable(ctx, "c1", "", &store.Keys{ClientSecret: secret.New("csecret"), RefreshToken: secret.New("rt-new-grant")}))
	c, err := b.st.Get(ctx, "c1")
	require.NoError(t, err)
	b.run(t, c.Generation)
	require.Equal(t, "rt-new-grant", redeemed[len(redeemed)-1])
}
