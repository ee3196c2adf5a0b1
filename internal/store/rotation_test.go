package store_test

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
	"github.com/tokenrelay/tokenrelay/internal/testenv/storetest"
	"github.com/tokenrelay/tokenrelay/secret"
)

// rotSetup is a store on the real Redis (so that every rotation script
// runs there), under its own prefix, holding one healthsync credential with
// an API key.
func rotSetup(t *testing.T) (*store.Store, *redis.Client, *testenv.Clock, string) {
	t.Helper()
	clock := testenv.NewClock(storetest.T0)
	rdb, prefix := testenv.RedisPrefix(t)
	st, err := store.New(rdb, store.Options{Prefix: prefix, Keyring: testKeyring(t, 1), Clock: clock.Now})
	require.NoError(t, err)
	_, err = st.Upsert(t.Context(), store.NewCredential{ID: "hs-1", Vendor: "hs", Keys: store.Keys{APIKey: secret.New("old-api-key")}})
	require.NoError(t, err)
	return st, rdb, clock, prefix
}

func rotEvent(t *testing.T, typ string, at time.Time) events.Envelope {
	t.Helper()
	ev, err := events.New(typ, "hs", "hs-1", at, map[string]string{"k": "v"})
	require.NoError(t, err)
	return ev
}

func TestRotationStepsAreFencedByOwnerAndStep(t *testing.T) {
	t.Parallel()
	st, rdb, clock, prefix := rotSetup(t)
	ctx := t.Context()

	r, err := st.BeginRotation(ctx, "hs-1", "w1", time.Minute)
	require.NoError(t, err)
	require.Equal(t, store.RotationPlanned, r.Step)
	require.NotEmpty(t, r.ID)

	// Another owner waits for the lease; the same owner resumes.
	_, err = st.BeginRotation(ctx, "hs-1", "w2", time.Minute)
	var busy *store.BusyError
	require.ErrorAs(t, err, &busy)
	again, err := st.BeginRotation(ctx, "hs-1", "w1", time.Minute)
	require.NoError(t, err)
	require.Equal(t, r.ID, again.ID)

	// A step is recorded only by the owner, from the step it saw.
	stale := r
	stale.Step = store.RotationCreated
	require.ErrorIs(t, st.AdvanceRotation(ctx, &stale, "w1", time.Minute, store.RotationChange{Step: store.RotationVerified}), store.ErrStale)
	other := r
	require.ErrorIs(t, st.AdvanceRotation(ctx, &other, "w2", time.Minute, store.RotationChange{Step: store.RotationCreating}), store.ErrStale)
	require.NoError(t, st.AdvanceRotation(ctx, &r, "w1", time.Minute, store.RotationChange{
		Step: store.RotationCreating, Attempt: 1, KeyName: "k-1", OldKeyID: "key_1", OldFingerprint: "fp-old", Scopes: []string{"read"},
	}))
	require.NoError(t, st.AdvanceRotation(ctx, &r, "w1", time.Minute, store.RotationChange{
		Step: store.RotationCreated, NewKeyID: "key_2", NewKey: secret.New("new-api-key"), NewFingerprint: "fp-new",
	}))
	got, err := st.GetRotation(ctx, "hs-1")
	require.NoError(t, err)
	require.Equal(t, "new-api-key", got.NewKey.Reveal(), "the new key is kept, sealed, until the rotation ends")
	require.Equal(t, []string{"read"}, got.Scopes)
	require.Equal(t, 1, got.Attempt)
	require.Equal(t, "key_1", got.OldKeyID)
	raw, err := rdb.HGet(ctx, prefix+"rot:hs-1", "new_key").Result()
	require.NoError(t, err)
	require.NotContains(t, raw, "new-api-key", "sealed at rest")

	// The lease runs out: another owner takes the rotation over.
	clock.Advance(time.Minute + time.Millisecond)
	taken, err := st.BeginRotation(ctx, "hs-1", "w2", time.Minute)
	require.NoError(t, err)
	require.Equal(t, r.ID, taken.ID)
	require.Equal(t, store.RotationCreated, taken.Step)
	require.ErrorIs(t, st.AdvanceRotation(ctx, &r, "w1", time.Minute, store.RotationChange{Step: store.RotationVerified}), store.ErrStale,
		"the worker that lost the rotation records nothing")
}

