package budget_test

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/internal/budget"
	"github.com/tokenrelay/tokenrelay/internal/slidingwindow"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
)

// setup returns n budgets ("processes") sharing one Redis key prefix.
func setup(t *testing.T, n int, o budget.Options) []*budget.Budget {
	t.Helper()
	rdb, prefix := testenv.RedisPrefix(t)
	o.Prefix = prefix
	bs := make([]*budget.Budget, n)
	for i := range bs {
		bs[i] = budget.New(rdb, o)
		b := bs[i]
		t.Cleanup(func() { _ = b.Close(context.Background()) })
	}
	return bs
}

// drain takes permits from the budgets in turn (each process's lease
// included) until none of them grants one, returning how many were granted.
func drain(t *testing.T, bs []*budget.Budget, account string, lim budget.Limit, class budget.Class) int {
	t.Helper()
	got := 0
	for {
		round := 0
		for _, b := range bs {
			round += takeN(t, b, account, lim, class, 1)
		}
		if round == 0 {
			return got
		}
		got += round
	}
}

// takeN takes up to n permits, returning how many were granted.
func takeN(t *testing.T, b *budget.Budget, account string, lim budget.Limit, class budget.Class, n int) int {
	t.Helper()
	got := 0
	for range n {
		ok, _, err := b.Take(context.Background(), account, lim, class)
		require.NoError(t, err)
		if ok {
			got++
		}
	}
	return got
}

func TestNoSlidingWindowExceedsTheLimitAcrossProcesses(t *testing.T) {
	t.Parallel()
	// Two processes on the real clocks, 16 goroutines hammering one account
	// for three windows: every granted permit's time goes in the record.
	// The slack covers the delay between a permit's handout and its time
	// in the record here (goroutines preempted on a loaded machine), as it
	// covers the network's delay to the vendor.
	bs := setup(t, 2, budget.Options{Slack: 200 * time.Millisecond})
	lim := budget.Limit{Requests: 50, Per: time.Second, Kind: budget.Sliding}
	ctx := context.Background()
	stop := time.Now().Add(3 * time.Second)
	var mu sync.Mutex
	var granted []time.Time
	var wg sync.WaitGroup
	for g := range 16 {
		b := bs[g%2]
		wg.Go(func() {
			for time.Now().Before(stop) {
				ok, retryAt, err := b.Take(ctx, "halaxy/c1", lim, budget.Bulk)
				if err != nil {
					t.Error(err)
					return
				}
				if ok {
					mu.Lock()
					granted = append(granted, time.Now())
					mu.Unlock()
					continue
				}
				// The job would be rescheduled for retryAt: nothing held.
				time.Sleep(time.Until(retryAt))
			}
		})
	}
	wg.Wait()
	require.Greater(t, len(granted), 2*lim.Requests, "the budget must go on granting as the window slides")
	require.LessOrEqual(t, slidingwindow.MaxIn(granted, lim.Per), lim.Requests)
}

func TestRetryAtIsWhenTheOldestPermitLeavesTheWindow(t *testing.T) {
	t.Parallel()
	clock := testenv.NewClock(time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC))
	lease, slack := 100*time.Millisecond, 50*time.Millisecond
	bs := setup(t, 2, budget.Options{Clock: clock.Now, Lease: lease, Slack: slack, PriorityReserve: -1})
	lim := budget.Limit{Requests: 10, Per: time.Minute}
	t0 := clock.Now()
	require.Equal(t, 10, takeN(t, bs[0], "acct", lim, budget.Bulk, 10))
	ok, retryAt, err := bs[1].Take(context.Background(), "acct", lim, budget.Bulk)
	require.NoError(t, err)
	require.False(t, ok)
	// A permit counts from the end of its lease plus the slack for a whole
	// window, then is free; a lease used up is re-recorded at the time of
	// its last permit: here the first lease, of one permit, is the oldest.
	require.Equal(t, t0.Add(slack+lim.Per+time.Millisecond), retryAt)

	clock.Set(retryAt.Add(-time.Millisecond))
	ok, _, err = bs[1].Take(context.Background(), "acct", lim, budget.Bulk)
	require.NoError(t, err)
	require.False(t, ok)
	clock.Set(retryAt)
	ok, _, err = bs[1].Take(context.Background(), "acct", lim, budget.Bulk)
	require.NoError(t, err)
	require.True(t, ok)
}

