package seal_test

import (
	"bytes"
	"encoding/base64"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/internal/seal"
)

func testKey(b byte) []byte { return bytes.Repeat([]byte{b}, seal.KeySize) }

func TestSealOpenRoundtrip(t *testing.T) {
	t.Parallel()
	kr, err := seal.NewKeyring(testKey(1))
	require.NoError(t, err)
	aad := []byte("clinic-42/client_secret")

	for _, plain := range []string{"", "s", "a client secret with spaces", strings.Repeat("x", 4096)} {
		sealed, err := kr.Seal([]byte(plain), aad)
		require.NoError(t, err)
		require.Regexp(t, regexp.MustCompile(`^v1\.[0-9a-f]{8}\.[A-Za-z0-9_-]+$`), sealed)
		require.True(t, strings.HasPrefix(sealed, "v1."+kr.CurrentKeyID()+"."))
		if len(plain) > 4 {
			require.NotContains(t, sealed, plain)
		}

		got, err := kr.Open(sealed, aad)
		require.NoError(t, err)
		require.Equal(t, plain, string(got))

		kid, err := seal.KeyIDOf(sealed)
		require.NoError(t, err)
		require.Equal(t, kr.CurrentKeyID(), kid)
	}
}

func TestSealIsRandomised(t *testing.T) {
	t.Parallel()
	kr, err := seal.NewKeyring(testKey(1))
	require.NoError(t, err)
	a, err := kr.Seal([]byte("same"), nil)
	require.NoError(t, err)
	b, err := kr.Seal([]byte("same"), nil)
	require.NoError(t, err)
	require.NotEqual(t, a, b, "two seals of one plaintext must differ (fresh nonce)")
}

func TestKeyID(t *testing.T) {
	t.Parallel()
	kr, err := seal.NewKeyring(testKey(1))
	require.NoError(t, err)
	require.Equal(t, seal.KeyID(testKey(1)), kr.CurrentKeyID())
	require.Len(t, kr.CurrentKeyID(), 8)
	require.NotEqual(t, seal.KeyID(testKey(1)), seal.KeyID(testKey(2)))
}

func TestOldKeyOpens(t *testing.T) {
	t.Parallel()
	oldRing, err := seal.NewKeyring(testKey(1))
	require.NoError(t, err)
	sealedOld, err := oldRing.Seal([]byte("old secret"), []byte("aad"))
	require.NoError(t, err)

	// Rotation: key 2 is current, key 1 is kept to open what it sealed.
	rotated, err := seal.NewKeyring(testKey(2), testKey(1))
	require.NoError(t, err)
	require.Equal(t, seal.KeyID(testKey(2)), rotated.CurrentKeyID())

	got, err := rotated.Open(sealedOld, []byte("aad"))
	require.NoError(t, err)
	require.Equal(t, "old secret", string(got))

	sealedNew, err := rotated.Seal([]byte("new secret"), []byte("aad"))
	require.NoError(t, err)
	kid, err := seal.KeyIDOf(sealedNew)
	require.NoError(t, err)
	require.Equal(t, rotated.CurrentKeyID(), kid)

	// The old ring alone does not know the new key.
	_, err = oldRing.Open(sealedNew, []byte("aad"))
	require.ErrorIs(t, err, seal.ErrUnknownKey)
	require.Contains(t, err.Error(), rotated.CurrentKeyID(), "the missing key id helps the operator")
}

