package store_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/secret"
)

// onBoth runs a test on miniredis and on the real Redis: the scripts must
// agree on both Luas.
func onBoth(t *testing.T, test func(t *testing.T, b *bundle)) {
	t.Parallel()
	t.Run("miniredis", func(t *testing.T) { t.Parallel(); test(t, setup(t)) })
	t.Run("redis", func(t *testing.T) { t.Parallel(); test(t, setupReal(t)) })
}

func TestClaimBatchFencesEachCredential(t *testing.T) { onBoth(t, testClaimBatchFencesEachCredential) }

func testClaimBatchFencesEachCredential(t *testing.T, b *bundle) {
	for _, id := range []string{"fresh", "renewed", "held", "revoked"} {
		b.add(t, id)
	}
	b.renew(t, "renewed", 0, accessToken, refreshToken) // generation 1, due at t0+10m
	_, err := b.store.Claim(b.ctx, "held", 0, "w2", lease)
	require.NoError(t, err)
	b.fail(t, "revoked", 0, store.Failure{State: store.StateRevoked, Class: "invalid_client"})
	refused := map[string]snapshot{}
	for _, id := range []string{"held", "revoked"} {
		refused[id] = b.snapshot(t, id)
	}

	b.clock.Advance(time.Second)
	got, err := b.store.ClaimBatch(b.ctx, []store.Due{
		{ID: "fresh", Generation: 0},
		{ID: "renewed", Generation: 0}, // an old generation
		{ID: "renewed", Generation: 1},
		{ID: "held", Generation: 0},    // another owner's claim holds
		{ID: "gone", Generation: 0},    // no such credential
		{ID: "revoked", Generation: 0}, // never claimed again
		{ID: "fresh", Generation: 0},   // named twice: claimed once
	}, "w1", lease)
	require.NoError(t, err)
	require.Len(t, got, 7)

	require.NoError(t, got[0].Err)
	fresh := got[0].Credential
	require.Equal(t, "fresh", fresh.ID)
	require.Equal(t, store.StateRefreshing, fresh.State)
	require.Equal(t, store.StateActive, fresh.StateBeforeClaim)
	require.Equal(t, clientSecret, fresh.ClientSecret.Reveal())
	require.Equal(t, clientID, fresh.ClientID)
	require.Equal(t, vendor, fresh.Vendor)
	require.Zero(t, fresh.Generation)

	require.ErrorIs(t, got[1].Err, store.ErrStale)

	require.NoError(t, got[2].Err)
	renewed := got[2].Credential
	require.EqualValues(t, 1, renewed.Generation)
	require.Equal(t, refreshToken, renewed.Token.RefreshToken.Reveal())
	require.Equal(t, t0.Add(15*time.Minute), renewed.Token.ExpiresAt)
	require.True(t, renewed.Token.AccessToken.IsZero(), "a batch claim reads only what a refresh needs")
	require.True(t, renewed.NextRefresh.IsZero())
	require.True(t, renewed.CreatedAt.IsZero())
	require.Equal(t, t0.Add(10*time.Minute), b.dueAt(t, "renewed"), "a claim never moves a due time earlier")
	require.Equal(t, t0, b.dueAt(t, "fresh"), "the due entry is left alone")

	var busy *store.BusyError
	require.ErrorAs(t, got[3].Err, &busy)
	require.Equal(t, t0.Add(lease), busy.Until)
	require.ErrorIs(t, got[4].Err, store.ErrNotFound)
	require.ErrorIs(t, got[5].Err, store.ErrStale)
	require.ErrorIs(t, got[6].Err, store.ErrStale, "one owner never holds one renewal twice")
	for id, before := range refused {
		require.Equal(t, before, b.snapshot(t, id), "%s: a refused claim writes nothing", id)
	}
	due, err := b.store.ClaimDue(b.ctx, b.clock.Now(), 10, lease)
	require.NoError(t, err)
	require.Empty(t, due, "nothing claimed is handed out while its claim holds")
	require.Equal(t, t0.Add(time.Second+lease), b.dueAt(t, "fresh"), "due again when the claim ends, if the worker dies")

	// What a batch claim took is the owner's as a single claim's is.
	_, err = b.store.Claim(b.ctx, "fresh", 0, "w2", lease)
	require.ErrorAs(t, err, &busy)
	c, err := b.store.Claim(b.ctx, "fresh", 0, "w1", lease)
	require.NoError(t, err)
	require.Equal(t, store.StateActive, c.StateBeforeClaim, "a re-claim keeps the state from before the first")

	_, err = b.store.ClaimBatch(b.ctx, []store.Due{{ID: "fresh"}}, "", lease)
	require.ErrorContains(t, err, "owner must be set")
	empty, err := b.store.ClaimBatch(b.ctx, nil, "w1", lease)
	require.NoError(t, err)
	require.Empty(t, empty)
}

func TestCommitRenewalsCommitsEachOnItsOwn(t *testing.T) {
	onBoth(t, testCommitRenewalsCommitsEachOnItsOwn)
}

