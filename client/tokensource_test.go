package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2"

	"github.com/tokenrelay/tokenrelay/client"
	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
	"github.com/tokenrelay/tokenrelay/internal/tokenservice"
	"github.com/tokenrelay/tokenrelay/secret"
)

const (
	vendor     = "halaxy-au"
	credential = "clinic-42"
	wait       = 5 * time.Second
	tick       = 5 * time.Millisecond
)

// clockStart is where the tests' manual clocks start.
var clockStart = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

// bundle is a token service on the real NATS, under a prefix of its own,
// reading from a settable fake store.
type bundle struct {
	nc     *nats.Conn
	prefix string
	clock  *testenv.Clock // the client's clock and, unless split, the service's
	calls  atomic.Int64

	mu   sync.Mutex
	cred store.Credential
	err  error
	// block, when set, is waited on by every read.
	block chan struct{}
}

type setupOpts struct {
	serviceClock func() time.Time // default: the bundle's clock
	noService    bool
}

func setup(t *testing.T, o setupOpts) *bundle {
	t.Helper()
	nc, _, _ := testenv.NATS(t)
	b := &bundle{nc: nc, prefix: testenv.Unique("t") + ".", clock: testenv.NewClock(clockStart)}
	if o.noService {
		return b
	}
	if o.serviceClock == nil {
		o.serviceClock = b.clock.Now
	}
	svc, err := tokenservice.New(nc, tokenservice.Options{
		SubjectPrefix: b.prefix,
		Reader:        tokenservice.TokenReaderFunc(b.read),
		Clock:         o.serviceClock,
		// calls counts the client's fetches: the service's own cache,
		// which reads again after a renewal, is tested in tokenservice.
		CacheSize: -1,
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = svc.Stop() })
	require.NoError(t, nc.Flush())
	return b
}

func (b *bundle) read(ctx context.Context, id string) (store.Credential, error) {
	b.calls.Add(1)
	b.mu.Lock()
	cred, err, block := b.cred, b.err, b.block
	b.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return store.Credential{}, ctx.Err()
		}
	}
	if err != nil {
		return store.Credential{}, err
	}
	if id != cred.ID {
		return store.Credential{}, store.ErrNotFound
	}
	return cred, nil
}

// store sets the stored credential's current token.
func (b *bundle) store(gen int64, token string, expiresAt time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.err = nil
	b.cred = store.Credential{
		ID: credential, Vendor: vendor, State: store.StateActive, Generation: gen,
		Token: store.Token{AccessToken: secret.New(token), TokenType: "Bearer",
			IssuedAt: expiresAt.Add(-time.Hour), ExpiresAt: expiresAt},
	}
}

// blockReads makes every read wait until the returned channel is closed.
func (b *bundle) blockReads() chan struct{} {
	release := make(chan struct{})
	b.mu.Lock()
	defer b.mu.Unlock()
	b.block = release
	return release
}

func (b *bundle) fail(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.err = err
}

func (b *bundle) source(t *testing.T, opts ...client.Option) *client.TokenSource {
	t.Helper()
	opts = append([]client.Option{client.WithSubjectPrefix(b.prefix), client.WithClock(b.clock.Now)}, opts...)
	ts, err := client.NewTokenSource(b.nc, vendor, credential, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, ts.Close()) })
	return ts
}

// renewed publishes a token.renewed event as the relay does.
func (b *bundle) renewed(t *testing.T, gen int64) {
	t.Helper()
	env, err := events.New(events.TypeTokenRenewed, vendor, credential, b.clock.Now(), events.TokenRenewed{
		Vendor: vendor, Credential: credential, Generation: gen,
		IssuedAt: b.clock.Now(), ExpiresAt: b.clock.Now().Add(time.Hour), Fingerprint: secret.Fingerprint("x"),
	})
	require.NoError(t, err)
	body, err := json.Marshal(env)
	require.NoError(t, err)
	require.Equal(t, client.RenewedSubject(b.prefix, vendor, credential), b.prefix+env.Subject)
	require.NoError(t, b.nc.Publish(b.prefix+env.Subject, body))
}

func requireToken(t *testing.T, ts oauth2.TokenSource, want string) *oauth2.Token {
	t.Helper()
	tok, err := ts.Token()
	require.NoError(t, err)
	require.Equal(t, want, tok.AccessToken)
	return tok
}

func TestTokenIsCached(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	exp := b.clock.Now().Add(time.Hour)
	b.store(1, "tok-1", exp)
	ts := b.source(t)

	for range 10 {
		tok := requireToken(t, ts, "tok-1")
		require.Equal(t, "Bearer", tok.TokenType)
		require.True(t, exp.Equal(tok.Expiry), "expiry %s, want %s", tok.Expiry, exp)
	}
	require.EqualValues(t, 1, b.calls.Load())

	// A caller cannot change the cache through the token it got.
	tok := requireToken(t, ts, "tok-1")
	tok.AccessToken = "scribbled"
	requireToken(t, ts, "tok-1")
}

