package redoxlegacy_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/vendors/internal/vendortest"
	"github.com/tokenrelay/tokenrelay/vendors/redoxlegacy"
	"github.com/tokenrelay/tokenrelay/vendors/sandbox"
)

// every lists the times from from to until (included) step apart.
func every(from, until, step time.Duration) []time.Duration {
	var out []time.Duration
	for d := from; d <= until; d += step {
		out = append(out, d)
	}
	return out
}

// TestRefreshChain30Days drives one credential in ModeRefresh through 30
// simulated days, the sandbox's clock and the adapter's being the same:
// renewals every 16 hours (two thirds of the 24-hour lifetime, as the
// pipeline schedules them) on days 0 to 5, a 6-day gap, three more days of
// renewals, an 8-day gap, renewals again until day 30. The test keeps the
// "stored" refresh token as the pipeline does: replaced only by the one a
// successful Token returns. The chain must hold across the 6-day gap, break
// across the 8-day one (the refresh token died after 7 idle days) where
// the adapter re-authenticates in the same Token call, and the credential
// must never be lost.
func TestRefreshChain30Days(t *testing.T) {
	t.Parallel()
	b := setup(t, redoxlegacy.ModeRefresh, nil)

	const renew = 16 * time.Hour
	phase1 := every(0, 5*day, renew)      // 0h … 112h
	gap6 := phase1[len(phase1)-1] + 6*day // 256h
	phase2 := every(gap6, gap6+3*day, renew)
	gap8 := phase2[len(phase2)-1] + 8*day // 512h
	phase3 := every(gap8, 30*day, renew)
	require.Equal(t, []int{8, 5, 14}, []int{len(phase1), len(phase2), len(phase3)})
	schedule := append(append(append([]time.Duration{}, phase1...), phase2...), phase3...)

	stored := cred // what the store holds: no refresh token before the first renewal
	var (
		lastIssued  time.Time
		lastAccess  secret.Value
		chain       = 1
		wantCalls   []time.Time // when the sandbox must have seen token calls
		wantExpired int
	)
	for i, at := range schedule {
		now := vendortest.T0.Add(at)
		b.sb.Clock.Set(now)

		// The previous access token is still good after 16 hours, dead after a gap.
		if i > 0 {
			want := http.StatusOK
			if now.Sub(lastIssued) >= day {
				want = http.StatusUnauthorized
				wantExpired++
			}
			require.Equal(t, want, b.send(t, lastAccess), "step %d (hour %v): the previous access token", i, at.Hours())
		}

		idle := now.Sub(lastIssued)
		breaks := i > 0 && idle >= redoxlegacy.RefreshTokenIdleLimit
		wantCalls = append(wantCalls, now) // authenticate, or refresh
		if breaks {
			wantCalls = append(wantCalls, now) // the refused refresh, then authenticate
			chain++
		}

		tok, err := b.adapter.Token(t.Context(), stored)
		require.NoError(t, err, "step %d (hour %v): the credential is never lost", i, at.Hours())
		require.Equal(t, now, tok.IssuedAt)
		require.Equal(t, day, tok.ClaimedLifetime)
		require.False(t, tok.RefreshToken.IsZero())
		require.False(t, tok.RefreshToken.Equal(stored.RefreshToken), "rotated")
		require.Equal(t, wantCalls, b.sb.TokenCallTimes(apiKey), "step %d (hour %v): exactly the expected vendor calls", i, at.Hours())

		rts := b.refreshTokens()
		got := rts[tok.RefreshToken.Reveal()]
		require.Equal(t, chain, got.Chain, "step %d (hour %v): the chain breaks only across the 8-day gap", i, at.Hours())
		require.Equal(t, sandbox.RedoxLegacyRefreshActive, got.State)
		if i > 0 {
			wantOld := sandbox.RedoxLegacyRefreshConsumed
			if breaks {
				wantOld = sandbox.RedoxLegacyRefreshExpired
			}
			require.Equal(t, wantOld, rts[stored.RefreshToken.Reveal()].State, "step %d: the stored refresh token", i)
		}

		// The pipeline commits the access token and the refresh token together.
		stored.RefreshToken = tok.RefreshToken
		lastAccess, lastIssued = tok.AccessToken, tok.IssuedAt
		require.Equal(t, http.StatusOK, b.send(t, tok.AccessToken))
	}

	require.Len(t, schedule, 27)
	require.Equal(t, 2, chain)
	require.Equal(t, 28, b.sb.TokenCalls(apiKey), "27 renewals, one of which needed a second call")
	require.Equal(t, sandbox.RedoxLegacyStats{Authenticate: 2, Refresh: 26, RefreshRefused: 1, Chains: 2},
		b.sb.RedoxLegacyStats(apiKey))
	require.Equal(t, 2, wantExpired, "one expired access token after each gap")
	require.Equal(t, wantExpired, b.sb.ExpiredUsesBy(apiKey))

	// Chain 1 is the first 13 renewals: all consumed but the last, which
	// expired in the 8-day gap; chain 2 the other 14, all consumed but the
	// stored one.
	count := map[int]map[sandbox.RedoxLegacyRefreshState]int{1: {}, 2: {}}
	for _, rt := range b.sb.RedoxLegacyRefreshTokens(apiKey) {
		count[rt.Chain][rt.State]++
	}
	require.Equal(t, map[int]map[sandbox.RedoxLegacyRefreshState]int{
		1: {sandbox.RedoxLegacyRefreshConsumed: 12, sandbox.RedoxLegacyRefreshExpired: 1},
		2: {sandbox.RedoxLegacyRefreshConsumed: 13, sandbox.RedoxLegacyRefreshActive: 1},
	}, count)
	require.Equal(t, sandbox.RedoxLegacyRefreshActive, b.refreshTokens()[stored.RefreshToken.Reveal()].State)
}
