package seal_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/internal/seal"
)

// The binary form opens to what was sealed, names its key like the text
// form, costs 33 bytes over the plaintext, and keeps what is before it.
func TestBinaryRoundtrip(t *testing.T) {
	t.Parallel()
	kr, err := seal.NewKeyring(testKey(1))
	require.NoError(t, err)
	aad := seal.Bind("test", "clinic-42")
	for _, plain := range []string{"", "s", "GET Patient _count=10", strings.Repeat("x", 4096)} {
		sealed, err := kr.AppendSeal([]byte("head"), []byte(plain), aad)
		require.NoError(t, err)
		require.True(t, bytes.HasPrefix(sealed, []byte("head")))
		sealed = sealed[len("head"):]
		require.Len(t, sealed, len(plain)+33)
		if len(plain) > 4 {
			require.NotContains(t, string(sealed), plain)
		}
		got, err := kr.OpenBinary(sealed, aad)
		require.NoError(t, err)
		require.Equal(t, plain, string(got))
		kid, err := seal.KeyIDOfBinary(sealed)
		require.NoError(t, err)
		require.Equal(t, kr.CurrentKeyID(), kid)
	}
}

// SealInPlace writes the binary form over the buffer it is given (room for
// the header, then the plaintext), growing it only when it lacks room for
// the tag; the value opens like AppendSeal's, only with its own aad.
func TestSealInPlace(t *testing.T) {
	t.Parallel()
	kr, err := seal.NewKeyring(testKey(1))
	require.NoError(t, err)
	aad := seal.Bind("test", "clinic-42")
	for _, plain := range []string{"", "s", strings.Repeat("patient ", 512)} {
		for _, spare := range []int{0, seal.BinaryTagLen, 100} {
			buf := make([]byte, seal.BinaryHeaderLen, seal.BinaryHeaderLen+len(plain)+spare)
			buf = append(buf, plain...)
			sealed, err := kr.SealInPlace(buf, aad)
			require.NoError(t, err)
			require.Len(t, sealed, len(plain)+33)
			if spare >= seal.BinaryTagLen {
				require.Same(t, &buf[0], &sealed[0], "sealed where it was written")
			}
			if len(plain) > 4 {
				require.NotContains(t, string(sealed), "patient")
			}
			got, err := kr.OpenBinary(sealed, aad)
			require.NoError(t, err)
			require.Equal(t, plain, string(got))
			_, err = kr.OpenBinary(sealed, seal.Bind("test", "clinic-43"))
			require.ErrorIs(t, err, seal.ErrAuth)
		}
	}
	_, err = kr.SealInPlace(make([]byte, seal.BinaryHeaderLen-1), aad)
	require.Error(t, err, "no room for the header")
}

// A binary value sealed under a key now kept as an old one still opens,
// and says which key it needs; a value whose key is gone says which key
// is missing; other associated data, tampering and truncation fail.
func TestBinaryKeysAndFailures(t *testing.T) {
	t.Parallel()
	old, err := seal.NewKeyring(testKey(1))
	require.NoError(t, err)
	aad := seal.Bind("test", "clinic-42")
	sealed, err := old.AppendSeal(nil, []byte("patient"), aad)
	require.NoError(t, err)

	rotated, err := seal.NewKeyring(testKey(2), testKey(1))
	require.NoError(t, err)
	got, err := rotated.OpenBinary(sealed, aad)
	require.NoError(t, err)
	require.Equal(t, "patient", string(got))
	kid, err := seal.KeyIDOfBinary(sealed)
	require.NoError(t, err)
	require.Equal(t, seal.KeyID(testKey(1)), kid)
	require.NotEqual(t, rotated.CurrentKeyID(), kid, "a value under the old key is due to be sealed again")

	dropped, err := seal.NewKeyring(testKey(2))
	require.NoError(t, err)
	_, err = dropped.OpenBinary(sealed, aad)
	require.ErrorIs(t, err, seal.ErrUnknownKey)
	require.Contains(t, err.Error(), kid)

	_, err = old.OpenBinary(sealed, seal.Bind("test", "clinic-43"))
	require.ErrorIs(t, err, seal.ErrAuth)
	tampered := bytes.Clone(sealed)
	tampered[len(tampered)-1] ^= 1
	_, err = old.OpenBinary(tampered, aad)
	require.ErrorIs(t, err, seal.ErrAuth)
	for _, bad := range [][]byte{nil, {0x01}, sealed[:5], sealed[:20], append([]byte{0x02}, sealed[1:]...)} {
		_, err = old.OpenBinary(bad, aad)
		require.ErrorIs(t, err, seal.ErrMalformed, "%x", bad)
		require.NotContains(t, err.Error(), "patient")
	}
}