func TestOpenFailures(t *testing.T) {
	t.Parallel()
	kr, err := seal.NewKeyring(testKey(1))
	require.NoError(t, err)
	const plain = "very-secret-refresh-token"
	aad := []byte("clinic-42/refresh_token")
	sealed, err := kr.Seal([]byte(plain), aad)
	require.NoError(t, err)

	kid, payload, _ := strings.Cut(strings.TrimPrefix(sealed, "v1."), ".")
	box, err := base64.RawURLEncoding.DecodeString(payload)
	require.NoError(t, err)
	flip := func(i int) string {
		b := bytes.Clone(box)
		b[i] ^= 0x01
		return "v1." + kid + "." + base64.RawURLEncoding.EncodeToString(b)
	}

	cases := []struct {
		name   string
		sealed string
		aad    []byte
		want   error
	}{
		{"tampered ciphertext", flip(12), aad, seal.ErrAuth},
		{"tampered nonce", flip(0), aad, seal.ErrAuth},
		{"tampered tag", flip(len(box) - 1), aad, seal.ErrAuth},
		{"aad of another credential", sealed, []byte("clinic-43/refresh_token"), seal.ErrAuth},
		{"aad of another field", sealed, []byte("clinic-42/access_token"), seal.ErrAuth},
		{"no aad", sealed, nil, seal.ErrAuth},
		{"unknown key id", "v1.00000000." + payload, aad, seal.ErrUnknownKey},
		{"unknown version", "v2." + kid + "." + payload, aad, seal.ErrMalformed},
		{"plaintext given", plain, aad, seal.ErrMalformed},
		{"empty", "", aad, seal.ErrMalformed},
		{"bad key id", "v1.XYZ." + payload, aad, seal.ErrMalformed},
		{"missing payload separator", "v1." + kid, aad, seal.ErrMalformed},
		{"payload not base64url", "v1." + kid + ".!!" + plain, aad, seal.ErrMalformed},
		{"payload too short", "v1." + kid + "." + base64.RawURLEncoding.EncodeToString(box[:20]), aad, seal.ErrMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			got, err := kr.Open(c.sealed, c.aad)
			require.ErrorIs(t, err, c.want)
			require.Nil(t, got)
			msg := err.Error()
			require.NotContains(t, msg, plain)
			require.NotContains(t, msg, payload)
			if len(c.aad) > 0 {
				require.NotContains(t, msg, string(c.aad))
			}
		})
	}
}

func TestNewKeyringRejectsBadKeys(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		current []byte
		old     [][]byte
		want    string
	}{
		{"nil current", nil, nil, "current key: key is 0 bytes, want 32"},
		{"short current", make([]byte, 16), nil, "current key: key is 16 bytes, want 32"},
		{"long current", make([]byte, 33), nil, "current key: key is 33 bytes, want 32"},
		{"short old", testKey(1), [][]byte{testKey(2), make([]byte, 31)}, "old key 2: key is 31 bytes, want 32"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			kr, err := seal.NewKeyring(c.current, c.old...)
			require.Nil(t, kr)
			require.EqualError(t, err, "seal: "+c.want)
		})
	}
}

func TestNewKeyringDuplicateKey(t *testing.T) {
	t.Parallel()
	kr, err := seal.NewKeyring(testKey(1), testKey(1), testKey(2), testKey(2))
	require.NoError(t, err)
	s, err := kr.Seal([]byte("x"), nil)
	require.NoError(t, err)
	got, err := kr.Open(s, nil)
	require.NoError(t, err)
	require.Equal(t, "x", string(got))
}

func TestParseKey(t *testing.T) {
	t.Parallel()
	raw := make([]byte, seal.KeySize)
	for i := range raw {
		raw[i] = byte(0xf0 + i%16) // bytes that differ between the std and URL alphabets
	}
	for name, s := range map[string]string{
		"std":          base64.StdEncoding.EncodeToString(raw),
		"std unpadded": base64.RawStdEncoding.EncodeToString(raw),
		"url":          base64.URLEncoding.EncodeToString(raw),
		"url unpadded": base64.RawURLEncoding.EncodeToString(raw),
		"with newline": base64.StdEncoding.EncodeToString(raw) + "\n",
	} {
		got, err := seal.ParseKey(s)
		require.NoError(t, err, name)
		require.Equal(t, raw, got, name)
	}
}

func TestParseKeyErrorsHideInput(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"empty":          "",
		"not base64":     "this is not base64 at all, it is a secret!",
		"16 bytes":       base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("k"), 16)),
		"33 bytes":       base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("k"), 33)),
		"mixed alphabet": base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xfb}, 30)) + "-_",
	}
	for name, in := range cases {
		_, err := seal.ParseKey(in)
		require.Error(t, err, name)
		require.True(t, strings.HasPrefix(err.Error(), "seal: key "), name)
		if in != "" {
			require.NotContains(t, err.Error(), in, name)
		}
	}
}
