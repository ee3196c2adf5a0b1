package store_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/seal"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
	"github.com/tokenrelay/tokenrelay/secret"
)

// t0 is the start of every test clock, on a whole millisecond as the store
// keeps times.
var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

const (
	lease         = 30 * time.Second
	vendor        = "halaxy-au"
	clientID      = "cid-3f6c1a2e-1234-4abc-9def-0123456789ab"
	clientSecret  = "client-secret-Zq81kLp02mNx7TtYb4Wv9dCe"
	accessToken   = "access-token-eyJhbGciOiJSUzI1NiJ9.payload.sig"
	refreshToken  = "refresh-token-R3fr35h-9s8d7f6g5h4j3k2l"
	accessToken2  = "access-token-second-generation-0a9b8c7d6e"
	refreshToken2 = "refresh-token-second-generation-1z2y3x4w"
)

// bundle is what a test works with.
type bundle struct {
	ctx    context.Context
	rdb    redis.UniversalClient
	store  *store.Store
	clock  *testenv.Clock // the store reads it through Options.Clock
	ring   *seal.Keyring
	prefix string
}

func (b *bundle) credKey(id string) string { return b.prefix + "cred:" + id }
func (b *bundle) dueKey() string           { return b.prefix + "due" }
func (b *bundle) outboxKey() string        { return events.OutboxKey(b.prefix) }

func testKeyring(t testing.TB, current byte, old ...byte) *seal.Keyring {
	t.Helper()
	var olds [][]byte
	for _, o := range old {
		olds = append(olds, bytes.Repeat([]byte{o}, seal.KeySize))
	}
	ring, err := seal.NewKeyring(bytes.Repeat([]byte{current}, seal.KeySize), olds...)
	require.NoError(t, err)
	return ring
}

// newBundle builds a store on rdb under prefix with a test clock at t0.
func newBundle(t testing.TB, rdb redis.UniversalClient, prefix string) *bundle {
	t.Helper()
	b := &bundle{ctx: context.Background(), rdb: rdb, clock: testenv.NewClock(t0), ring: testKeyring(t, 1), prefix: prefix}
	s, err := store.New(rdb, store.Options{Prefix: prefix, Keyring: b.ring, Clock: b.clock.Now})
	require.NoError(t, err)
	b.store = s
	return b
}

// setup runs a store on a fresh miniredis with the default prefix.
func setup(t *testing.T) *bundle {
	t.Helper()
	return newBundle(t, testenv.Miniredis(t), events.DefaultPrefix)
}

func newCred(id string) store.NewCredential {
	return store.NewCredential{ID: id, Vendor: vendor, ClientID: clientID, Keys: store.Keys{ClientSecret: secret.New(clientSecret)}}
}

// add upserts a new credential.
func (b *bundle) add(t testing.TB, id string) {
	t.Helper()
	res, err := b.store.Upsert(b.ctx, newCred(id))
	require.NoError(t, err)
	require.Equal(t, store.Created, res)
}

func renewedEvent(t testing.TB, id string, gen int64, at time.Time) events.Envelope {
	t.Helper()
	ev, err := events.New(events.TypeTokenRenewed, vendor, id, at, events.TokenRenewed{
		Vendor: vendor, Credential: id, Generation: gen, IssuedAt: at, ExpiresAt: at.Add(15 * time.Minute),
		Fingerprint: secret.Fingerprint(accessToken),
	})
	require.NoError(t, err)
	return ev
}

func failedEvent(t testing.TB, typ, id string, at time.Time) events.Envelope {
	t.Helper()
	ev, err := events.New(typ, vendor, id, at, map[string]string{"credential": id})
	require.NoError(t, err)
	return ev
}

func renewal(at time.Time, access, refresh string) store.Renewal {
	return store.Renewal{
		Token: store.Token{
			AccessToken: secret.New(access), TokenType: "Bearer",
			IssuedAt: at, ExpiresAt: at.Add(15 * time.Minute), RefreshToken: secret.New(refresh),
		},
		NextRefresh: at.Add(10 * time.Minute),
	}
}

// renew claims and renews generation gen of id as owner "w1".
func (b *bundle) renew(t testing.TB, id string, gen int64, access, refresh string) {
	t.Helper()
	_, err := b.store.Claim(b.ctx, id, gen, "w1", lease)
	require.NoError(t, err)
	now := b.clock.Now()
	require.NoError(t, b.store.CommitRenewal(b.ctx, id, "w1", gen, renewal(now, access, refresh), renewedEvent(t, id, gen+1, now)))
}

// fail claims generation gen of id as owner "w1" and records f.
func (b *bundle) fail(t testing.TB, id string, gen int64, f store.Failure) {
	t.Helper()
	_, err := b.store.Claim(b.ctx, id, gen, "w1", lease)
	require.NoError(t, err)
	require.NoError(t, b.store.CommitFailure(b.ctx, id, "w1", gen, f))
}

// snapshot is everything the store keeps about one credential plus the
// outbox, to show that a refused operation wrote nothing.
type snapshot struct {
	Hash   map[string]string
	Due    *float64
	Outbox int64
}