// A vendor's own slack (config rate_limit.slack, the network delay to it)
// replaces the budget's: each permit counts that much later.
func TestALimitsSlackOverridesTheBudgets(t *testing.T) {
	t.Parallel()
	clock := testenv.NewClock(time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC))
	bs := setup(t, 1, budget.Options{Clock: clock.Now, Lease: 100 * time.Millisecond, Slack: 50 * time.Millisecond, PriorityReserve: -1})
	lim := budget.Limit{Requests: 10, Per: time.Minute, Slack: 7 * time.Millisecond}
	t0 := clock.Now()
	require.Equal(t, 10, takeN(t, bs[0], "acct", lim, budget.Bulk, 10))
	ok, retryAt, err := bs[0].Take(context.Background(), "acct", lim, budget.Bulk)
	require.NoError(t, err)
	require.False(t, ok)
	require.Equal(t, t0.Add(7*time.Millisecond+lim.Per+time.Millisecond), retryAt)

	slack := config.Vendor{Kind: config.KindHalaxy, RateLimit: config.RateLimit{Limit: 500, Per: config.Duration(time.Minute), Slack: config.Duration(40 * time.Millisecond)}}
	require.Equal(t, 40*time.Millisecond, budget.LimitOf(slack).Slack)
}

func TestLowerLimitAndRemainingFromHeadersApplyAtOnce(t *testing.T) {
	t.Parallel()
	clock := testenv.NewClock(time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC))
	bs := setup(t, 2, budget.Options{Clock: clock.Now, PriorityReserve: -1})
	lim := budget.Limit{Requests: 100, Per: time.Minute}
	ctx := context.Background()
	require.Equal(t, 10, takeN(t, bs[0], "acct", lim, budget.Bulk, 10))

	// The vendor says its limit is 20, with 5 left: someone else spent 5.
	h := http.Header{}
	h.Set("x-ratelimit-limit", "20")
	h.Set("x-ratelimit-remaining", "5")
	until, err := bs[0].Observe(ctx, "acct", lim, http.StatusOK, h)
	require.NoError(t, err)
	require.True(t, until.IsZero())

	st, err := bs[1].Status(ctx, "acct", lim)
	require.NoError(t, err)
	require.Equal(t, 100, st.Configured)
	require.Equal(t, 20, st.Learned)
	require.Equal(t, 20, st.Limit)
	// What the observing process had leased and not handed out counts as
	// not yet seen by the vendor.
	require.Equal(t, 5, drain(t, bs, "acct", lim, budget.Bulk))
}

func TestHigherLimitFromHeadersIsApproachedCautiously(t *testing.T) {
	t.Parallel()
	clock := testenv.NewClock(time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC))
	bs := setup(t, 1, budget.Options{Clock: clock.Now})
	lim := budget.Limit{Requests: 100, Per: time.Minute}
	h := http.Header{}
	h.Set("x-ratelimit-limit", "1000")
	_, err := bs[0].Observe(context.Background(), "acct", lim, http.StatusOK, h)
	require.NoError(t, err)
	st, err := bs[0].Status(context.Background(), "acct", lim)
	require.NoError(t, err)
	require.Greater(t, st.Limit, 100)
	require.Less(t, st.Limit, 1000)
}