func TestSwitchRotationIsAtomicWithItsEvents(t *testing.T) {
	t.Parallel()
	st, rdb, clock, prefix := rotSetup(t)
	ctx := t.Context()
	r, err := st.BeginRotation(ctx, "hs-1", "w1", time.Minute)
	require.NoError(t, err)
	for _, c := range []store.RotationChange{
		{Step: store.RotationCreating, Attempt: 1},
		{Step: store.RotationCreated, NewKeyID: "key_2", NewKey: secret.New("new-api-key")},
	} {
		require.NoError(t, st.AdvanceRotation(ctx, &r, "w1", time.Minute, c))
	}
	now := clock.Now()
	tok := store.Token{AccessToken: secret.New("new-api-key"), TokenType: "Bearer", IssuedAt: now, ExpiresAt: now.Add(24 * time.Hour)}
	sw := store.KeySwitch{Keys: store.Keys{APIKey: secret.New("new-api-key")}, Token: &tok, NextRefresh: now.Add(16 * time.Hour)}
	ev := rotEvent(t, events.TypeKeyRotated, now)

	// Not verified yet: refused, nothing written.
	require.ErrorIs(t, st.SwitchRotation(ctx, &r, "w1", 0, sw, ev), store.ErrStale)
	require.NoError(t, st.AdvanceRotation(ctx, &r, "w1", time.Minute, store.RotationChange{Step: store.RotationVerified}))
	// A generation that moved on: refused.
	require.ErrorIs(t, st.SwitchRotation(ctx, &r, "w1", 7, sw, ev), store.ErrStale)
	n, err := rdb.XLen(ctx, events.OutboxKey(prefix)).Result()
	require.NoError(t, err)
	require.Zero(t, n)

	require.NoError(t, st.SwitchRotation(ctx, &r, "w1", 0, sw, ev))
	require.Equal(t, store.RotationSwitched, r.Step)
	c, err := st.Get(ctx, "hs-1")
	require.NoError(t, err)
	require.Equal(t, "new-api-key", c.APIKey.Reveal())
	require.Equal(t, "new-api-key", c.Token.AccessToken.Reveal())
	require.Equal(t, int64(1), c.Generation)
	require.Equal(t, store.StateActive, c.State)
	require.Equal(t, now.Add(16*time.Hour).UnixMilli(), c.NextRefresh.UnixMilli())
	n, err = rdb.XLen(ctx, events.OutboxKey(prefix)).Result()
	require.NoError(t, err)
	require.Equal(t, int64(1), n)

	// The end: the event, the next rotation, the new key's copy dropped.
	next := now.Add(90 * 24 * time.Hour)
	require.NoError(t, st.FinishRotation(ctx, &r, "w1", store.RotationDone, next, "", rotEvent(t, events.TypeKeyRevoked, now)))
	got, err := st.GetRotation(ctx, "hs-1")
	require.NoError(t, err)
	require.Equal(t, store.RotationDone, got.Step)
	require.True(t, got.NewKey.IsZero())
	require.Empty(t, got.Owner)
	due, ok, err := st.RotationDue(ctx, "hs-1")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, next.UnixMilli(), due.UnixMilli())
	n, err = rdb.XLen(ctx, events.OutboxKey(prefix)).Result()
	require.NoError(t, err)
	require.Equal(t, int64(2), n)

	// A finished rotation is not resumed: the next one is new.
	fresh, err := st.BeginRotation(ctx, "hs-1", "w2", time.Minute)
	require.NoError(t, err)
	require.NotEqual(t, r.ID, fresh.ID)
	require.Equal(t, store.RotationPlanned, fresh.Step)
}

