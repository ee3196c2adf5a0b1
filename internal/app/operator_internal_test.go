package app

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/internal/testenv/storetest"
	"github.com/tokenrelay/tokenrelay/internal/web/admin"
	"github.com/tokenrelay/tokenrelay/secret"
)

// operatorFixture is the operator pages' actions on a store of their own.
func operatorFixture(t *testing.T, now *time.Time) (operatorActions, *store.Store) {
	t.Helper()
	st, _ := storetest.New(t, func() time.Time { return *now })
	cfg := &config.Config{
		Vendors: map[string]config.Vendor{
			"halaxy-au":  {Kind: config.KindHalaxy, UserAgent: "t (t@t.invalid)"},
			"healthsync": {Kind: config.KindHealthSync},
		},
		SecretKey: secret.New("0123456789abcdef0123456789abcdef"),
	}
	cfg.SetDefaults()
	env := &Env{Config: cfg, Store: st, Clock: func() time.Time { return *now }}
	ad := admin.Deps{Config: cfg, Store: st, Clock: env.Clock, Logger: zerolog.Nop()}
	return operatorActions{env: env, admin: ad}, st
}

// Retry now (store.RetryNow, tested there) tells the operator in words
// when a worker is refreshing the credential already.
func TestOperatorRetryNowSaysWhenBusy(t *testing.T) {
	t.Parallel()
	now := storetest.T0
	acts, st := operatorFixture(t, &now)
	ctx := context.Background()
	_, err := st.Upsert(ctx, store.NewCredential{ID: "c1", Vendor: "halaxy-au", ClientID: "cid",
		Keys: store.Keys{ClientSecret: secret.New("s3cret")}})
	require.NoError(t, err)
	require.NoError(t, acts.RetryNow(ctx, "c1"))
	_, err = st.Claim(ctx, "c1", 0, "w2", time.Minute)
	require.NoError(t, err)
	require.ErrorContains(t, acts.RetryNow(ctx, "c1"), "refreshing it right now")
	require.ErrorIs(t, acts.RetryNow(ctx, "nope"), store.ErrNotFound)
}

// Re-enable puts the new secret where the vendor kind keeps it, through
// the admin API's rules.
func TestOperatorEnableStoresTheNewSecretByKind(t *testing.T) {
	t.Parallel()
	now := storetest.T0
	acts, st := operatorFixture(t, &now)
	ctx := context.Background()
	_, err := st.Upsert(ctx, store.NewCredential{ID: "hs", Vendor: "healthsync", Keys: store.Keys{APIKey: secret.New("old-api-key")}})
	require.NoError(t, err)
	_, err = st.Upsert(ctx, store.NewCredential{ID: "hx", Vendor: "halaxy-au", ClientID: "cid", Keys: store.Keys{ClientSecret: secret.New("old-secret")}})
	require.NoError(t, err)
	for _, id := range []string{"hs", "hx"} {
		require.NoError(t, acts.Revoke(ctx, id, "test"))
		require.ErrorIs(t, acts.Revoke(ctx, id, "again"), store.ErrAlreadyRevoked)
	}

	require.NoError(t, acts.Enable(ctx, "hs", secret.New("new-api-key")))
	require.NoError(t, acts.Enable(ctx, "hx", secret.New("new-secret")))
	hs, err := st.Get(ctx, "hs")
	require.NoError(t, err)
	require.Equal(t, store.StateActive, hs.State)
	require.Equal(t, "new-api-key", hs.APIKey.Reveal())
	hx, err := st.Get(ctx, "hx")
	require.NoError(t, err)
	require.Equal(t, "new-secret", hx.ClientSecret.Reveal())
	require.True(t, hx.APIKey.IsZero())

	// Without a new secret the stored keys stay.
	require.NoError(t, acts.Revoke(ctx, "hx", ""))
	require.NoError(t, acts.Enable(ctx, "hx", secret.Value{}))
	hx, err = st.Get(ctx, "hx")
	require.NoError(t, err)
	require.Equal(t, "new-secret", hx.ClientSecret.Reveal())
	require.False(t, acts.CanRotate("healthsync"), "no rotations wired in this fixture")
}

// TestReadableBusy: an action on a credential another worker holds says so
// in words, and stays a *store.BusyError for the pages' status (409).
func TestReadableBusy(t *testing.T) {
	until := time.Date(2026, 11, 24, 1, 2, 3, 0, time.UTC)
	err := readable(fmt.Errorf("rotation: revoke x at vendor: settle its rotation: %w", &store.BusyError{Until: until}))
	require.Equal(t, "another worker is refreshing this credential or rotating its key; nothing changed: try again after 01:02:03Z", err.Error())
	_, ok := errors.AsType[*store.BusyError](err)
	require.True(t, ok)
}
