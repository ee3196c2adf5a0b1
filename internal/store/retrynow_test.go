package store_test

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/internal/store"
)

// TestRetryNowMakesTheCredentialDue: on the real Redis, a credential not
// due for a long while is due at once after RetryNow, in the state it was
// in and at the same generation; while a worker holds its claim, RetryNow
// changes nothing and says the credential is busy.
func TestRetryNowMakesTheCredentialDue(t *testing.T) {
	t.Parallel()
	b := setupReal(t)
	b.add(t, "clinic-42")
	b.renew(t, "clinic-42", 0, accessToken, refreshToken) // next refresh in 10 minutes
	now := b.clock.Now()
	due, err := b.store.ClaimDue(b.ctx, now, 10, time.Second)
	require.NoError(t, err)
	require.Empty(t, due, "not due before the retry")

	require.NoError(t, b.store.RetryNow(b.ctx, "clinic-42"))
	c, err := b.store.Get(b.ctx, "clinic-42")
	require.NoError(t, err)
	require.Equal(t, store.StateActive, c.State, "the state it had comes back")
	require.Equal(t, now, b.dueAt(t, "clinic-42"))
	due, err = b.store.ClaimDue(b.ctx, now, 10, time.Second)
	require.NoError(t, err)
	require.Equal(t, []store.Due{{ID: "clinic-42", Generation: 1}}, due)

	// A worker holding the claim is refreshing it already.
	_, err = b.store.Claim(b.ctx, "clinic-42", 1, "w2", lease)
	require.NoError(t, err)
	before := b.snapshot(t, "clinic-42")
	_, busy := errors.AsType[*store.BusyError](b.store.RetryNow(b.ctx, "clinic-42"))
	require.True(t, busy, "a claimed credential is busy")
	require.Equal(t, before, b.snapshot(t, "clinic-42"), "a refused retry writes nothing")

	require.ErrorIs(t, b.store.RetryNow(b.ctx, "nope"), store.ErrNotFound)
}