func (b *bundle) snapshot(t testing.TB, id string) snapshot {
	t.Helper()
	h, err := b.rdb.HGetAll(b.ctx, b.credKey(id)).Result()
	require.NoError(t, err)
	var due *float64
	if score, err := b.rdb.ZScore(b.ctx, b.dueKey(), id).Result(); err == nil {
		due = &score
	} else {
		require.ErrorIs(t, err, redis.Nil)
	}
	n, err := b.rdb.XLen(b.ctx, b.outboxKey()).Result()
	require.NoError(t, err)
	return snapshot{Hash: h, Due: due, Outbox: n}
}

func (b *bundle) dueAt(t testing.TB, id string) time.Time {
	t.Helper()
	score, err := b.rdb.ZScore(b.ctx, b.dueKey(), id).Result()
	require.NoError(t, err, "%s is not in the due index", id)
	return time.UnixMilli(int64(score)).UTC()
}

func (b *bundle) notDue(t testing.TB, id string) {
	t.Helper()
	_, err := b.rdb.ZScore(b.ctx, b.dueKey(), id).Result()
	require.ErrorIs(t, err, redis.Nil, "%s should not be in the due index", id)
}

func (b *bundle) outbox(t testing.TB) []redis.XMessage {
	t.Helper()
	msgs, err := b.rdb.XRange(b.ctx, b.outboxKey(), "-", "+").Result()
	require.NoError(t, err)
	return msgs
}

// requireOutboxEntry checks that msg is ev in the format of
// events/outbox_format.go: exactly id, subject and the envelope's JSON.
func requireOutboxEntry(t testing.TB, ev events.Envelope, msg redis.XMessage) {
	t.Helper()
	require.Len(t, msg.Values, 3)
	require.Equal(t, ev.ID, msg.Values[events.OutboxFieldID])
	require.Equal(t, ev.Subject, msg.Values[events.OutboxFieldSubject])
	raw, ok := msg.Values[events.OutboxFieldEvent].(string)
	require.True(t, ok)
	var got events.Envelope
	require.NoError(t, json.Unmarshal([]byte(raw), &got))
	require.NoError(t, got.Validate())
	require.Equal(t, ev.ID, got.ID)
	require.Equal(t, ev.Type, got.Type)
	require.Equal(t, ev.Subject, got.Subject)
	require.True(t, ev.Time.Equal(got.Time))
	require.JSONEq(t, string(ev.Data), string(got.Data))
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	rdb := testenv.Miniredis(t)

	_, err := store.New(rdb, store.Options{})
	require.ErrorContains(t, err, "Keyring is required")
	_, err = store.New(nil, store.Options{Keyring: testKeyring(t, 1)})
	require.ErrorContains(t, err, "Redis client is required")
}

func TestUpsertCreates(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.add(t, "clinic-42")

	c, err := b.store.Get(b.ctx, "clinic-42")
	require.NoError(t, err)
	require.Equal(t, store.Credential{
		ID: "clinic-42", Vendor: vendor, ClientID: clientID, Keys: store.Keys{ClientSecret: secret.New(clientSecret)},
		State: store.StateActive, NextRefresh: t0, CreatedAt: t0, UpdatedAt: t0,
	}, c)

	// Due right away, and listed.
	require.Equal(t, t0, b.dueAt(t, "clinic-42"))
	n, err := b.store.Count(b.ctx)
	require.NoError(t, err)
	require.EqualValues(t, 1, n)
}

func TestUpsertValidates(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.store.Upsert(b.ctx, store.NewCredential{Vendor: vendor})
	require.ErrorContains(t, err, "credential id is empty")
	_, err = b.store.Upsert(b.ctx, store.NewCredential{ID: "x"})
	require.ErrorContains(t, err, "vendor is empty")
	n, err := b.store.Count(b.ctx)
	require.NoError(t, err)
	require.Zero(t, n)
}

func TestUpsertUnchangedWritesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.add(t, "clinic-42")
	before := b.snapshot(t, "clinic-42")

	b.clock.Advance(time.Minute)
	res, err := b.store.Upsert(b.ctx, newCred("clinic-42"))
	require.NoError(t, err)
	require.Equal(t, store.Unchanged, res)
	require.Equal(t, before, b.snapshot(t, "clinic-42"))
}

func TestUpsertUpdates(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		change func(*store.NewCredential)
	}{
		{"new secret", func(c *store.NewCredential) { c.ClientSecret = secret.New("a-brand-new-client-secret") }},
		{"new client id", func(c *store.NewCredential) { c.ClientID = "another-client-id" }},
		{"secret removed", func(c *store.NewCredential) { c.ClientSecret = secret.Value{} }},
		{"new vendor name", func(c *store.NewCredential) { c.Vendor = "halaxy-nz" }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			b.add(t, "clinic-42")
			b.renew(t, "clinic-42", 0, accessToken, refreshToken)
			before, err := b.store.Get(b.ctx, "clinic-42")
			require.NoError(t, err)
			dueBefore := b.dueAt(t, "clinic-42")

			b.clock.Advance(time.Minute)
			nc := newCred("clinic-42")
			tc.change(&nc)
			res, err := b.store.Upsert(b.ctx, nc)
			require.NoError(t, err)
			require.Equal(t, store.Updated, res)

			after, err := b.store.Get(b.ctx, "clinic-42")
			require.NoError(t, err)
			want := before
			want.Vendor, want.ClientID, want.ClientSecret = nc.Vendor, nc.ClientID, nc.ClientSecret
			want.UpdatedAt = t0.Add(time.Minute)
			require.Equal(t, want, after, "only the client fields and updated time change")
			require.Equal(t, dueBefore, b.dueAt(t, "clinic-42"))

			// The same again is unchanged.
			res, err = b.store.Upsert(b.ctx, nc)
			require.NoError(t, err)
			require.Equal(t, store.Unchanged, res)
		})
	}
}

