package sandbox

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/internal/testenv"
)

func TestTokensArePurged(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2025, 3, 4, 10, 0, 0, 0, time.UTC)
	clock := testenv.NewClock(t0)
	s := New(Options{Clock: clock.Now, RealTokenLifetime: time.Minute})
	s.AddClient("c", "x")

	var old []string
	for range 3000 {
		tok, _, err := s.issue(apiHalaxy, "c", "x", clock.Now())
		require.NoError(t, err)
		old = append(old, tok)
	}
	require.Equal(t, 3000, s.tokens.len())

	// Expired 5 lifetimes ago: still known, a use counts as expired.
	clock.Advance(6 * time.Minute)
	_, _, err := s.issue(apiHalaxy, "c", "x", clock.Now())
	require.NoError(t, err)
	require.Equal(t, 3001, s.tokens.len())
	_, state := s.checkToken(apiHalaxy, old[0], clock.Now())
	require.Equal(t, tokenExpired, state)
	log := s.ExpiredUseLog()
	require.Len(t, log, 1)
	require.Equal(t, "c", log[0].ClientID)
	require.Equal(t, clock.Now(), log[0].At)
	require.Positive(t, log[0].Late, "how long after its expiry the token came")

	// Expired more than 10 lifetimes ago: forgotten at the next issue.
	clock.Advance(6 * time.Minute)
	fresh, _, err := s.issue(apiHalaxy, "c", "x", clock.Now())
	require.NoError(t, err)
	require.Equal(t, 2, s.tokens.len())
	require.Less(t, len(s.tokens.order)-s.tokens.head, 3, "the issue order is compacted too")
	_, state = s.checkToken(apiHalaxy, old[0], clock.Now())
	require.Equal(t, tokenUnknown, state)
	_, state = s.checkToken(apiHalaxy, fresh, clock.Now())
	require.Equal(t, tokenValid, state)
	require.Equal(t, 1, s.ExpiredUses())
	require.Equal(t, 1, s.UnknownUses())
}

func TestHistoryIsBounded(t *testing.T) {
	t.Parallel()
	var s []int
	for i := range 3*maxHistory + 7 {
		s = appendCapped(s, i)
		require.Less(t, len(s), 2*maxHistory)
	}
	got := tail(s)
	require.Len(t, got, maxHistory)
	require.Equal(t, 3*maxHistory+6, got[len(got)-1])
	require.Equal(t, 2*maxHistory+7, got[0])
}

func TestSlidingWindow(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2025, 3, 4, 10, 0, 0, 0, time.UTC)
	l := newSlidingWindow(500, time.Minute, nil)

	// 500 at once, then nothing until the first leaves the window.
	for i := range 500 {
		q := l.take("a", t0)
		require.True(t, q.allowed)
		require.Equal(t, 499-i, q.remaining)
	}
	q := l.take("a", t0.Add(59*time.Second))
	require.False(t, q.allowed)
	require.Equal(t, time.Second, q.retryAfter)
	require.True(t, l.take("b", t0).allowed, "accounts are apart")

	// Exactly at the window's end the first 500 have left.
	q = l.take("a", t0.Add(time.Minute))
	require.True(t, q.allowed)
	require.Equal(t, 499, q.remaining)

	// Spread out: never more than 500 in any minute.
	l = newSlidingWindow(500, time.Minute, nil)
	allowed := []time.Time{}
	for i := range 3000 {
		now := t0.Add(time.Duration(i) * 50 * time.Millisecond)
		if l.take("a", now).allowed {
			allowed = append(allowed, now)
		}
	}
	for i := 500; i < len(allowed); i++ {
		require.GreaterOrEqual(t, allowed[i].Sub(allowed[i-500]), time.Minute)
	}
	require.Greater(t, len(allowed), 1000)

	// Idle accounts are forgotten.
	l.take("b", t0.Add(time.Hour))
	l.take("b", t0.Add(time.Hour+time.Minute))
	require.Len(t, l.hits, 1)
}
