package seal_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/internal/seal"
)

func TestBindIsUnambiguous(t *testing.T) {
	t.Parallel()
	require.Equal(t, "tokenrelay/cred/v1 8:clinic-1 9:halaxy-au 6:secret", string(seal.Bind("cred", "clinic-1", "halaxy-au", "secret")))
	// Parts that would join to the same text with a separator bind apart.
	distinct := [][]byte{
		seal.Bind("cred", "a b", "c"),
		seal.Bind("cred", "a", "b c"),
		seal.Bind("cred", "a 1:b", ""),
		seal.Bind("cred", "a", "b"),
		seal.Bind("outbox", "a", "b"),
		seal.Bind("cred", "a", "b", ""),
	}
	seen := map[string]bool{}
	for _, b := range distinct {
		require.False(t, seen[string(b)], "%q bound twice", b)
		seen[string(b)] = true
	}
}

func TestBoundValueOpensOnlyInItsPlace(t *testing.T) {
	t.Parallel()
	kr, err := seal.NewKeyring(make([]byte, seal.KeySize))
	require.NoError(t, err)
	sealed, err := kr.Seal([]byte("s3cret"), seal.Bind("cred", "clinic-1", "halaxy-au", "client_secret"))
	require.NoError(t, err)
	_, err = kr.Open(sealed, seal.Bind("cred", "clinic-2", "halaxy-au", "client_secret"))
	require.ErrorIs(t, err, seal.ErrAuth)
	got, err := kr.Open(sealed, seal.Bind("cred", "clinic-1", "halaxy-au", "client_secret"))
	require.NoError(t, err)
	require.Equal(t, "s3cret", string(got))
}