func TestUpsertKeepsRevokedRevoked(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.add(t, "clinic-42")
	b.fail(t, "clinic-42", 0, store.Failure{State: store.StateRevoked, Class: "invalid_client", Message: "client refused"})

	nc := newCred("clinic-42")
	nc.ClientSecret = secret.New("a-brand-new-client-secret")
	res, err := b.store.Upsert(b.ctx, nc)
	require.NoError(t, err)
	require.Equal(t, store.Updated, res)

	c, err := b.store.Get(b.ctx, "clinic-42")
	require.NoError(t, err)
	require.Equal(t, store.StateRevoked, c.State)
	require.True(t, c.ClientSecret.Equal(nc.ClientSecret))
	b.notDue(t, "clinic-42")
}

func TestNotFound(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.store.Get(b.ctx, "nobody")
	require.ErrorIs(t, err, store.ErrNotFound)
	require.EqualError(t, err, "store: get nobody: store: credential not found")
	_, err = b.store.CurrentToken(b.ctx, "nobody")
	require.ErrorIs(t, err, store.ErrNotFound)
	_, err = b.store.Claim(b.ctx, "nobody", 0, "w1", lease)
	require.ErrorIs(t, err, store.ErrNotFound)
	now := b.clock.Now()
	// A commit for a credential that is gone is stale too: its claim is gone.
	err = b.store.CommitRenewal(b.ctx, "nobody", "w1", 0, renewal(now, accessToken, ""), renewedEvent(t, "nobody", 1, now))
	require.ErrorIs(t, err, store.ErrNotFound)
	require.ErrorIs(t, err, store.ErrStale)
	err = b.store.CommitFailure(b.ctx, "nobody", "w1", 0, store.Failure{State: store.StateFailing, RetryAt: now})
	require.ErrorIs(t, err, store.ErrNotFound)
	require.ErrorIs(t, err, store.ErrStale)
	// Releasing it is a no-op.
	require.NoError(t, b.store.Release(b.ctx, "nobody", "w1", now))

	// None of them left anything behind.
	keys, err := b.rdb.Keys(b.ctx, "*").Result()
	require.NoError(t, err)
	require.Empty(t, keys)
}

func TestCurrentTokenOpensOnlyTheAccessToken(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.add(t, "clinic-42")
	b.renew(t, "clinic-42", 0, accessToken, refreshToken)

	full, err := b.store.Get(b.ctx, "clinic-42")
	require.NoError(t, err)
	require.Equal(t, refreshToken, full.Token.RefreshToken.Reveal())

	c, err := b.store.CurrentToken(b.ctx, "clinic-42")
	require.NoError(t, err)
	require.Equal(t, accessToken, c.Token.AccessToken.Reveal())
	require.True(t, c.ClientSecret.IsZero())
	require.True(t, c.Token.RefreshToken.IsZero())

	want := full
	want.ClientSecret, want.Token.RefreshToken = secret.Value{}, secret.Value{}
	require.Equal(t, want, c)
}

func TestClaim(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.add(t, "clinic-42")
	b.renew(t, "clinic-42", 0, accessToken, refreshToken) // generation 1, active

	c, err := b.store.Claim(b.ctx, "clinic-42", 1, "w1", lease)
	require.NoError(t, err)
	require.Equal(t, store.StateRefreshing, c.State)
	require.EqualValues(t, 1, c.Generation)
	require.Equal(t, clientSecret, c.ClientSecret.Reveal())
	require.Equal(t, accessToken, c.Token.AccessToken.Reveal())
	require.Equal(t, refreshToken, c.Token.RefreshToken.Reveal())
	require.Equal(t, t0.Add(10*time.Minute), b.dueAt(t, "clinic-42"), "a claim never moves a due time earlier")

	// Another owner waits for the claim.
	_, err = b.store.Claim(b.ctx, "clinic-42", 1, "w2", lease)
	var busy *store.BusyError
	require.ErrorAs(t, err, &busy)
	require.Equal(t, t0.Add(lease), busy.Until)
	require.False(t, errors.Is(err, store.ErrStale))

	// The same owner again extends the claim.
	b.clock.Advance(10 * time.Second)
	_, err = b.store.Claim(b.ctx, "clinic-42", 1, "w1", lease)
	require.NoError(t, err)
	_, err = b.store.Claim(b.ctx, "clinic-42", 1, "w2", lease)
	require.ErrorAs(t, err, &busy)
	require.Equal(t, t0.Add(10*time.Second+lease), busy.Until)

	// An old generation is stale, whoever asks.
	_, err = b.store.Claim(b.ctx, "clinic-42", 0, "w1", lease)
	require.ErrorIs(t, err, store.ErrStale)
	_, err = b.store.Claim(b.ctx, "clinic-42", 2, "w1", lease)
	require.ErrorIs(t, err, store.ErrStale)

	// Once the claim has run out, another owner takes it over, and the
	// first one can no longer commit.
	b.clock.Advance(lease)
	_, err = b.store.Claim(b.ctx, "clinic-42", 1, "w2", lease)
	require.NoError(t, err)
	now := b.clock.Now()
	err = b.store.CommitRenewal(b.ctx, "clinic-42", "w1", 1, renewal(now, accessToken2, ""), renewedEvent(t, "clinic-42", 2, now))
	require.ErrorIs(t, err, store.ErrStale)

	// Release by w2 restores the state from before the first claim.
	require.NoError(t, b.store.Release(b.ctx, "clinic-42", "w2", now))
	c, err = b.store.Get(b.ctx, "clinic-42")
	require.NoError(t, err)
	require.Equal(t, store.StateActive, c.State)
}

