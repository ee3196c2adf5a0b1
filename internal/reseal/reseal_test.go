package reseal

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/internal/seal"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
	"github.com/tokenrelay/tokenrelay/secret"
)

// TestBackgroundResealWaitsForTheLease: a worker started with a previous
// key re-seals in the background, but only once no other process holds
// the lease; it logs its progress and counts the records in its metrics.
func TestBackgroundResealWaitsForTheLease(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rdb, prefix := testenv.RedisPrefix(t)
	key := func(b byte) []byte { return bytes.Repeat([]byte{b}, seal.KeySize) }
	k1, err := seal.NewKeyring(key(1))
	require.NoError(t, err)
	old, err := store.New(rdb, store.Options{Prefix: prefix, Keyring: k1})
	require.NoError(t, err)
	for _, id := range []string{"a", "b", "c"} {
		_, err := old.Upsert(ctx, store.NewCredential{ID: id, Vendor: "halaxy-au", ClientID: id, Keys: store.Keys{ClientSecret: secret.New("s")}})
		require.NoError(t, err)
	}
	k21, err := seal.NewKeyring(key(2), key(1))
	require.NoError(t, err)
	st, err := store.New(rdb, store.Options{Prefix: prefix, Keyring: k21})
	require.NoError(t, err)

	// Another replica holds the lease.
	ok, err := st.ResealLease(ctx, "other-replica", time.Minute)
	require.NoError(t, err)
	require.True(t, ok)

	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	require.NoError(t, err)
	var logs testenv.Buffer
	Start(ctx, st, zerolog.New(&logs), m, 20*time.Millisecond)
	stale := func() int64 {
		p, err := st.Reseal(ctx, store.ResealOptions{DryRun: true})
		require.NoError(t, err)
		return p.Stale
	}
	require.Never(t, func() bool { return stale() < 3 }, 300*time.Millisecond, 50*time.Millisecond, "the lease is another's")

	require.NoError(t, st.ReleaseResealLease(ctx, "other-replica"))
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "re-seal done") }, 60*time.Second, 50*time.Millisecond)
	require.EqualValues(t, 0, stale())
	require.EqualValues(t, 3, testutil.ToFloat64(m.records.WithLabelValues("resealed")))
	require.EqualValues(t, 0, testutil.ToFloat64(m.stale))
	require.Contains(t, logs.String(), `"message":"re-seal progress"`)
	require.Contains(t, logs.String(), `"resealed":3`)
	require.NotContains(t, logs.String(), `"s"`, "no secret in the log")
	done, err := st.ResealDone(ctx)
	require.NoError(t, err)
	require.Equal(t, st.CurrentKeyID(), done)
}