func TestRotationOfMissingOrRevokedCredential(t *testing.T) {
	t.Parallel()
	st, _, _, _ := rotSetup(t)
	ctx := t.Context()
	_, err := st.BeginRotation(ctx, "nope", "w1", time.Minute)
	require.ErrorIs(t, err, store.ErrNotFound)
	_, err = st.GetRotation(ctx, "hs-1")
	require.ErrorIs(t, err, store.ErrNotFound)
	require.NoError(t, st.Revoke(ctx, "hs-1", 0, "revoked_by_operator", "", rotEvent(t, events.TypeKeyRevoked, storetest.T0)))
	_, err = st.BeginRotation(ctx, "hs-1", "w1", time.Minute)
	require.ErrorIs(t, err, store.ErrAlreadyRevoked)
}

func TestClaimDueRotations(t *testing.T) {
	t.Parallel()
	st, _, clock, _ := rotSetup(t)
	ctx := t.Context()
	now := clock.Now()
	n, err := st.ScheduleRotations(ctx, []string{"a", "b", "c"}, now.Add(time.Hour))
	require.NoError(t, err)
	require.Equal(t, 3, n)
	require.NoError(t, st.ScheduleRotation(ctx, "a", now.Add(-time.Second)))
	n, err = st.ScheduleRotations(ctx, []string{"a", "d"}, now.Add(time.Hour))
	require.NoError(t, err)
	require.Equal(t, 1, n, "a scheduled one keeps its time")

	ids, err := st.ClaimDueRotations(ctx, now, 10, time.Minute)
	require.NoError(t, err)
	require.Equal(t, []string{"a"}, ids)
	ids, err = st.ClaimDueRotations(ctx, now, 10, time.Minute)
	require.NoError(t, err)
	require.Empty(t, ids, "claimed for the lease")
	ids, err = st.ClaimDueRotations(ctx, now.Add(time.Minute), 10, time.Minute)
	require.NoError(t, err)
	require.Equal(t, []string{"a"}, ids, "a lost job brings it back")
	require.NoError(t, st.UnscheduleRotation(ctx, "a"))
	_, ok, err := st.RotationDue(ctx, "a")
	require.NoError(t, err)
	require.False(t, ok)
}

// TestRotationRequestBeginsOneRotation: a request whose rotation has
// finished begins no other (a job run again after its worker died, its
// rotation finished by a resume), and a resume-only request never begins
// one; other requests do.
func TestRotationRequestBeginsOneRotation(t *testing.T) {
	t.Parallel()
	st, _, _, _ := rotSetup(t)
	ctx := t.Context()
	task := store.RotationRequest{ID: "task-1"}

	_, err := st.BeginRotationFor(ctx, "hs-1", "w1", time.Minute, store.RotationRequest{ResumeOnly: true})
	require.ErrorIs(t, err, store.ErrRotationDone, "nothing in progress to resume")

	r, err := st.BeginRotationFor(ctx, "hs-1", "w1", time.Minute, task)
	require.NoError(t, err)
	// w1 dies; a resume hands the rotation over once the hold lapses here
	// (w1's lease is released to simulate it) and finishes it.
	require.NoError(t, st.AdvanceRotation(ctx, &r, "w1", 0, store.RotationChange{}))
	resumed, err := st.BeginRotationFor(ctx, "hs-1", "w2", time.Minute, store.RotationRequest{ID: "resume-1", ResumeOnly: true})
	require.NoError(t, err)
	require.Equal(t, r.ID, resumed.ID, "the rotation in progress is handed over")
	require.NoError(t, st.FinishRotation(ctx, &resumed, "w2", store.RotationDone, time.Time{}, ""))

	_, err = st.BeginRotationFor(ctx, "hs-1", "w3", time.Minute, task)
	require.ErrorIs(t, err, store.ErrRotationDone, "w1's task, run again, finds its rotation done")
	_, err = st.BeginRotationFor(ctx, "hs-1", "w3", time.Minute, store.RotationRequest{ID: "resume-1", ResumeOnly: true})
	require.ErrorIs(t, err, store.ErrRotationDone)

	next, err := st.BeginRotationFor(ctx, "hs-1", "w3", time.Minute, store.RotationRequest{ID: "task-2"})
	require.NoError(t, err, "a new request begins a new rotation")
	require.NotEqual(t, r.ID, next.ID)
}