func TestClaimValidates(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.add(t, "clinic-42")
	_, err := b.store.Claim(b.ctx, "clinic-42", 0, "", lease)
	require.ErrorContains(t, err, "owner must be set")
	_, err = b.store.Claim(b.ctx, "clinic-42", 0, "w1", 0)
	require.ErrorContains(t, err, "lease")
}

func TestClaimRevokedIsStale(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.add(t, "clinic-42")
	b.fail(t, "clinic-42", 0, store.Failure{State: store.StateRevoked, Class: "invalid_client"})

	before := b.snapshot(t, "clinic-42")
	for _, owner := range []string{"w1", "w2"} {
		_, err := b.store.Claim(b.ctx, "clinic-42", 0, owner, lease)
		require.ErrorIs(t, err, store.ErrStale)
	}
	require.Equal(t, before, b.snapshot(t, "clinic-42"))
}

func TestCommitRenewal(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.add(t, "clinic-42")

	// A failure first, to see the renewal clear it.
	b.fail(t, "clinic-42", 0, store.Failure{
		State: store.StateFailing, Class: "server_error", Message: "HTTP 503", RetryAt: t0.Add(time.Second),
	})
	require.Len(t, b.outbox(t), 0)

	b.clock.Advance(time.Second)
	now := b.clock.Now()
	_, err := b.store.Claim(b.ctx, "clinic-42", 0, "w1", lease)
	require.NoError(t, err)
	ev := renewedEvent(t, "clinic-42", 1, now)
	r := renewal(now, accessToken, refreshToken)
	require.NoError(t, b.store.CommitRenewal(b.ctx, "clinic-42", "w1", 0, r, ev))

	c, err := b.store.Get(b.ctx, "clinic-42")
	require.NoError(t, err)
	require.Equal(t, store.Credential{
		ID: "clinic-42", Vendor: vendor, ClientID: clientID, Keys: store.Keys{ClientSecret: secret.New(clientSecret)},
		State: store.StateActive, Generation: 1, Token: r.Token, NextRefresh: r.NextRefresh,
		CreatedAt: t0, UpdatedAt: now,
	}, c)
	require.Equal(t, r.NextRefresh, b.dueAt(t, "clinic-42"))

	msgs := b.outbox(t)
	require.Len(t, msgs, 1)
	requireOutboxEntry(t, ev, msgs[0])

	raw, err := b.rdb.HGetAll(b.ctx, b.credKey("clinic-42")).Result()
	require.NoError(t, err)
	for _, f := range []string{"claim_owner", "claim_until", "prev_state", "failures", "last_class", "last_error"} {
		require.NotContains(t, raw, f, "cleared by a renewal")
	}

	// A renewal without a refresh token keeps the stored one.
	b.clock.Advance(10 * time.Minute)
	now = b.clock.Now()
	_, err = b.store.Claim(b.ctx, "clinic-42", 1, "w2", lease)
	require.NoError(t, err)
	r2 := renewal(now, accessToken2, "")
	require.NoError(t, b.store.CommitRenewal(b.ctx, "clinic-42", "w2", 1, r2, renewedEvent(t, "clinic-42", 2, now)))
	c, err = b.store.Get(b.ctx, "clinic-42")
	require.NoError(t, err)
	require.EqualValues(t, 2, c.Generation)
	require.Equal(t, accessToken2, c.Token.AccessToken.Reveal())
	require.Equal(t, refreshToken, c.Token.RefreshToken.Reveal())
	require.Len(t, b.outbox(t), 2)

	// A rotated refresh token replaces it.
	_, err = b.store.Claim(b.ctx, "clinic-42", 2, "w1", lease)
	require.NoError(t, err)
	require.NoError(t, b.store.CommitRenewal(b.ctx, "clinic-42", "w1", 2, renewal(now, accessToken, refreshToken2), renewedEvent(t, "clinic-42", 3, now)))
	c, err = b.store.Get(b.ctx, "clinic-42")
	require.NoError(t, err)
	require.Equal(t, refreshToken2, c.Token.RefreshToken.Reveal())
}

func TestStaleCommitsWriteNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.add(t, "clinic-42")
	b.renew(t, "clinic-42", 0, accessToken, refreshToken) // generation 1, one outbox entry
	b.add(t, "clinic-43")                                 // generation 0, never claimed
	_, err := b.store.Claim(b.ctx, "clinic-42", 1, "w1", lease)
	require.NoError(t, err)

	now := b.clock.Now()
	cases := []struct {
		name  string
		id    string
		owner string
		gen   int64
	}{
		{"another owner", "clinic-42", "w2", 1},
		{"old generation", "clinic-42", "w1", 0},
		{"future generation", "clinic-42", "w1", 2},
		{"never claimed", "clinic-43", "w1", 0},
	}
	for _, c := range cases {
		before42, before43 := b.snapshot(t, "clinic-42"), b.snapshot(t, "clinic-43")

		err := b.store.CommitRenewal(b.ctx, c.id, c.owner, c.gen, renewal(now, accessToken2, refreshToken2), renewedEvent(t, c.id, c.gen+1, now))
		require.ErrorIs(t, err, store.ErrStale, c.name)
		require.Equal(t, "store: commit renewal "+c.id+": store: stale generation or claim", err.Error())

		err = b.store.CommitFailure(b.ctx, c.id, c.owner, c.gen,
			store.Failure{State: store.StateRevoked, Class: "invalid_client"},
			failedEvent(t, events.TypeKeyRevoked, c.id, now))
		require.ErrorIs(t, err, store.ErrStale, c.name)

		require.Equal(t, before42, b.snapshot(t, "clinic-42"), c.name)
		require.Equal(t, before43, b.snapshot(t, "clinic-43"), c.name)
	}
	require.Len(t, b.outbox(t), 1)
}

func TestCommitValidates(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.add(t, "clinic-42")
	_, err := b.store.Claim(b.ctx, "clinic-42", 0, "w1", lease)
	require.NoError(t, err)
	now := b.clock.Now()
	good := renewedEvent(t, "clinic-42", 1, now)
	before := b.snapshot(t, "clinic-42")

	bad := good
	bad.ID = ""
	err = b.store.CommitRenewal(b.ctx, "clinic-42", "w1", 0, renewal(now, accessToken, ""), bad)
	require.ErrorContains(t, err, "envelope lacks id")
	err = b.store.CommitRenewal(b.ctx, "clinic-42", "w1", 0, renewal(now, "", ""), good)
	require.ErrorContains(t, err, "access token is empty")
	noNext := renewal(now, accessToken, "")
	noNext.NextRefresh = time.Time{}
	err = b.store.CommitRenewal(b.ctx, "clinic-42", "w1", 0, noNext, good)
	require.ErrorContains(t, err, "next refresh time is zero")

	err = b.store.CommitFailure(b.ctx, "clinic-42", "w1", 0, store.Failure{State: store.StateActive, RetryAt: now})
	require.ErrorContains(t, err, `state "active" is not failing, expired or revoked`)
	err = b.store.CommitFailure(b.ctx, "clinic-42", "w1", 0, store.Failure{State: store.StateFailing})
	require.ErrorContains(t, err, "retry time is zero")
	err = b.store.CommitFailure(b.ctx, "clinic-42", "w1", 0, store.Failure{State: store.StateExpired, RetryAt: now}, good, bad)
	require.ErrorContains(t, err, "envelope lacks id")

	require.Equal(t, before, b.snapshot(t, "clinic-42"))
}

func TestCommitFailure(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.add(t, "clinic-42")
	b.renew(t, "clinic-42", 0, accessToken, refreshToken)
	renewed, err := b.store.Get(b.ctx, "clinic-42")
	require.NoError(t, err)

	// Two failures in a row, the second with two events.
	for i, st := range []store.State{store.StateFailing, store.StateExpired} {
		b.clock.Advance(time.Minute)
		now := b.clock.Now()
		_, err := b.store.Claim(b.ctx, "clinic-42", 1, "w1", lease)
		require.NoError(t, err)
		evs := []events.Envelope{failedEvent(t, events.TypeTokenRefreshFailed, "clinic-42", now)}
		if st == store.StateExpired {
			evs = append(evs, failedEvent(t, events.TypeTokenExpired, "clinic-42", now))
		}
		outboxBefore := len(b.outbox(t))
		f := store.Failure{State: st, Class: "server_error", Message: "HTTP 503 " + strings.Repeat("x", 300), RetryAt: now.Add(5 * time.Second)}
		require.NoError(t, b.store.CommitFailure(b.ctx, "clinic-42", "w1", 1, f, evs...))

		c, err := b.store.Get(b.ctx, "clinic-42")
		require.NoError(t, err)
		require.Equal(t, st, c.State)
		require.Equal(t, i+1, c.Failures)
		require.Equal(t, "server_error", c.LastClass)
		require.Len(t, c.LastError, 256, "the message is capped")
		require.True(t, strings.HasPrefix(c.LastError, "HTTP 503 xxx"))
		require.Equal(t, f.RetryAt, c.NextRefresh)
		require.Equal(t, f.RetryAt, b.dueAt(t, "clinic-42"))
		require.EqualValues(t, 1, c.Generation, "a failure does not move the generation")
		require.Equal(t, renewed.Token, c.Token, "the old token stays")
		require.Equal(t, now, c.UpdatedAt)

		msgs := b.outbox(t)[outboxBefore:]
		require.Len(t, msgs, len(evs))
		for j := range evs {
			requireOutboxEntry(t, evs[j], msgs[j])
		}
	}

	// Released claims are gone: another owner may claim at once.
	_, err = b.store.Claim(b.ctx, "clinic-42", 1, "w2", lease)
	require.NoError(t, err)
}

