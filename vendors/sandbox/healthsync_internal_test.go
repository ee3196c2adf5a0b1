package sandbox

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/internal/testenv"
)

func TestHSFixedWindow(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2025, 3, 4, 10, 20, 0, 0, time.UTC)
	end := time.Date(2025, 3, 4, 11, 0, 0, 0, time.UTC)
	l := newHSFixedWindow(3, time.Hour)

	for i := range 3 {
		q, reset := l.takeWithReset("a", t0)
		require.True(t, q.allowed)
		require.Equal(t, 3, q.limit)
		require.Equal(t, 2-i, q.remaining)
		require.Equal(t, end, reset)
	}
	q, reset := l.takeWithReset("a", t0.Add(10*time.Minute))
	require.False(t, q.allowed)
	require.Zero(t, q.remaining)
	require.Equal(t, 30*time.Minute, q.retryAfter, "until the window ends, not a sliding minute")
	require.Equal(t, end, reset)
	require.True(t, l.take("b", t0).allowed, "accounts are apart")

	// The next window starts afresh, at the hour.
	q = l.take("a", end)
	require.True(t, q.allowed)
	require.Equal(t, 2, q.remaining)
	require.Len(t, l.used, 1, "the old window's counts are gone")

	// Fixed, not sliding: up to twice the limit around a window's end.
	l = newHSFixedWindow(2, time.Hour)
	n := 0
	for _, at := range []time.Time{end.Add(-time.Second), end.Add(-time.Second), end, end} {
		if l.take("a", at).allowed {
			n++
		}
	}
	require.Equal(t, 4, n)

	// Plans: per account, 0 restores the default, negative is unlimited.
	l = newHSFixedWindow(1, time.Hour)
	l.setLimit("premium", 1000)
	require.Equal(t, 999, l.take("premium", t0).remaining)
	l.setLimit("premium", 0)
	require.False(t, l.take("premium", t0).allowed, "back to the default of 1, already used")
	l.setLimit("free", -1)
	for range 5 {
		q := l.take("free", t0)
		require.True(t, q.allowed)
		require.Equal(t, -1, q.limit)
	}
}

func TestHSScopes(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"read", "write", "delete", "records:read", "lab_results:delete"} {
		require.True(t, hsValidScope(s), s)
	}
	for _, s := range []string{"", "admin", "records:", ":read", "Records:read", "records:read:x", "records read"} {
		require.False(t, hsValidScope(s), s)
	}
	require.True(t, hsCovers([]string{"read"}, "records:read"))
	require.True(t, hsCovers([]string{"records:read"}, "records:read"))
	require.False(t, hsCovers([]string{"records:read"}, "read"), "one resource's read is not every resource's")
	require.False(t, hsCovers([]string{"records:read"}, "patients:read"))
	require.False(t, hsCovers([]string{"write"}, "records:read"))
	require.False(t, hsCovers(nil, "read"))
}

// TestHSMemoryIsBounded: rotated refresh tokens and access tokens are
// forgotten, so a long benchmark stays in bounded memory.
func TestHSMemoryIsBounded(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2025, 3, 4, 10, 0, 0, 0, time.UTC)
	clock := testenv.NewClock(t0)
	s := New(Options{Clock: clock.Now, RealTokenLifetime: time.Minute})
	s.AddClient("app", "x")
	v := s.healthSync
	rt := s.GrantHealthSync("acct", "app", []string{"read"})
	first := rt
	for range 50 {
		status, answer, _ := v.refresh("app", "x", rt, clock.Now())
		require.Equal(t, 200, status)
		rt = answer["refresh_token"].(string)
	}
	require.Len(t, v.grants, 1+healthSyncUsedKept, "the live one and the last few used")
	require.Len(t, v.access, 50)

	// A forgotten old refresh token is just unknown: the grant lives on.
	status, _, _ := v.refresh("app", "x", first, clock.Now())
	require.Equal(t, 400, status)
	status, _, _ = v.refresh("app", "x", rt, clock.Now())
	require.Equal(t, 200, status)

	// Access tokens expired more than 10 lifetimes ago are forgotten.
	clock.Advance(12 * time.Minute)
	status, _, _ = v.serviceToken("app", "x", "", clock.Now())
	require.Equal(t, 200, status)
	require.Len(t, v.access, 1)
	require.Len(t, v.accessOrder[v.accessHead:], 1)
}
