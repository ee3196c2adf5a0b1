package jobs

import (
	"bytes"
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/seal"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
	"github.com/tokenrelay/tokenrelay/internal/testenv/storetest"
	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/vendors"
	"github.com/tokenrelay/tokenrelay/vendors/redoxlegacy"
	"github.com/tokenrelay/tokenrelay/vendors/sandbox"
)

// outage is a bundle whose Redis can be taken down and brought back with
// its data, as a Redis restart from its append-only file does.
type outage struct {
	*bundle
	m    *miniredis.Miniredis
	ring *seal.Keyring
	logs *testenv.Buffer
	// abandoned counts RefreshDeps.Abandoned by vendor/reason.
	abandoned map[string]int
	// onFailedCommit, if set, is told the number of each failed commit.
	onFailedCommit func(n int)
	failedCommits  int
	amu            sync.Mutex
}

// watchStore tells its outage of each failed commit.
type watchStore struct {
	RefreshStore
	o *outage
}

func (w watchStore) CommitRenewals(ctx context.Context, commits []store.RenewalCommit) ([]error, error) {
	res, err := w.RefreshStore.CommitRenewals(ctx, commits)
	if err != nil {
		w.o.amu.Lock()
		w.o.failedCommits++
		n, fn := w.o.failedCommits, w.o.onFailedCommit
		w.o.amu.Unlock()
		if fn != nil {
			fn(n)
		}
	}
	return res, err
}

// afterFailedCommits runs fn once n commits have failed.
func (o *outage) afterFailedCommits(n int, fn func()) {
	o.amu.Lock()
	defer o.amu.Unlock()
	o.onFailedCommit = func(got int) {
		if got == n {
			fn()
		}
	}
}

func setupOutage(t *testing.T, d RefreshDeps) *outage {
	t.Helper()
	o := &outage{m: miniredis.RunT(t), logs: &testenv.Buffer{}, abandoned: map[string]int{}}
	// One dial per try, so that the old code's tries go by quickly.
	rdb := redis.NewClient(&redis.Options{Addr: o.m.Addr(), DialTimeout: 100 * time.Millisecond, MaxRetries: -1, DialerRetries: 1})
	t.Cleanup(func() { _ = rdb.Close() })
	var err error
	o.ring, err = seal.NewKeyring(make([]byte, seal.KeySize))
	require.NoError(t, err)
	b := &bundle{clock: testenv.NewClock(storetest.T0), rdb: rdb}
	b.st, err = store.New(rdb, store.Options{Prefix: "t:", Keyring: o.ring, Clock: b.clock.Now})
	require.NoError(t, err)
	o.bundle = b
	o.init(t, o.deps(d))
	return o
}

// deps adds the outage's store, logger and abandon counter to d.
func (o *outage) deps(d RefreshDeps) RefreshDeps {
	d.Store = watchStore{RefreshStore: o.st, o: o}
	d.Logger = zerolog.New(o.logs)
	d.Abandoned = func(vendor, reason string) {
		o.amu.Lock()
		defer o.amu.Unlock()
		o.abandoned[vendor+"/"+reason]++
	}
	return d
}

func (o *outage) abandons() map[string]int {
	o.amu.Lock()
	defer o.amu.Unlock()
	out := map[string]int{}
	for k, v := range o.abandoned {
		out[k] = v
	}
	return out
}

// downOnCall makes the vendor call take Redis down, as if it failed while
// the vendor answered, and then run then (if set).
func (o *outage) downOnCall(then func()) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.onCall = func() {
		o.m.Close()
		if then != nil {
			then()
		}
	}
}

func (o *outage) generation(t *testing.T) store.Credential {
	t.Helper()
	c, err := o.st.Get(context.Background(), "c1")
	require.NoError(t, err)
	return c
}

// oldCommitTries is how many commits the handler used to try before it
// dropped the token; the outages below last longer.
const oldCommitTries = 5

// A Redis outage longer than the old retry window while a token waits to be
// stored: it is stored once Redis is back, with one vendor call.
func TestRefreshKeepsAnIssuedTokenAcrossARedisOutage(t *testing.T) {
	t.Parallel()
	o := setupOutage(t, RefreshDeps{})
	o.downOnCall(nil)
	o.afterFailedCommits(oldCommitTries+3, func() { require.NoError(t, o.m.Restart()) })
	require.NoError(t, o.h.Handle(context.Background(), Refresh{Credential: "c1", Generation: 0}))
	c := o.generation(t)
	require.Equal(t, int64(1), c.Generation)
	require.Equal(t, "tok-1", c.Token.AccessToken.Reveal())
	require.Equal(t, store.StateActive, c.State)
	require.Len(t, o.outbox(t), 1)
	require.Equal(t, 1, o.callCount())
	require.Empty(t, o.abandons())
}