func TestCommitFailureRevokedUnschedules(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.add(t, "clinic-42")
	b.renew(t, "clinic-42", 0, accessToken, refreshToken)
	_, err := b.store.Claim(b.ctx, "clinic-42", 1, "w1", lease)
	require.NoError(t, err)

	now := b.clock.Now()
	ev := failedEvent(t, events.TypeKeyRevoked, "clinic-42", now)
	require.NoError(t, b.store.CommitFailure(b.ctx, "clinic-42", "w1", 1, store.Failure{
		State: store.StateRevoked, Class: "invalid_client", Message: "invalid_client", RetryAt: now.Add(time.Second),
	}, ev))

	b.notDue(t, "clinic-42")
	c, err := b.store.Get(b.ctx, "clinic-42")
	require.NoError(t, err)
	require.Equal(t, store.StateRevoked, c.State)
	require.True(t, c.NextRefresh.IsZero())
	require.Equal(t, accessToken, c.Token.AccessToken.Reveal(), "nothing is deleted")
	msgs := b.outbox(t)
	require.Len(t, msgs, 2)
	requireOutboxEntry(t, ev, msgs[1])

	// Never scheduled again.
	b.clock.Advance(24 * time.Hour)
	due, err := b.store.ClaimDue(b.ctx, b.clock.Now(), 10, lease)
	require.NoError(t, err)
	require.Empty(t, due)
	n, err := b.store.Reconcile(b.ctx, b.clock.Now())
	require.NoError(t, err)
	require.Zero(t, n)
	b.notDue(t, "clinic-42")
}

func TestRelease(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.add(t, "clinic-42")
	b.fail(t, "clinic-42", 0, store.Failure{
		State: store.StateFailing, Class: "timeout", RetryAt: t0.Add(time.Second),
	})
	_, err := b.store.Claim(b.ctx, "clinic-42", 0, "w1", lease)
	require.NoError(t, err)

	// Not w2's claim: nothing happens.
	before := b.snapshot(t, "clinic-42")
	require.NoError(t, b.store.Release(b.ctx, "clinic-42", "w2", t0))
	require.Equal(t, before, b.snapshot(t, "clinic-42"))

	retry := t0.Add(3 * time.Second)
	require.NoError(t, b.store.Release(b.ctx, "clinic-42", "w1", retry))
	c, err := b.store.Get(b.ctx, "clinic-42")
	require.NoError(t, err)
	require.Equal(t, store.StateFailing, c.State, "the state from before the claim")
	require.Equal(t, 1, c.Failures, "a release is not a failure")
	require.Equal(t, retry, c.NextRefresh)
	require.Equal(t, retry, b.dueAt(t, "clinic-42"))
	raw, err := b.rdb.HGetAll(b.ctx, b.credKey("clinic-42")).Result()
	require.NoError(t, err)
	require.NotContains(t, raw, "claim_owner")
	require.NotContains(t, raw, "prev_state")

	// Released twice: the second is a no-op. Another owner may claim now.
	require.NoError(t, b.store.Release(b.ctx, "clinic-42", "w1", t0.Add(time.Hour)))
	require.Equal(t, retry, b.dueAt(t, "clinic-42"))
	_, err = b.store.Claim(b.ctx, "clinic-42", 0, "w2", lease)
	require.NoError(t, err)

	// A zero retry time means now.
	b.clock.Advance(time.Minute)
	require.NoError(t, b.store.Release(b.ctx, "clinic-42", "w2", time.Time{}))
	require.Equal(t, b.clock.Now(), b.dueAt(t, "clinic-42"))
}

func TestClaimDue(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, id := range []string{"a", "b", "c", "d"} {
		b.add(t, id) // all due at t0
	}
	b.renew(t, "b", 0, accessToken, refreshToken) // b: generation 1, due at t0+10m
	// d: held by a worker until t0+lease.
	_, err := b.store.Claim(b.ctx, "d", 0, "w1", lease)
	require.NoError(t, err)

	now := t0.Add(time.Second)
	due, err := b.store.ClaimDue(b.ctx, now, 10, time.Minute)
	require.NoError(t, err)
	require.ElementsMatch(t, []store.Due{{ID: "a"}, {ID: "c"}}, due)
	require.Equal(t, now.Add(time.Minute), b.dueAt(t, "a"))
	require.Equal(t, now.Add(time.Minute), b.dueAt(t, "c"))
	require.Equal(t, t0.Add(10*time.Minute), b.dueAt(t, "b"))
	require.Equal(t, t0.Add(lease), b.dueAt(t, "d"))

	// Claimed: a second scheduler gets nothing.
	due, err = b.store.ClaimDue(b.ctx, now, 10, time.Minute)
	require.NoError(t, err)
	require.Empty(t, due)

	// d's claim has run out (its worker died): it is due again.
	due, err = b.store.ClaimDue(b.ctx, t0.Add(lease), 10, time.Minute)
	require.NoError(t, err)
	require.Equal(t, []store.Due{{ID: "d"}}, due)

	// The jobs for a and c were lost: they come back after the lease.
	due, err = b.store.ClaimDue(b.ctx, now.Add(time.Minute), 10, time.Minute)
	require.NoError(t, err)
	require.ElementsMatch(t, []store.Due{{ID: "a"}, {ID: "c"}}, due)

	// And b at its renewal time, with its generation (the others, whose
	// jobs keep getting lost, come back with it).
	due, err = b.store.ClaimDue(b.ctx, t0.Add(10*time.Minute), 10, time.Minute)
	require.NoError(t, err)
	require.ElementsMatch(t, []store.Due{{ID: "a"}, {ID: "b", Generation: 1}, {ID: "c"}, {ID: "d"}}, due)
}