func TestTokenRefetchedNearExpiry(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		lifetime time.Duration
		margin   time.Duration // 0: default
		cached   time.Duration // still served from the cache this long before expiry
		refetch  time.Duration // fetched again this long before expiry
	}{
		{name: "default margin", lifetime: time.Hour, cached: 11 * time.Second, refetch: 9 * time.Second},
		{name: "short token: a fifth of its life", lifetime: 30 * time.Second, cached: 7 * time.Second, refetch: 5 * time.Second},
		{name: "custom margin", lifetime: time.Hour, margin: time.Minute, cached: 61 * time.Second, refetch: 59 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, setupOpts{})
			start := b.clock.Now()
			exp := start.Add(tt.lifetime)
			b.store(1, "tok-1", exp)
			var opts []client.Option
			if tt.margin > 0 {
				opts = append(opts, client.WithExpiryMargin(tt.margin))
			}
			ts := b.source(t, opts...)

			requireToken(t, ts, "tok-1")
			b.clock.Set(exp.Add(-tt.cached))
			requireToken(t, ts, "tok-1")
			require.EqualValues(t, 1, b.calls.Load())

			b.store(2, "tok-2", b.clock.Now().Add(time.Hour))
			b.clock.Set(exp.Add(-tt.refetch))
			requireToken(t, ts, "tok-2")
			require.EqualValues(t, 2, b.calls.Load())
		})
	}
}

func TestRenewedEventDropsCache(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	b.store(5, "tok-5", b.clock.Now().Add(time.Hour))
	ts := b.source(t)
	requireToken(t, ts, "tok-5")

	// The relay renews: the store moves on, then the event is published.
	b.store(6, "tok-6", b.clock.Now().Add(2*time.Hour))
	b.renewed(t, 6)
	// The new token is prefetched in the background...
	require.Eventually(t, func() bool { return b.calls.Load() == 2 }, wait, tick)
	// ...so the next call has it at once.
	require.Eventually(t, func() bool {
		tok, err := ts.Token()
		return err == nil && tok.AccessToken == "tok-6"
	}, wait, tick)
	require.EqualValues(t, 2, b.calls.Load())
	require.Equal(t, 1, client.Renewals(ts))

	// Older and equal generations (late or repeated events) change nothing.
	b.renewed(t, 4)
	b.renewed(t, 6)
	require.Eventually(t, func() bool { return client.EventsSeen(ts) == 3 }, wait, tick)
	require.Equal(t, 1, client.Renewals(ts))
	requireToken(t, ts, "tok-6")
	require.EqualValues(t, 2, b.calls.Load())

	// A malformed event is ignored too.
	require.NoError(t, b.nc.Publish(client.RenewedSubject(b.prefix, vendor, credential), []byte("{not json")))
	require.Eventually(t, func() bool { return client.EventsSeen(ts) == 4 }, wait, tick)
	require.Equal(t, 1, client.Renewals(ts))
}

func TestRenewedEventBeforeFirstTokenFetchesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	b.store(3, "tok-3", b.clock.Now().Add(time.Hour))
	ts := b.source(t)

	b.renewed(t, 3)
	require.Eventually(t, func() bool { return client.EventsSeen(ts) == 1 }, wait, tick)
	require.EqualValues(t, 0, b.calls.Load())
	requireToken(t, ts, "tok-3")
	require.EqualValues(t, 1, b.calls.Load())
}

func TestConcurrentCallersShareOneRequest(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	b.store(1, "tok-1", b.clock.Now().Add(time.Hour))
	release := b.blockReads()
	ts := b.source(t)

	const callers = 20
	var wg sync.WaitGroup
	tokens := make(chan string, callers)
	for range callers {
		wg.Go(func() {
			tok, err := ts.Token()
			if err != nil {
				tokens <- "error: " + err.Error()
				return
			}
			tokens <- tok.AccessToken
		})
	}
	// Every caller waits on the first caller's request, which has reached
	// the store and waits there.
	require.Eventually(t, func() bool { return client.Waiting(ts) == callers }, wait, tick)
	require.Eventually(t, func() bool { return b.calls.Load() == 1 }, wait, tick)
	close(release)
	wg.Wait()
	close(tokens)
	for tok := range tokens {
		require.Equal(t, "tok-1", tok)
	}
	require.EqualValues(t, 1, b.calls.Load())
}

func TestTokenContextGivesUpWithItsContext(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	b.store(1, "tok-1", b.clock.Now().Add(time.Hour))
	release := b.blockReads()
	ts := b.source(t)

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := ts.TokenContext(ctx)
		errc <- err
	}()
	require.Eventually(t, func() bool { return b.calls.Load() == 1 }, wait, tick)
	cancel()
	require.ErrorIs(t, <-errc, context.Canceled)

	// The shared request went on and its token is cached.
	close(release)
	require.Eventually(t, func() bool {
		tok, err := ts.Token()
		return err == nil && tok.AccessToken == "tok-1"
	}, wait, tick)
	require.EqualValues(t, 1, b.calls.Load())
}