// The same in a batch: every token of the batch is kept.
func TestRefreshBatchKeepsIssuedTokensAcrossARedisOutage(t *testing.T) {
	t.Parallel()
	o := setupOutage(t, RefreshDeps{})
	_, err := o.st.Upsert(context.Background(), store.NewCredential{ID: "c2", Vendor: "halaxy-au", ClientID: "cid2", Keys: store.Keys{ClientSecret: secret.New("s")}})
	require.NoError(t, err)
	var once sync.Once
	o.mu.Lock()
	o.onCall = func() { once.Do(o.m.Close) }
	o.mu.Unlock()
	o.afterFailedCommits(oldCommitTries+3, func() { require.NoError(t, o.m.Restart()) })
	require.NoError(t, o.h.HandleBatch(context.Background(), RefreshBatch{Items: []Refresh{{Credential: "c1"}, {Credential: "c2"}}}))
	for _, id := range []string{"c1", "c2"} {
		c, err := o.st.Get(context.Background(), id)
		require.NoError(t, err)
		require.Equal(t, int64(1), c.Generation, id)
	}
	require.Equal(t, 2, o.callCount())
}

// A token that expires before Redis is back is abandoned: an error line
// naming the credential, generation and token fingerprint (not the token),
// and the metric.
func TestRefreshAbandonsATokenThatExpiresBeforeRedisReturns(t *testing.T) {
	t.Parallel()
	o := setupOutage(t, RefreshDeps{})
	o.downOnCall(nil)
	o.afterFailedCommits(3, func() { o.clock.Advance(16 * time.Minute) })
	require.NoError(t, o.h.Handle(context.Background(), Refresh{Credential: "c1", Generation: 0}))
	require.Equal(t, map[string]int{"halaxy-au/" + AbandonExpired: 1}, o.abandons())
	logs := o.logs.String()
	require.Contains(t, logs, `"level":"error"`)
	require.Contains(t, logs, `"credential":"c1"`)
	require.Contains(t, logs, `"generation":0`)
	require.Contains(t, logs, `"token_fingerprint":"`+secret.Fingerprint("tok-1")+`"`)
	require.Contains(t, logs, `"refresh_token_lost":false`)
	require.NotContains(t, logs, "tok-1")

	require.NoError(t, o.m.Restart())
	require.Equal(t, int64(0), o.generation(t).Generation)
	require.Equal(t, 1, o.callCount())
}

// A worker stopped while a token waits for Redis spools it, sealed; the
// next start commits it before anything else, without a second vendor call.
func TestRefreshSpoolsATokenAtShutdownAndCommitsItAtStart(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "spool")
	o := setupOutage(t, RefreshDeps{})
	spool, err := NewFileSpool(dir, o.ring)
	require.NoError(t, err)
	o.h = o.handler(t, o.deps(RefreshDeps{Spool: spool}))
	o.downOnCall(o.h.Stop) // the worker is told to stop while the vendor answers
	require.NoError(t, o.h.Handle(context.Background(), Refresh{Credential: "c1", Generation: 0}))
	require.Empty(t, o.abandons())

	files, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, files, 1)
	fi, err := files[0].Info()
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	text, err := os.ReadFile(filepath.Join(dir, files[0].Name()))
	require.NoError(t, err)
	require.NotContains(t, string(text), "tok-1")

	// Redis comes back a while after the new worker starts: CommitSpooled
	// waits for it.
	o.afterFailedCommits(3, func() { require.NoError(t, o.m.Restart()) })
	restarted := o.handler(t, o.deps(RefreshDeps{Spool: spool}))
	require.NoError(t, restarted.CommitSpooled(context.Background()))
	c := o.generation(t)
	require.Equal(t, int64(1), c.Generation)
	require.Equal(t, "tok-1", c.Token.AccessToken.Reveal())
	require.Equal(t, 1, o.callCount())
	files, err = os.ReadDir(dir)
	require.NoError(t, err)
	require.Empty(t, files)
}

// Without a spool, a token still waiting at shutdown is abandoned, loudly.
func TestRefreshWithoutSpoolAbandonsAtShutdown(t *testing.T) {
	t.Parallel()
	o := setupOutage(t, RefreshDeps{})
	o.downOnCall(o.h.Stop)
	require.NoError(t, o.h.Handle(context.Background(), Refresh{Credential: "c1", Generation: 0}))
	require.Equal(t, map[string]int{"halaxy-au/" + AbandonShutdown: 1}, o.abandons())
}

