package store_test

import (
	"bytes"
	"encoding/base64"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/internal/seal"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
)

func rawKey(b byte) []byte { return bytes.Repeat([]byte{b}, seal.KeySize) }

// withKeyring is a store on the same Redis and prefix as b, sealing with
// ring: the same installation restarted with other master keys.
func (b *bundle) withKeyring(t *testing.T, ring *seal.Keyring) *store.Store {
	t.Helper()
	s, err := store.New(b.rdb, store.Options{Prefix: b.prefix, Keyring: ring, Clock: b.clock.Now})
	require.NoError(t, err)
	return s
}

// sealedKeyIDs are the key ids of every sealed field of the credentials.
func (b *bundle) sealedKeyIDs(t *testing.T, ids ...string) map[string]int {
	t.Helper()
	got := map[string]int{}
	for _, id := range ids {
		m, err := b.rdb.HMGet(b.ctx, b.credKey(id), "client_secret", "access_token", "refresh_token").Result()
		require.NoError(t, err)
		for _, v := range m {
			if s, ok := v.(string); ok && s != "" {
				kid, err := seal.KeyIDOf(s)
				require.NoError(t, err)
				got[kid]++
			}
		}
	}
	return got
}

// TestMasterKeyRotationReseal: values sealed under K1 open after a restart with
// K2 current and K1 previous; the re-seal moves every one of them to K2;
// then K1 can be dropped and every read still works. A value under a key
// the keyring lacks fails with an error naming that key's id, never a key.
func TestMasterKeyRotationReseal(t *testing.T) {
	t.Parallel()
	rdb, prefix := testenv.RedisPrefix(t)
	b := newBundle(t, rdb, prefix) // K1 = key 1
	ids := []string{"clinic-1", "clinic-2", "clinic-3"}
	for _, id := range ids {
		b.add(t, id)
		b.renew(t, id, 0, accessToken, refreshToken)
	}
	k1, k2 := seal.KeyID(rawKey(1)), seal.KeyID(rawKey(2))
	require.Equal(t, map[string]int{k1: 9}, b.sealedKeyIDs(t, ids...))

	// Restart with K2 current, K1 previous: reads work, and new writes use K2.
	rotated := b.withKeyring(t, testKeyring(t, 2, 1))
	for _, id := range ids {
		c, err := rotated.Get(b.ctx, id)
		require.NoError(t, err)
		require.Equal(t, accessToken, c.Token.AccessToken.Reveal())
		require.Equal(t, clientSecret, c.ClientSecret.Reveal())
	}
	status, err := rotated.Reseal(b.ctx, store.ResealOptions{DryRun: true})
	require.NoError(t, err)
	require.EqualValues(t, 9, status.Stale)
	require.Equal(t, map[string]int{k1: 9}, b.sealedKeyIDs(t, ids...), "a dry run writes nothing")

	var reports []store.ResealProgress
	p, err := rotated.Reseal(b.ctx, store.ResealOptions{Batch: 1, Progress: func(p store.ResealProgress) { reports = append(reports, p) }})
	require.NoError(t, err)
	require.Equal(t, store.ResealProgress{Total: 3, Scanned: 3, Values: 9, Stale: 9, Resealed: 9,
		ByKey: map[string]int64{k1: 9}, FailedKeys: map[string]int64{}}, p)
	require.NotEmpty(t, reports)
	require.Equal(t, map[string]int{k2: 9}, b.sealedKeyIDs(t, ids...))

	// Idempotent: a second pass finds everything current and writes nothing.
	p, err = rotated.Reseal(b.ctx, store.ResealOptions{})
	require.NoError(t, err)
	require.EqualValues(t, 0, p.Stale)
	require.EqualValues(t, 9, p.Current)

	// K1 dropped: everything still opens.
	k2only := b.withKeyring(t, testKeyring(t, 2))
	for _, id := range ids {
		c, err := k2only.Get(b.ctx, id)
		require.NoError(t, err)
		require.Equal(t, refreshToken, c.Token.RefreshToken.Reveal())
	}

	// The wrong key: a clear error naming the missing key's id, no key.
	wrong := b.withKeyring(t, testKeyring(t, 3))
	_, err = wrong.Get(b.ctx, "clinic-1")
	require.ErrorIs(t, err, seal.ErrUnknownKey)
	require.ErrorContains(t, err, "key id "+k2)
	for _, k := range [][]byte{rawKey(2), rawKey(3)} {
		require.NotContains(t, err.Error(), base64.StdEncoding.EncodeToString(k))
		require.NotContains(t, err.Error(), string(k))
	}
	p, err = wrong.Reseal(b.ctx, store.ResealOptions{})
	require.NoError(t, err)
	require.EqualValues(t, 9, p.Failed)
	require.Equal(t, map[string]int64{k2: 9}, p.FailedKeys)
}

// TestSealedValueDoesNotMove is the attack of someone with write access to
// Redis: a ciphertext copied to another credential, another field, or left
// in place while the credential's vendor is changed, does not open.
func TestSealedValueDoesNotMove(t *testing.T) {
	t.Parallel()
	rdb, prefix := testenv.RedisPrefix(t)
	b := newBundle(t, rdb, prefix)
	b.add(t, "clinic-a")
	b.renew(t, "clinic-a", 0, accessToken, refreshToken)
	b.add(t, "clinic-b")

	get := func(key, field string) string {
		v, err := b.rdb.HGet(b.ctx, key, field).Result()
		require.NoError(t, err)
		return v
	}
	secretA := get(b.credKey("clinic-a"), "client_secret")
	accessA := get(b.credKey("clinic-a"), "access_token")

	t.Run("another credential", func(t *testing.T) {
		require.NoError(t, b.rdb.HSet(b.ctx, b.credKey("clinic-b"), "client_secret", secretA).Err())
		_, err := b.store.Get(b.ctx, "clinic-b")
		require.ErrorIs(t, err, seal.ErrAuth)
	})
	t.Run("another field", func(t *testing.T) {
		// The access token handed out as the refresh token (or the secret).
		require.NoError(t, b.rdb.HSet(b.ctx, b.credKey("clinic-a"), "refresh_token", accessA).Err())
		_, err := b.store.Get(b.ctx, "clinic-a")
		require.ErrorIs(t, err, seal.ErrAuth)
		require.NoError(t, b.rdb.HSet(b.ctx, b.credKey("clinic-a"), "refresh_token", "").Err())
	})
	t.Run("another vendor", func(t *testing.T) {
		// clinic-a's secret and token moved to a credential of the same id
		// under another vendor: they would be sent to that vendor.
		require.NoError(t, b.rdb.HSet(b.ctx, b.credKey("clinic-a"), "vendor", "redox-prod").Err())
		_, err := b.store.Get(b.ctx, "clinic-a")
		require.ErrorIs(t, err, seal.ErrAuth)
		_, err = b.store.CurrentToken(b.ctx, "clinic-a")
		require.ErrorIs(t, err, seal.ErrAuth)
		// Back to its own vendor, it opens again: the binding, not damage.
		require.NoError(t, b.rdb.HSet(b.ctx, b.credKey("clinic-a"), "vendor", vendor).Err())
		c, err := b.store.CurrentToken(b.ctx, "clinic-a")
		require.NoError(t, err)
		require.Equal(t, accessToken, c.Token.AccessToken.Reveal())
	})
}