func TestReplyErrors(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	ts := b.source(t)

	b.mu.Lock()
	b.cred = store.Credential{ID: credential, Vendor: vendor, State: store.StateRevoked, Generation: 3,
		Token: store.Token{AccessToken: secret.New("tok-3"), ExpiresAt: b.clock.Now().Add(time.Hour)}}
	b.mu.Unlock()
	_, err := ts.Token()
	require.ErrorIs(t, err, client.ErrRevoked)
	require.Contains(t, err.Error(), "halaxy-au/clinic-42")

	b.mu.Lock()
	b.cred.ID = "someone-else"
	b.mu.Unlock()
	_, err = ts.Token()
	require.ErrorIs(t, err, client.ErrNotFound)

	b.fail(errors.New("redis: connection refused"))
	_, err = ts.Token()
	require.ErrorIs(t, err, client.ErrUnavailable)
	require.NotContains(t, err.Error(), "redis")
}

func TestNoRelayIsUnavailable(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{noService: true})
	ts := b.source(t, client.WithTimeout(time.Second))
	_, err := ts.Token()
	require.ErrorIs(t, err, client.ErrUnavailable)
	require.ErrorIs(t, err, nats.ErrNoResponders)
}

func TestNeverReturnsAnExpiredToken(t *testing.T) {
	t.Parallel()

	t.Run("stale token is a fallback only until it expires", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{})
		exp := b.clock.Now().Add(time.Hour)
		b.store(1, "tok-1", exp)
		ts := b.source(t)
		requireToken(t, ts, "tok-1")

		// The store goes down inside the expiry margin: the old token,
		// still valid, is served.
		b.fail(errors.New("redis: i/o timeout"))
		b.clock.Set(exp.Add(-5 * time.Second))
		requireToken(t, ts, "tok-1")
		require.EqualValues(t, 2, b.calls.Load())

		// Once it has expired it is not.
		b.clock.Set(exp)
		tok, err := ts.Token()
		require.ErrorIs(t, err, client.ErrUnavailable)
		require.Nil(t, tok)
	})

	t.Run("relay says expired", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{})
		exp := b.clock.Now().Add(time.Hour)
		b.store(1, "tok-1", exp)
		ts := b.source(t)
		requireToken(t, ts, "tok-1")

		b.clock.Set(exp.Add(time.Second)) // no renewal came
		tok, err := ts.Token()
		require.ErrorIs(t, err, client.ErrExpired)
		require.Nil(t, tok)
	})

	t.Run("token expired on arrival by this host's clock", func(t *testing.T) {
		t.Parallel()
		serviceClock := testenv.NewClock(clockStart)
		b := setup(t, setupOpts{serviceClock: serviceClock.Now})
		b.store(1, "tok-1", serviceClock.Now().Add(time.Minute))
		b.clock.Set(serviceClock.Now().Add(2 * time.Minute)) // the client's clock runs ahead
		ts := b.source(t)

		tok, err := ts.Token()
		require.ErrorIs(t, err, client.ErrExpired)
		require.Nil(t, tok)
	})
}

func TestClose(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	b.store(1, "tok-1", b.clock.Now().Add(time.Hour))
	ts, err := client.NewTokenSource(b.nc, vendor, credential,
		client.WithSubjectPrefix(b.prefix), client.WithClock(b.clock.Now))
	require.NoError(t, err)
	requireToken(t, ts, "tok-1")

	require.NoError(t, ts.Close())
	require.NoError(t, ts.Close())
	_, err = ts.Token()
	require.ErrorIs(t, err, client.ErrClosed)
}

func TestNewTokenSourceRefusesBadArguments(t *testing.T) {
	t.Parallel()
	nc, _, _ := testenv.NATS(t)
	tests := []struct {
		name               string
		nc                 *nats.Conn
		vendor, credential string
		opts               []client.Option
	}{
		{name: "nil conn", vendor: vendor, credential: credential},
		{name: "empty vendor", nc: nc, credential: credential},
		{name: "dotted credential", nc: nc, vendor: vendor, credential: "a.b"},
		{name: "wildcard vendor", nc: nc, vendor: "*", credential: credential},
		{name: "wildcard prefix", nc: nc, vendor: vendor, credential: credential, opts: []client.Option{client.WithSubjectPrefix("t.>.")}},
		{name: "zero timeout", nc: nc, vendor: vendor, credential: credential, opts: []client.Option{client.WithTimeout(0)}},
		{name: "negative margin", nc: nc, vendor: vendor, credential: credential, opts: []client.Option{client.WithExpiryMargin(-time.Second)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ts, err := client.NewTokenSource(tt.nc, tt.vendor, tt.credential, tt.opts...)
			require.Error(t, err)
			require.Nil(t, ts)
		})
	}
}
