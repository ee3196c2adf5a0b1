package budget_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/internal/budget"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
)

// The index lists the accounts that leased permits, took a priority
// permit or were paused, most recent first (paused ones, whose entry is
// their pause's end, ahead), and never one that was only looked at; an
// entry older than the retention is removed, not just hidden.
func TestAccountsListsTheUsedAccountsMostRecentFirst(t *testing.T) {
	t.Parallel()
	rdb, prefix := testenv.RedisPrefix(t)
	clock := testenv.NewClock(time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC))
	o := budget.Options{Prefix: prefix, Clock: clock.Now, Jitter: -1}
	b0, b1 := budget.New(rdb, o), budget.New(rdb, o)
	t.Cleanup(func() { _ = b0.Close(context.Background()) })
	t.Cleanup(func() { _ = b1.Close(context.Background()) })
	ctx := context.Background()
	lim := budget.Limit{Requests: 100, Per: time.Minute}
	t0 := clock.Now()
	accounts := func(since time.Time, limit int) ([]budget.Activity, int) {
		t.Helper()
		got, total, err := b1.Accounts(ctx, since, limit)
		require.NoError(t, err)
		for i := range got {
			got[i].Last = got[i].Last.UTC()
		}
		return got, total
	}

	require.Equal(t, 5, takeN(t, b0, "halaxy/busy", lim, budget.Bulk, 5))
	got, total := accounts(t0, 10)
	require.Equal(t, []budget.Activity{{Account: "halaxy/busy", Last: t0}}, got)
	require.Equal(t, 1, total)

	// The hot path: a new lease within a second of the last write does not
	// write the index again; one a second later does.
	clock.Set(t0.Add(500 * time.Millisecond)) // past the 300ms lease
	require.Equal(t, 1, takeN(t, b0, "halaxy/busy", lim, budget.Bulk, 1))
	got, _ = accounts(t0, 10)
	require.Equal(t, []budget.Activity{{Account: "halaxy/busy", Last: t0}}, got)
	clock.Set(t0.Add(time.Second))
	require.Equal(t, 1, takeN(t, b0, "halaxy/busy", lim, budget.Bulk, 1))
	got, _ = accounts(t0, 10)
	require.Equal(t, []budget.Activity{{Account: "halaxy/busy", Last: t0.Add(time.Second)}}, got)

	clock.Set(t0.Add(2 * time.Second))
	require.Equal(t, 1, takeN(t, b1, "halaxy/token", lim, budget.Priority, 1))
	clock.Set(t0.Add(3 * time.Second))
	h := http.Header{}
	h.Set("Retry-After", "30")
	until, err := b0.Observe(ctx, "halaxy/limited", lim, http.StatusTooManyRequests, h)
	require.NoError(t, err)
	require.Equal(t, t0.Add(33*time.Second), until.UTC())
	_, err = b1.Status(ctx, "halaxy/idle", lim)
	require.NoError(t, err)
	// Asking during the pause does not move its entry back from the
	// pause's end.
	clock.Set(t0.Add(3500 * time.Millisecond))
	ok, _, err := b1.Take(ctx, "halaxy/limited", lim, budget.Priority)
	require.NoError(t, err)
	require.False(t, ok)

	got, total = accounts(t0, 10)
	require.Equal(t, []budget.Activity{
		{Account: "halaxy/limited", Last: t0.Add(33 * time.Second)},
		{Account: "halaxy/token", Last: t0.Add(2 * time.Second)},
		{Account: "halaxy/busy", Last: t0.Add(time.Second)},
	}, got, "status reads are not use")
	require.Equal(t, 3, total)
	got, total = accounts(t0.Add(1500*time.Millisecond), 1)
	require.Equal(t, []budget.Activity{{Account: "halaxy/limited", Last: t0.Add(33 * time.Second)}}, got)
	require.Equal(t, 2, total, "the count is of all accounts since, not only those listed")
	got, total = accounts(t0, 0)
	require.Empty(t, got)
	require.Equal(t, 3, total)

	// A day later (the default retention), the untouched entries are gone
	// from Redis on the next read or write.
	index := prefix + "budget:accounts"
	clock.Set(t0.Add(24*time.Hour + 1500*time.Millisecond))
	got, total = accounts(time.Time{}, 10)
	require.Equal(t, []string{"halaxy/limited", "halaxy/token"}, names(got))
	require.Equal(t, 2, total)
	require.Equal(t, int64(2), rdb.ZCard(ctx, index).Val())
	clock.Set(t0.Add(24*time.Hour + 34*time.Second))
	require.Equal(t, 1, takeN(t, b1, "halaxy/new", lim, budget.Bulk, 1))
	require.Equal(t, int64(1), rdb.ZCard(ctx, index).Val(), "a write trims too")
	got, _ = accounts(time.Time{}, 10)
	require.Equal(t, []string{"halaxy/new"}, names(got))
	require.Positive(t, rdb.PTTL(ctx, index).Val(), "the index expires when nothing is written")
}

// A shorter retention applies as configured, to a fixed window's account
// as to a sliding one's.
func TestAccountsRetentionIsConfigurable(t *testing.T) {
	t.Parallel()
	clock := testenv.NewClock(time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC))
	bs := setup(t, 1, budget.Options{Clock: clock.Now, IndexRetention: time.Hour})
	ctx := context.Background()
	lim := budget.Limit{Requests: 100, Per: time.Hour, Kind: budget.Fixed}
	require.Equal(t, 1, takeN(t, bs[0], "healthsync", lim, budget.Bulk, 1))
	got, _, err := bs[0].Accounts(ctx, time.Time{}, 10)
	require.NoError(t, err)
	require.Equal(t, []string{"healthsync"}, names(got))
	clock.Set(clock.Now().Add(time.Hour + time.Millisecond))
	got, total, err := bs[0].Accounts(ctx, time.Time{}, 10)
	require.NoError(t, err)
	require.Empty(t, got)
	require.Zero(t, total)
}

// On a Redis that has not loaded the scripts yet, the call that writes
// the index (pipelined with the script) still runs the script.
func TestTheFirstCallOnAFreshRedisIsGrantedAndIndexed(t *testing.T) {
	t.Parallel()
	rdb := testenv.Miniredis(t)
	clock := testenv.NewClock(time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC))
	b := budget.New(rdb, budget.Options{Clock: clock.Now})
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	ok, _, err := b.Take(context.Background(), "halaxy/c1", budget.Limit{Requests: 10, Per: time.Minute}, budget.Priority)
	require.NoError(t, err)
	require.True(t, ok)
	got, _, err := b.Accounts(context.Background(), time.Time{}, 10)
	require.NoError(t, err)
	require.Equal(t, []string{"halaxy/c1"}, names(got))
}

func names(as []budget.Activity) []string {
	out := make([]string, 0, len(as))
	for _, a := range as {
		out = append(out, a.Account)
	}
	return out
}