func testCommitRenewalsCommitsEachOnItsOwn(t *testing.T, b *bundle) {
	for _, id := range []string{"a", "b", "c", "d"} {
		b.add(t, id)
	}
	claims, err := b.store.ClaimBatch(b.ctx, []store.Due{{ID: "a"}, {ID: "b"}, {ID: "d"}}, "w1", lease)
	require.NoError(t, err)
	for _, c := range claims {
		require.NoError(t, c.Err)
	}
	before := map[string]snapshot{"c": b.snapshot(t, "c"), "d": b.snapshot(t, "d")}

	b.clock.Advance(time.Second)
	now := b.clock.Now()
	evA, evB := renewedEvent(t, "a", 1, now), renewedEvent(t, "b", 1, now)
	rB := renewal(now, accessToken2, "")
	rB.Token.TokenType = "" // absent, not empty
	noAccess := renewal(now, "", "")
	errs, err := b.store.CommitRenewals(b.ctx, []store.RenewalCommit{
		{ID: "a", Owner: "w1", Generation: 0, Renewal: renewal(now, accessToken, refreshToken), Event: evA},
		{ID: "c", Owner: "w1", Generation: 0, Renewal: renewal(now, accessToken, ""), Event: renewedEvent(t, "c", 1, now)}, // never claimed
		{ID: "d", Owner: "w1", Generation: 0, Renewal: noAccess, Event: renewedEvent(t, "d", 1, now)},                      // invalid
		{ID: "b", Owner: "w1", Generation: 0, Renewal: rB, Event: evB},
	})
	require.NoError(t, err)
	require.Len(t, errs, 4)
	require.NoError(t, errs[0])
	require.ErrorIs(t, errs[1], store.ErrStale)
	require.EqualError(t, errs[1], "store: commit renewal c: store: stale generation or claim")
	require.ErrorContains(t, errs[2], "store: commit renewal d: access token is empty")
	require.NoError(t, errs[3])

	a, err := b.store.Get(b.ctx, "a")
	require.NoError(t, err)
	require.Equal(t, store.StateActive, a.State)
	require.EqualValues(t, 1, a.Generation)
	require.Equal(t, accessToken, a.Token.AccessToken.Reveal())
	require.Equal(t, refreshToken, a.Token.RefreshToken.Reveal())
	require.Equal(t, "Bearer", a.Token.TokenType)
	require.Equal(t, now.Add(10*time.Minute), b.dueAt(t, "a"))
	bc, err := b.store.Get(b.ctx, "b")
	require.NoError(t, err)
	require.EqualValues(t, 1, bc.Generation)
	require.Equal(t, accessToken2, bc.Token.AccessToken.Reveal())
	require.True(t, bc.Token.RefreshToken.IsZero())
	require.Empty(t, bc.Token.TokenType)
	for _, id := range []string{"a", "b"} {
		raw, err := b.rdb.HGetAll(b.ctx, b.credKey(id)).Result()
		require.NoError(t, err)
		for _, f := range []string{"claim_owner", "claim_until", "prev_state", "failures", "last_class", "last_error"} {
			require.NotContains(t, raw, f, "%s: cleared by a renewal", id)
		}
	}
	require.NotContains(t, b.snapshot(t, "b").Hash, "token_type")
	for id, snap := range before {
		after := b.snapshot(t, id)
		require.Equal(t, snap.Hash, after.Hash, "%s: nothing written", id)
		require.Equal(t, snap.Due, after.Due, "%s: nothing written", id)
	}

	msgs := b.outbox(t)
	require.Len(t, msgs, 2)
	requireOutboxEntry(t, evA, msgs[0])
	requireOutboxEntry(t, evB, msgs[1])

	// Committed once: a second commit of the same renewals is stale.
	errs, err = b.store.CommitRenewals(b.ctx, []store.RenewalCommit{
		{ID: "a", Owner: "w1", Generation: 0, Renewal: renewal(now, accessToken2, ""), Event: renewedEvent(t, "a", 1, now)},
	})
	require.NoError(t, err)
	require.ErrorIs(t, errs[0], store.ErrStale)
	require.Len(t, b.outbox(t), 2)
}

// The outbox entry of a renewal is the envelope's JSON, read back equal.
func TestCommitRenewalsEventRoundTrips(t *testing.T) { onBoth(t, testCommitRenewalsEventRoundTrips) }

func testCommitRenewalsEventRoundTrips(t *testing.T, b *bundle) {
	b.add(t, "a")
	_, err := b.store.Claim(b.ctx, "a", 0, "w1", lease)
	require.NoError(t, err)
	now := b.clock.Now().Add(123456789 * time.Nanosecond)
	ev, err := events.New(events.TypeTokenRenewed, vendor, "a", now, events.TokenRenewed{
		Vendor: vendor, Credential: "a", Generation: 1, IssuedAt: now, ExpiresAt: now.Add(time.Hour),
		Fingerprint: secret.Fingerprint(accessToken), Recovered: true,
	})
	require.NoError(t, err)
	require.NoError(t, b.store.CommitRenewal(b.ctx, "a", "w1", 0, renewal(b.clock.Now(), accessToken, ""), ev))
	msgs := b.outbox(t)
	require.Len(t, msgs, 1)
	requireOutboxEntry(t, ev, msgs[0])
}
