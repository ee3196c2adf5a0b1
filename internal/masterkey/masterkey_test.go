package masterkey_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/internal/masterkey"
	"github.com/tokenrelay/tokenrelay/internal/seal"
	"github.com/tokenrelay/tokenrelay/secret"
)

// kmsURL is a localsecrets KMS key: the KMS of development and tests.
func kmsURL(b byte) string {
	return "base64key://" + base64.URLEncoding.EncodeToString(bytes.Repeat([]byte{b}, 32))
}

func dataKey(b byte) []byte { return bytes.Repeat([]byte{b}, seal.KeySize) }

func wrap(t *testing.T, url string, key []byte) []byte {
	t.Helper()
	w, kid, err := masterkey.Wrap(context.Background(), url, key)
	require.NoError(t, err)
	require.Equal(t, seal.KeyID(key), kid)
	require.NotContains(t, string(w), string(key))
	return w
}

func TestWrappedKeyUnwraps(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg := &config.Config{
		SecretKeysPrevious: []secret.Value{secret.New(string(dataKey(3)))},
		KMS: config.KMS{URL: kmsURL(9), Wrapped: wrap(t, kmsURL(9), dataKey(1)),
			PreviousWrapped: [][]byte{wrap(t, kmsURL(9), dataKey(2))}},
	}
	ring, err := masterkey.Keyring(ctx, cfg)
	require.NoError(t, err)
	require.Equal(t, []string{seal.KeyID(dataKey(1)), seal.KeyID(dataKey(2)), seal.KeyID(dataKey(3))}, ring.KeyIDs())

	// What the unwrapped key seals, the plain key opens: it is the same key.
	sealed, err := ring.Seal([]byte("x"), []byte("aad"))
	require.NoError(t, err)
	plain, err := seal.NewKeyring(dataKey(1))
	require.NoError(t, err)
	got, err := plain.Open(sealed, []byte("aad"))
	require.NoError(t, err)
	require.Equal(t, "x", string(got))

	// A random key when none is given.
	w, kid, err := masterkey.Wrap(ctx, kmsURL(9), nil)
	require.NoError(t, err)
	ring, err = masterkey.Keyring(ctx, &config.Config{KMS: config.KMS{URL: kmsURL(9), Wrapped: w}})
	require.NoError(t, err)
	require.Equal(t, kid, ring.CurrentKeyID())
}

// TestWrongKMSKeyRefusesStart: a wrapped key the configured KMS key did not
// wrap, a scheme whose driver is not linked, and a key given twice stop
// the start with an error naming the variable, never a key.
func TestWrongKMSKeyRefusesStart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	wrapped := wrap(t, kmsURL(9), dataKey(1))
	for _, tc := range []struct {
		name string
		cfg  config.Config
		want string
	}{
		{"wrong KMS key", config.Config{KMS: config.KMS{URL: kmsURL(8), Wrapped: wrapped}},
			"masterkey: TOKENRELAY_SECRET_KEY_WRAPPED: the KMS does not unwrap it (is TOKENRELAY_KMS_URL the KMS key that wrapped it"},
		{"not a wrapped key", config.Config{KMS: config.KMS{URL: kmsURL(9), Wrapped: []byte("garbage")}},
			"TOKENRELAY_SECRET_KEY_WRAPPED: the KMS does not unwrap it"},
		{"driver not linked", config.Config{KMS: config.KMS{URL: "awskms:///alias/tokenrelay", Wrapped: wrapped}},
			"the awskms:// driver is not in this binary: build it with -tags kms_aws"},
		{"same key twice", config.Config{KMS: config.KMS{URL: kmsURL(9), Wrapped: wrapped},
			SecretKeysPrevious: []secret.Value{secret.New(string(dataKey(1)))}},
			"masterkey: TOKENRELAY_SECRET_KEYS_PREVIOUS (key 1) is the same key as TOKENRELAY_SECRET_KEY_WRAPPED (key id " + seal.KeyID(dataKey(1)) + ")"},
		{"no key", config.Config{}, "masterkey: no master key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := masterkey.Keyring(ctx, &tc.cfg)
			require.ErrorContains(t, err, tc.want)
			for _, secretText := range []string{kmsURL(9)[len("base64key://"):], kmsURL(8)[len("base64key://"):],
				base64.StdEncoding.EncodeToString(dataKey(1)), string(dataKey(1))} {
				require.NotContains(t, err.Error(), secretText)
			}
		})
	}
}