func TestClaimDueLimitAndOrder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for i := range 5 {
		b.add(t, "cred-"+strconv.Itoa(i))
		b.clock.Advance(time.Second)
	}
	now := b.clock.Now()
	due, err := b.store.ClaimDue(b.ctx, now, 2, time.Minute)
	require.NoError(t, err)
	require.Equal(t, []store.Due{{ID: "cred-0"}, {ID: "cred-1"}}, due, "the most overdue first")
	due, err = b.store.ClaimDue(b.ctx, now, 10, time.Minute)
	require.NoError(t, err)
	require.Equal(t, []store.Due{{ID: "cred-2"}, {ID: "cred-3"}, {ID: "cred-4"}}, due)

	_, err = b.store.ClaimDue(b.ctx, now, 0, time.Minute)
	require.Error(t, err)
	_, err = b.store.ClaimDue(b.ctx, now, 1, 0)
	require.Error(t, err)
	_, err = b.store.ClaimDue(b.ctx, time.Time{}, 1, time.Minute)
	require.Error(t, err)
}

func TestClaimDueDropsStrayEntries(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.add(t, "real")
	require.NoError(t, b.rdb.ZAdd(b.ctx, b.dueKey(), redis.Z{Score: float64(t0.UnixMilli()), Member: "ghost"}).Err())

	due, err := b.store.ClaimDue(b.ctx, t0, 10, time.Minute)
	require.NoError(t, err)
	require.Equal(t, []store.Due{{ID: "real"}}, due)
	b.notDue(t, "ghost")
}

func TestReconcile(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, id := range []string{"active", "lost", "revoked", "refreshing-lost"} {
		b.add(t, id)
	}
	b.fail(t, "revoked", 0, store.Failure{State: store.StateRevoked})
	_, err := b.store.Claim(b.ctx, "refreshing-lost", 0, "w1", lease)
	require.NoError(t, err)
	require.NoError(t, b.rdb.ZRem(b.ctx, b.dueKey(), "lost", "refreshing-lost").Err())
	// A listed id whose hash is gone is left alone.
	require.NoError(t, b.rdb.SAdd(b.ctx, b.prefix+"creds", "ghost").Err())

	now := t0.Add(time.Hour)
	n, err := b.store.Reconcile(b.ctx, now)
	require.NoError(t, err)
	require.Equal(t, 2, n)
	require.Equal(t, now, b.dueAt(t, "lost"))
	require.Equal(t, now, b.dueAt(t, "refreshing-lost"))
	require.Equal(t, t0, b.dueAt(t, "active"), "an entry already there is left alone")
	b.notDue(t, "revoked")
	b.notDue(t, "ghost")
	c, err := b.store.Get(b.ctx, "lost")
	require.NoError(t, err)
	require.Equal(t, now, c.NextRefresh)

	n, err = b.store.Reconcile(b.ctx, now.Add(time.Minute))
	require.NoError(t, err)
	require.Zero(t, n)

	// After a flushed index, every schedulable credential comes back.
	require.NoError(t, b.rdb.Del(b.ctx, b.dueKey()).Err())
	n, err = b.store.Reconcile(b.ctx, now)
	require.NoError(t, err)
	require.Equal(t, 3, n)

	_, err = b.store.Reconcile(b.ctx, time.Time{})
	require.ErrorContains(t, err, "time is zero")
}

func TestReconcileManyBatches(t *testing.T) { onBoth(t, testReconcileManyBatches) }

func testReconcileManyBatches(t *testing.T, b *bundle) {
	const n = 1203 // more than two SSCAN batches
	_, err := b.rdb.Pipelined(b.ctx, func(p redis.Pipeliner) error {
		for i := range n {
			id := "cred-" + strconv.Itoa(i)
			p.HSet(b.ctx, b.credKey(id), "vendor", vendor, "state", "active", "gen", "0")
			p.SAdd(b.ctx, b.prefix+"creds", id)
		}
		return nil
	})
	require.NoError(t, err)

	// Some are in the index already, one of them revoked: left alone.
	require.NoError(t, b.rdb.ZAdd(b.ctx, b.dueKey(), redis.Z{Score: 42, Member: "cred-7"}, redis.Z{Score: 43, Member: "cred-8"}).Err())
	require.NoError(t, b.rdb.HSet(b.ctx, b.credKey("cred-9"), "state", "revoked").Err())

	fixed, err := b.store.Reconcile(b.ctx, t0)
	require.NoError(t, err)
	require.Equal(t, n-3, fixed)
	require.EqualValues(t, n-1, b.rdb.ZCard(b.ctx, b.dueKey()).Val())
	require.EqualValues(t, 42, b.rdb.ZScore(b.ctx, b.dueKey(), "cred-7").Val())
	b.notDue(t, "cred-9")
	require.Equal(t, t0, b.dueAt(t, "cred-1000"))
	fixed, err = b.store.Reconcile(b.ctx, t0.Add(time.Second))
	require.NoError(t, err)
	require.Zero(t, fixed, "nothing missing any more")

	seen := map[string]bool{}
	require.NoError(t, b.store.Scan(b.ctx, func(s store.Summary) error {
		require.False(t, seen[s.ID], "seen twice: %s", s.ID)
		seen[s.ID] = true
		return nil
	}))
	require.Len(t, seen, n)
}