// A spooled token that another worker has superseded is dropped; one bound
// to another credential does not open.
func TestSpoolStaleAndTampered(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	o := setupOutage(t, RefreshDeps{})
	spool, err := NewFileSpool(dir, o.ring)
	require.NoError(t, err)
	o.h = o.handler(t, o.deps(RefreshDeps{Spool: spool}))
	o.downOnCall(o.h.Stop)
	require.NoError(t, o.h.Handle(context.Background(), Refresh{Credential: "c1", Generation: 0}))
	require.NoError(t, o.m.Restart())

	// Tampered: the clear header names another generation.
	entries, err := spool.List()
	require.NoError(t, err)
	require.Len(t, entries, 1)
	name := filepath.Join(dir, entries[0].Name)
	text, err := os.ReadFile(name)
	require.NoError(t, err)
	bad := bytes.Replace(text, []byte(`"generation":0`), []byte(`"generation":7`), 1)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "x"+spoolSuffix), bad, 0o600))
	entries, err = spool.List()
	require.NoError(t, err)
	require.Len(t, entries, 2)
	require.ErrorIs(t, entries[1].Err, seal.ErrAuth)

	// Superseded: another worker renewed c1 meanwhile.
	o.answer(halaxyToken(o.clock.Now(), "tok-2"), nil)
	o.onCall = nil
	o.clock.Advance(11 * time.Second) // the first claim's lease is over
	require.NoError(t, o.handler(t, RefreshDeps{}).Handle(context.Background(), Refresh{Credential: "c1", Generation: 0}))
	require.NoError(t, o.handler(t, o.deps(RefreshDeps{Spool: spool})).CommitSpooled(context.Background()))
	c := o.generation(t)
	require.Equal(t, int64(1), c.Generation)
	require.Equal(t, "tok-2", c.Token.AccessToken.Reveal())
	entries, err = spool.List()
	require.NoError(t, err)
	require.Len(t, entries, 1, "the unreadable entry stays for an operator")
	require.Error(t, entries[0].Err)
}

// A lost answer held the credential's new refresh token, and the stored
// one was consumed by the call. Redox legacy in refresh mode recovers: the
// refused refresh falls back to authenticating with key and secret, in the
// same renewal; nothing is reported revoked.
func TestRefreshRecoversAConsumedRefreshTokenByAuthenticating(t *testing.T) {
	t.Parallel()
	o := setupOutage(t, RefreshDeps{})
	sb := sandbox.New(sandbox.Options{Clock: o.clock.Now})
	sb.AddClient("cid", "csecret")
	srv := httptest.NewServer(sb.Handler())
	t.Cleanup(srv.Close)
	adapter, err := redoxlegacy.New(redoxlegacy.Options{BaseURL: srv.URL + sandbox.RedoxLegacyPath, Mode: redoxlegacy.ModeRefresh, Clock: o.clock.Now})
	require.NoError(t, err)
	o.vendor.Tokens = tokenFunc(func(ctx context.Context, c vendors.Credential) (vendors.Token, error) {
		o.mu.Lock()
		onCall := o.onCall
		o.mu.Unlock()
		tok, err := adapter.Token(ctx, c)
		if onCall != nil {
			onCall()
		}
		return tok, err
	})
	o.vendor.MaxLifetime = 0 // (the bundle names its vendor instance halaxy-au whatever its adapter)
	ctx := context.Background()

	require.NoError(t, o.h.Handle(ctx, Refresh{Credential: "c1", Generation: 0})) // authenticate
	stored := o.generation(t)
	require.False(t, stored.Token.RefreshToken.IsZero())

	// The refresh of generation 1 consumes the stored refresh token, and
	// its answer is lost: Redis stays away until the token has expired.
	o.clock.Advance(16 * time.Hour)
	o.downOnCall(nil)
	o.afterFailedCommits(2, func() { o.clock.Advance(25 * time.Hour) })
	require.NoError(t, o.h.Handle(ctx, Refresh{Credential: "c1", Generation: 1}))
	require.Contains(t, o.logs.String(), `"refresh_token_lost":true`)
	require.Equal(t, map[string]int{"halaxy-au/" + AbandonExpired: 1}, o.abandons())

	require.NoError(t, o.m.Restart())
	o.mu.Lock()
	o.onCall = nil
	o.mu.Unlock()
	require.NoError(t, o.h.Handle(ctx, Refresh{Credential: "c1", Generation: 1}))
	c := o.generation(t)
	require.Equal(t, int64(2), c.Generation)
	require.Equal(t, store.StateActive, c.State)
	st := sb.RedoxLegacyStats("cid")
	require.Equal(t, 2, st.Authenticate, "the refused refresh fell back to authenticating")
	require.Equal(t, 1, st.RefreshRefused)
	for _, ev := range o.outbox(t) {
		require.NotEqual(t, events.TypeKeyRevoked, ev.Type)
	}
}