func TestA429PausesEveryProcessForItsRetryAfter(t *testing.T) {
	t.Parallel()
	clock := testenv.NewClock(time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC))
	bs := setup(t, 2, budget.Options{Clock: clock.Now, Jitter: -1})
	lim := budget.Limit{Requests: 500, Per: time.Minute}
	ctx := context.Background()
	// Both processes hold a lease when the 429 comes.
	require.Equal(t, 6, takeN(t, bs[0], "acct", lim, budget.Bulk, 6))
	require.Equal(t, 6, takeN(t, bs[1], "acct", lim, budget.Bulk, 6))
	t0 := clock.Now()
	h := http.Header{}
	h.Set("Retry-After", "20")
	until, err := bs[0].Observe(ctx, "acct", lim, http.StatusTooManyRequests, h)
	require.NoError(t, err)
	require.Equal(t, t0.Add(20*time.Second), until)

	// The other process learns of the pause by pub/sub; its local lease
	// stops as soon as it does.
	require.Eventually(t, func() bool {
		ok, _, err := bs[1].Take(ctx, "acct", lim, budget.Bulk)
		return err == nil && !ok
	}, 5*time.Second, time.Millisecond)

	for _, at := range []time.Duration{0, 10 * time.Second, 20*time.Second - time.Millisecond} {
		clock.Set(t0.Add(at))
		for _, b := range bs {
			for _, class := range []budget.Class{budget.Bulk, budget.Priority} {
				ok, retryAt, err := b.Take(ctx, "acct", lim, class)
				require.NoError(t, err)
				require.False(t, ok, "at +%s", at)
				require.Equal(t, until, retryAt)
			}
		}
	}
	clock.Set(until)
	for _, b := range bs {
		ok, _, err := b.Take(ctx, "acct", lim, budget.Bulk)
		require.NoError(t, err)
		require.True(t, ok)
	}
	st, err := bs[1].Status(ctx, "acct", lim)
	require.NoError(t, err)
	require.True(t, st.PausedUntil.IsZero())
}

func TestA429PauseIsJitteredAndCapped(t *testing.T) {
	t.Parallel()
	clock := testenv.NewClock(time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC))
	bs := setup(t, 1, budget.Options{Clock: clock.Now, MaxRetryAfter: time.Minute})
	lim := budget.Limit{Requests: 500, Per: time.Minute}
	ctx := context.Background()
	h := http.Header{}
	h.Set("Retry-After", "20")
	until, err := bs[0].Observe(ctx, "a", lim, http.StatusTooManyRequests, h)
	require.NoError(t, err)
	require.False(t, until.Before(clock.Now().Add(20*time.Second)), "jitter never shortens the pause")
	require.False(t, until.After(clock.Now().Add(21*time.Second)))

	h.Set("Retry-After", "86400")
	until, err = bs[0].Observe(ctx, "b", lim, http.StatusTooManyRequests, h)
	require.NoError(t, err)
	require.False(t, until.Before(clock.Now().Add(time.Minute)))
	require.False(t, until.After(clock.Now().Add(time.Minute+time.Second)))
}

func TestPauseFor(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name   string
		header map[string]string
		want   time.Duration
	}{
		{"seconds", map[string]string{"retry-after": "20"}, 20 * time.Second},
		{"http date", map[string]string{"Retry-After": now.Add(90 * time.Second).Format(http.TimeFormat)}, 90 * time.Second},
		{"date in the past", map[string]string{"Retry-After": now.Add(-time.Minute).Format(http.TimeFormat)}, 0},
		{"capped", map[string]string{"Retry-After": "3600"}, 5 * time.Minute},
		{"huge", map[string]string{"Retry-After": "1e300"}, 5 * time.Minute},
		{"reset header", map[string]string{"X-RateLimit-Reset": strconv.FormatInt(now.Add(40*time.Second).Unix(), 10)}, 40 * time.Second},
		{"nothing said", nil, time.Second},
		{"garbage", map[string]string{"Retry-After": "soon"}, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			for k, v := range tc.header {
				h.Set(k, v)
			}
			require.Equal(t, tc.want, budget.PauseFor(h, now, time.Second, 5*time.Minute))
		})
	}
}

