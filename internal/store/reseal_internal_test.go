package store

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/seal"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
	"github.com/tokenrelay/tokenrelay/secret"
)

func ringOf(t *testing.T, keys ...byte) *seal.Keyring {
	t.Helper()
	var old [][]byte
	for _, k := range keys[1:] {
		old = append(old, bytes.Repeat([]byte{k}, seal.KeySize))
	}
	r, err := seal.NewKeyring(bytes.Repeat([]byte{keys[0]}, seal.KeySize), old...)
	require.NoError(t, err)
	return r
}

// TestResealLosesNoConcurrentWrite: a renewal committed between the
// re-seal's read and its swap wins; the re-seal leaves that value alone
// (counted as a conflict), and the next pass finds it current.
func TestResealLosesNoConcurrentWrite(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb, prefix := testenv.RedisPrefix(t)
	old, err := New(rdb, Options{Prefix: prefix, Keyring: ringOf(t, 1)})
	require.NoError(t, err)
	now := time.Now()
	renew := func(s *Store, id, access string, gen int64) {
		t.Helper()
		_, err := s.Claim(ctx, id, gen, "w", time.Minute)
		require.NoError(t, err)
		ev, err := events.New(events.TypeTokenRenewed, "halaxy-au", id, now, map[string]string{"credential": id})
		require.NoError(t, err)
		require.NoError(t, s.CommitRenewal(ctx, id, "w", gen, Renewal{
			Token: Token{AccessToken: secret.New(access), ExpiresAt: now.Add(time.Hour)}, NextRefresh: now.Add(time.Hour)}, ev))
	}
	ids := []string{"c1", "c2", "c3", "c4"}
	for _, id := range ids {
		_, err := old.Upsert(ctx, NewCredential{ID: id, Vendor: "halaxy-au", ClientID: id, Keys: Keys{ClientSecret: secret.New("s-" + id)}})
		require.NoError(t, err)
		renew(old, id, "first-"+id, 0)
	}

	rotated, err := New(rdb, Options{Prefix: prefix, Keyring: ringOf(t, 2, 1)})
	require.NoError(t, err)
	// Between the read and the swap, a worker still on the old keyring (a
	// rolling restart) renews c2 and c3.
	rotated.testBeforeSwap = func() {
		renew(old, "c2", "second-c2", 1)
		renew(old, "c3", "second-c3", 1)
	}
	p, err := rotated.Reseal(ctx, ResealOptions{})
	require.NoError(t, err)
	require.EqualValues(t, 2, p.Conflicts, "the two access tokens renewed meanwhile are left to their writer")
	rotated.testBeforeSwap = nil

	for id, want := range map[string]string{"c1": "first-c1", "c2": "second-c2", "c3": "second-c3", "c4": "first-c4"} {
		c, err := rotated.Get(ctx, id)
		require.NoError(t, err)
		require.Equal(t, want, c.Token.AccessToken.Reveal(), "%s lost its renewal", id)
	}
	// The next pass seals what the old worker wrote; then nothing is left.
	p, err = rotated.Reseal(ctx, ResealOptions{})
	require.NoError(t, err)
	require.EqualValues(t, 2, p.Resealed)
	p, err = rotated.Reseal(ctx, ResealOptions{DryRun: true})
	require.NoError(t, err)
	require.EqualValues(t, 0, p.Stale)
}

// TestLegacyBindingOpensAndIsRewritten: values sealed before the vendor was
// bound (associated data "<id>/<field>") still open, and the re-seal
// rewrites them with the full binding, under the same key.
func TestLegacyBindingOpensAndIsRewritten(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb, prefix := testenv.RedisPrefix(t)
	ring := ringOf(t, 1)
	s, err := New(rdb, Options{Prefix: prefix, Keyring: ring})
	require.NoError(t, err)
	_, err = s.Upsert(ctx, NewCredential{ID: "old-1", Vendor: "halaxy-au", ClientID: "cid"})
	require.NoError(t, err)
	bundle, err := Keys{ClientSecret: secret.New("legacy-secret")}.encode()
	require.NoError(t, err)
	legacySecret, err := ring.Seal([]byte(bundle.Reveal()), legacyAAD("old-1", fClientSecret))
	require.NoError(t, err)
	legacyAccess, err := ring.Seal([]byte("legacy-access"), legacyAAD("old-1", fAccessToken))
	require.NoError(t, err)
	require.NoError(t, rdb.HSet(ctx, s.credKey("old-1"), fClientSecret, legacySecret, fAccessToken, legacyAccess).Err())

	c, err := s.Get(ctx, "old-1")
	require.NoError(t, err, "a value sealed with the legacy binding must still open")
	require.Equal(t, "legacy-secret", c.ClientSecret.Reveal())
	require.Equal(t, "legacy-access", c.Token.AccessToken.Reveal())

	p, err := s.Reseal(ctx, ResealOptions{})
	require.NoError(t, err)
	require.EqualValues(t, 2, p.Resealed)
	for _, f := range []string{fClientSecret, fAccessToken} {
		v, err := rdb.HGet(ctx, s.credKey("old-1"), f).Result()
		require.NoError(t, err)
		_, err = ring.Open(v, legacyAAD("old-1", f))
		require.ErrorIs(t, err, seal.ErrAuth, "%s is rewritten with the full binding", f)
		_, err = ring.Open(v, aad("old-1", "halaxy-au", f))
		require.NoError(t, err)
	}
	c, err = s.Get(ctx, "old-1")
	require.NoError(t, err)
	require.Equal(t, "legacy-access", c.Token.AccessToken.Reveal())
}
