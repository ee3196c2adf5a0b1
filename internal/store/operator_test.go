package store_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/secret"
)

func TestRevokeByOperatorUnschedulesAndWritesEvent(t *testing.T) {
	t.Parallel()
	b := setupReal(t)
	b.add(t, "clinic-42")
	b.renew(t, "clinic-42", 0, accessToken, refreshToken)
	ev := failedEvent(t, events.TypeKeyRevoked, "clinic-42", t0)

	// The event must speak of the current generation.
	before := b.snapshot(t, "clinic-42")
	require.ErrorIs(t, b.store.Revoke(b.ctx, "clinic-42", 0, "revoked_by_operator", "asked by ops", ev), store.ErrStale)
	require.Equal(t, before, b.snapshot(t, "clinic-42"), "a refused revoke writes nothing")

	require.NoError(t, b.store.Revoke(b.ctx, "clinic-42", 1, "revoked_by_operator", "asked by ops", ev))
	c, err := b.store.Get(b.ctx, "clinic-42")
	require.NoError(t, err)
	require.Equal(t, store.StateRevoked, c.State)
	require.Equal(t, "revoked_by_operator", c.LastClass)
	b.notDue(t, "clinic-42")
	require.Len(t, b.outbox(t), 2) // the renewal, then the revocation
	require.Equal(t, ev.ID, b.outbox(t)[1].Values[events.OutboxFieldID])

	require.ErrorIs(t, b.store.Revoke(b.ctx, "clinic-42", 1, "revoked_by_operator", "", ev), store.ErrAlreadyRevoked)
	require.ErrorIs(t, b.store.Revoke(b.ctx, "nope", 0, "revoked_by_operator", "", ev), store.ErrNotFound)
}

func TestRevokeDropsAClaimInFlight(t *testing.T) {
	t.Parallel()
	b := setupReal(t)
	b.add(t, "clinic-42")
	_, err := b.store.Claim(b.ctx, "clinic-42", 0, "w1", lease)
	require.NoError(t, err)
	require.NoError(t, b.store.Revoke(b.ctx, "clinic-42", 0, "revoked_by_operator", "", failedEvent(t, events.TypeKeyRevoked, "clinic-42", t0)))
	now := b.clock.Now()
	err = b.store.CommitRenewal(b.ctx, "clinic-42", "w1", 0, renewal(now, accessToken, refreshToken), renewedEvent(t, "clinic-42", 1, now))
	require.ErrorIs(t, err, store.ErrStale, "the worker's token is discarded after an operator revoked")
}

func TestEnableWithNewSecretSchedulesAtOnce(t *testing.T) {
	t.Parallel()
	b := setupReal(t)
	b.add(t, "clinic-42")
	b.fail(t, "clinic-42", 0, store.Failure{State: store.StateRevoked, Class: "invalid_client", Message: "deleted"})
	b.notDue(t, "clinic-42")

	b.clock.Advance(lease)
	keys := store.Keys{ClientSecret: secret.New("a-brand-new-secret")}
	require.NoError(t, b.store.Enable(b.ctx, "clinic-42", "", &keys))
	c, err := b.store.Get(b.ctx, "clinic-42")
	require.NoError(t, err)
	require.Equal(t, store.StateActive, c.State)
	require.Zero(t, c.Failures)
	require.Empty(t, c.LastError)
	require.Equal(t, clientID, c.ClientID, "an empty client id keeps the stored one")
	require.Equal(t, "a-brand-new-secret", c.ClientSecret.Reveal())
	require.Equal(t, b.clock.Now(), b.dueAt(t, "clinic-42"))

	// Without keys, the stored ones stay.
	require.NoError(t, b.store.Enable(b.ctx, "clinic-42", "new-client", nil))
	c, err = b.store.Get(b.ctx, "clinic-42")
	require.NoError(t, err)
	require.Equal(t, "a-brand-new-secret", c.ClientSecret.Reveal())
	require.Equal(t, "new-client", c.ClientID)
	require.ErrorIs(t, b.store.Enable(b.ctx, "nope", "", nil), store.ErrNotFound)
}