func TestFixedHourlyWindowEndsAtTheVendorsReset(t *testing.T) {
	t.Parallel()
	clock := testenv.NewClock(time.Date(2026, 1, 1, 10, 20, 0, 0, time.UTC))
	bs := setup(t, 2, budget.Options{Clock: clock.Now, PriorityReserve: -1})
	lim := budget.Limit{Requests: 100, Per: time.Hour, Kind: budget.Fixed}
	ctx := context.Background()
	require.Equal(t, 100, drain(t, bs, "hs", lim, budget.Bulk))
	// Before the vendor said anything, windows are the clock's hours.
	ok, retryAt, err := bs[0].Take(ctx, "hs", lim, budget.Bulk)
	require.NoError(t, err)
	require.False(t, ok)
	require.Equal(t, time.Date(2026, 1, 1, 11, 0, 0, 0, time.UTC), retryAt)

	// The vendor's window ends at 10:45 instead.
	reset := time.Date(2026, 1, 1, 10, 45, 0, 0, time.UTC)
	h := http.Header{}
	h.Set("X-RateLimit-Limit", "100")
	h.Set("X-RateLimit-Remaining", "0")
	h.Set("X-RateLimit-Reset", strconv.FormatInt(reset.Unix(), 10))
	_, err = bs[1].Observe(ctx, "hs", lim, http.StatusOK, h)
	require.NoError(t, err)
	ok, retryAt, err = bs[1].Take(ctx, "hs", lim, budget.Bulk)
	require.NoError(t, err)
	require.False(t, ok)
	require.Equal(t, reset, retryAt)

	// At the reset the count starts afresh; the vendor then says another
	// client spent 60 of the new window.
	clock.Set(reset)
	require.Equal(t, 10, takeN(t, bs[0], "hs", lim, budget.Bulk, 10))
	h.Set("X-RateLimit-Remaining", "30")
	h.Set("X-RateLimit-Reset", strconv.FormatInt(reset.Add(time.Hour).Unix(), 10))
	_, err = bs[0].Observe(ctx, "hs", lim, http.StatusOK, h)
	require.NoError(t, err)
	require.Equal(t, 30, drain(t, bs, "hs", lim, budget.Bulk))
	st, err := bs[0].Status(ctx, "hs", lim)
	require.NoError(t, err)
	require.Equal(t, 100, st.Used)
	require.Equal(t, reset.Add(time.Hour), st.ResetAt)
}

func TestFixedWindowA429PauseIsCappedButTheSpentWindowHoldsUntilReset(t *testing.T) {
	t.Parallel()
	clock := testenv.NewClock(time.Date(2026, 1, 1, 10, 20, 0, 0, time.UTC))
	bs := setup(t, 2, budget.Options{Clock: clock.Now, Jitter: -1, MaxRetryAfter: 10 * time.Minute})
	lim := budget.Limit{Requests: 100, Per: time.Hour, Kind: budget.Fixed}
	reset := time.Date(2026, 1, 1, 11, 0, 0, 0, time.UTC)
	h := http.Header{}
	h.Set("X-RateLimit-Limit", "100")
	h.Set("X-RateLimit-Remaining", "0")
	h.Set("X-RateLimit-Reset", strconv.FormatInt(reset.Unix(), 10))
	until, err := bs[0].Observe(context.Background(), "hs", lim, http.StatusTooManyRequests, h)
	require.NoError(t, err)
	// The pause is capped, but the window, which the vendor said is spent,
	// still holds every process until the reset.
	require.Equal(t, clock.Now().Add(10*time.Minute), until)
	clock.Set(until)
	for _, b := range bs {
		ok, retryAt, err := b.Take(context.Background(), "hs", lim, budget.Bulk)
		require.NoError(t, err)
		require.False(t, ok)
		require.Equal(t, reset, retryAt)
	}
}

func TestPriorityIsNotBlockedByBulkExhaustion(t *testing.T) {
	t.Parallel()
	clock := testenv.NewClock(time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC))
	bs := setup(t, 2, budget.Options{Clock: clock.Now})
	lim := budget.Limit{Requests: 100, Per: time.Minute}
	// Bulk runs dry one permit short of the limit (the 1% reserve)...
	require.Equal(t, 99, drain(t, bs, "acct", lim, budget.Bulk))
	// ...and a token refresh still gets through, counted.
	ok, _, err := bs[1].Take(context.Background(), "acct", lim, budget.Priority)
	require.NoError(t, err)
	require.True(t, ok)
	ok, _, err = bs[0].Take(context.Background(), "acct", lim, budget.Priority)
	require.NoError(t, err)
	require.False(t, ok, "priority is still within the limit")
	st, err := bs[0].Status(context.Background(), "acct", lim)
	require.NoError(t, err)
	require.Equal(t, 100, st.Used)
	require.Equal(t, 0, st.Remaining)
	require.Equal(t, 1, st.Reserve)
}