func TestScan(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.add(t, "a")
	b.add(t, "b")
	b.renew(t, "b", 0, accessToken, refreshToken)
	b.fail(t, "a", 0, store.Failure{State: store.StateRevoked, Class: "invalid_client", Message: "no"})

	got := map[string]store.Summary{}
	require.NoError(t, b.store.Scan(b.ctx, func(s store.Summary) error {
		got[s.ID] = s
		return nil
	}))
	require.Equal(t, map[string]store.Summary{
		"a": {
			ID: "a", Vendor: vendor, ClientIDFingerprint: secret.Fingerprint(clientID), State: store.StateRevoked,
			Failures: 1, LastClass: "invalid_client", LastError: "no", UpdatedAt: t0,
		},
		"b": {
			ID: "b", Vendor: vendor, ClientIDFingerprint: secret.Fingerprint(clientID), State: store.StateActive,
			Generation: 1, IssuedAt: t0, ExpiresAt: t0.Add(15 * time.Minute), NextRefresh: t0.Add(10 * time.Minute),
			UpdatedAt: t0,
		},
	}, got)

	// fn's error stops the scan and comes back as is.
	stop := errors.New("enough")
	calls := 0
	err := b.store.Scan(b.ctx, func(store.Summary) error {
		calls++
		return stop
	})
	require.Equal(t, stop, err)
	require.Equal(t, 1, calls)
}

func TestSecretsAreSealedAtRest(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.add(t, "clinic-42")
	b.renew(t, "clinic-42", 0, accessToken, refreshToken)

	raw, err := b.rdb.HGetAll(b.ctx, b.credKey("clinic-42")).Result()
	require.NoError(t, err)
	plain := []string{clientSecret, accessToken, refreshToken}
	for field, value := range raw {
		for _, p := range plain {
			require.NotContains(t, value, p, "field %s", field)
			// Any long piece of a secret would be a leak too.
			require.NotContains(t, value, p[len(p)-12:], "field %s", field)
		}
	}
	for _, f := range []string{"client_secret", "access_token", "refresh_token"} {
		require.True(t, strings.HasPrefix(raw[f], "v1."+b.ring.CurrentKeyID()+"."), "field %s is sealed", f)
	}
	// Nor in the outbox.
	for _, msg := range b.outbox(t) {
		for _, v := range msg.Values {
			for _, p := range plain {
				require.NotContains(t, v, p)
			}
		}
	}
}

func TestCiphertextDoesNotMove(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.add(t, "clinic-42")
	b.add(t, "clinic-43")
	b.renew(t, "clinic-42", 0, accessToken, refreshToken)

	// Someone with write access to Redis copies clinic-42's token to
	// clinic-43, and its refresh token into its access token field.
	moved := b.rdb.HGet(b.ctx, b.credKey("clinic-42"), "access_token").Val()
	require.NoError(t, b.rdb.HSet(b.ctx, b.credKey("clinic-43"), "access_token", moved).Err())
	_, err := b.store.CurrentToken(b.ctx, "clinic-43")
	require.ErrorIs(t, err, seal.ErrAuth)
	require.NotContains(t, err.Error(), moved)
	require.Equal(t, "store: current token clinic-43: open access_token: "+seal.ErrAuth.Error(), err.Error())

	refresh := b.rdb.HGet(b.ctx, b.credKey("clinic-42"), "refresh_token").Val()
	require.NoError(t, b.rdb.HSet(b.ctx, b.credKey("clinic-42"), "access_token", refresh).Err())
	_, err = b.store.Get(b.ctx, "clinic-42")
	require.ErrorIs(t, err, seal.ErrAuth)
}

func TestMasterKeyRotation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.add(t, "clinic-42")
	b.renew(t, "clinic-42", 0, accessToken, refreshToken)

	// Key 2 becomes current; key 1 is kept to open what it sealed.
	rotated, err := store.New(b.rdb, store.Options{Prefix: b.prefix, Keyring: testKeyring(t, 2, 1), Clock: b.clock.Now})
	require.NoError(t, err)
	c, err := rotated.Get(b.ctx, "clinic-42")
	require.NoError(t, err)
	require.Equal(t, accessToken, c.Token.AccessToken.Reveal())
	require.Equal(t, clientSecret, c.ClientSecret.Reveal())

	// Dropping key 1 too soon is a clear error.
	newOnly, err := store.New(b.rdb, store.Options{Prefix: b.prefix, Keyring: testKeyring(t, 2), Clock: b.clock.Now})
	require.NoError(t, err)
	_, err = newOnly.Get(b.ctx, "clinic-42")
	require.ErrorIs(t, err, seal.ErrUnknownKey)
}

func TestPrefixIsolates(t *testing.T) {
	t.Parallel()
	b := setup(t)
	other := newBundle(t, b.rdb, "other:")
	b.add(t, "clinic-42")
	other.add(t, "clinic-42") // created, not updated: a separate store

	keys, err := b.rdb.Keys(b.ctx, "*").Result()
	require.NoError(t, err)
	require.ElementsMatch(t, []string{
		"tokenrelay:cred:clinic-42", "tokenrelay:creds", "tokenrelay:due",
		"other:cred:clinic-42", "other:creds", "other:due",
	}, keys)
}
