package store_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/secret"
)

func TestKeysOfEveryKindRoundTripSealed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	keys := store.Keys{
		PrivateKey: secret.New("-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49\n-----END PRIVATE KEY-----\n"),
		KeyID:      "kid-2026-11",
		APIKey:     secret.New("hs_live_4f9a8b7c6d5e"),
		// The refresh token of a user's delegation (healthsync oauth).
		RefreshToken: secret.New("rt_user_grant_77"),
	}
	res, err := b.store.Upsert(b.ctx, store.NewCredential{ID: "src-1", Vendor: "redox-prod", ClientID: "client-1", Keys: keys})
	require.NoError(t, err)
	require.Equal(t, store.Created, res)

	c, err := b.store.Get(b.ctx, "src-1")
	require.NoError(t, err)
	require.Equal(t, keys, c.Keys)

	raw, err := b.rdb.HGetAll(b.ctx, b.credKey("src-1")).Result()
	require.NoError(t, err)
	for field, v := range raw {
		for _, s := range []string{"BEGIN PRIVATE KEY", "hs_live_4f9a8b7c6d5e", "kid-2026-11", "rt_user_grant_77"} {
			require.False(t, strings.Contains(v, s), "field %s holds %q in the clear", field, s)
		}
	}

	// Changing any one key is an update; the same keys again are not.
	res, err = b.store.Upsert(b.ctx, store.NewCredential{ID: "src-1", Vendor: "redox-prod", ClientID: "client-1", Keys: keys})
	require.NoError(t, err)
	require.Equal(t, store.Unchanged, res)
	keys.KeyID = "kid-2027-02"
	res, err = b.store.Upsert(b.ctx, store.NewCredential{ID: "src-1", Vendor: "redox-prod", ClientID: "client-1", Keys: keys})
	require.NoError(t, err)
	require.Equal(t, store.Updated, res)
	c, err = b.store.Get(b.ctx, "src-1")
	require.NoError(t, err)
	require.Equal(t, "kid-2027-02", c.KeyID)
}