func TestUnusedLeasesAreGivenBack(t *testing.T) {
	t.Parallel()
	clock := testenv.NewClock(time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC))
	bs := setup(t, 2, budget.Options{Clock: clock.Now, Lease: 20 * time.Millisecond, PriorityReserve: -1})
	lim := budget.Limit{Requests: 40, Per: time.Minute}
	// Process 0 takes 3 permits, leasing blocks of 1 and 2 then 4: it
	// holds 4 it does not use, and goes idle.
	require.Equal(t, 4, takeN(t, bs[0], "acct", lim, budget.Bulk, 4))
	// Process 1 gets all the rest once process 0's lease has ended.
	got := takeN(t, bs[1], "acct", lim, budget.Bulk, 40)
	require.Eventually(t, func() bool {
		got += takeN(t, bs[1], "acct", lim, budget.Bulk, 1)
		return got == 36
	}, 5*time.Second, 5*time.Millisecond)
}

func TestAnUnlimitedAccountIsOnlyPaused(t *testing.T) {
	t.Parallel()
	clock := testenv.NewClock(time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC))
	bs := setup(t, 1, budget.Options{Clock: clock.Now, Jitter: -1})
	none := budget.Limit{}
	require.Equal(t, 1000, takeN(t, bs[0], "redox", none, budget.Bulk, 1000))
	h := http.Header{}
	h.Set("Retry-After", "5")
	until, err := bs[0].Observe(context.Background(), "redox", none, http.StatusTooManyRequests, h)
	require.NoError(t, err)
	ok, retryAt, err := bs[0].Take(context.Background(), "redox", none, budget.Bulk)
	require.NoError(t, err)
	require.False(t, ok)
	require.Equal(t, until, retryAt)
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	clock := testenv.NewClock(time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC))
	m := budget.NewMetrics()
	bs := setup(t, 1, budget.Options{Clock: clock.Now, Metrics: m, PriorityReserve: -1})
	lim := budget.Limit{Requests: 3, Per: time.Minute}
	require.Equal(t, 3, takeN(t, bs[0], "acct", lim, budget.Bulk, 4))
	h := http.Header{}
	h.Set("Retry-After", "5")
	_, err := bs[0].Observe(context.Background(), "acct", lim, http.StatusTooManyRequests, h)
	require.NoError(t, err)
	_, err = bs[0].Status(context.Background(), "acct", lim)
	require.NoError(t, err)
	require.Equal(t, 3.0, gauge(t, m.Limit, "acct"))
	require.Equal(t, 3.0, gauge(t, m.Used, "acct"))
	require.Equal(t, 0.0, gauge(t, m.Remaining, "acct"))
	require.Equal(t, 1.0, counter(t, m.RateLimited, "acct"))
	require.Equal(t, 1.0, counter(t, m.Waits, "acct"))
	require.Greater(t, gauge(t, m.PausedUntil, "acct"), float64(clock.Now().Unix()))
}

func gauge(t *testing.T, v *prometheus.GaugeVec, account string) float64 {
	t.Helper()
	return testutil.ToFloat64(v.WithLabelValues(account))
}

func counter(t *testing.T, v *prometheus.CounterVec, account string) float64 {
	t.Helper()
	return testutil.ToFloat64(v.WithLabelValues(account))
}

func TestLimitAndAccountOfAVendor(t *testing.T) {
	t.Parallel()
	halaxy := config.Vendor{Name: "halaxy-au", Kind: config.KindHalaxy, RateLimit: config.RateLimit{Limit: 500, Per: config.Duration(time.Minute)}}
	require.Equal(t, budget.Limit{Requests: 500, Per: time.Minute, Kind: budget.Sliding}, budget.LimitOf(halaxy))
	require.Equal(t, "halaxy-au/cred-1", budget.AccountOf(halaxy, "cred-1"), "Halaxy limits each OAuth client")

	hs := config.Vendor{Name: "hs", Kind: config.KindHealthSync, RateLimit: config.RateLimit{Limit: 1000, Per: config.Duration(time.Hour)}}
	require.Equal(t, budget.Limit{Requests: 1000, Per: time.Hour, Kind: budget.Fixed}, budget.LimitOf(hs))
	require.Equal(t, "hs", budget.AccountOf(hs, "cred-1"), "HealthSync limits the plan")

	generic := config.Vendor{Name: "g", Kind: config.KindOAuth2, RateLimit: config.RateLimit{Limit: 10, Per: config.Duration(time.Second), Window: "fixed"}}
	require.Equal(t, budget.Fixed, budget.LimitOf(generic).Kind)
}
