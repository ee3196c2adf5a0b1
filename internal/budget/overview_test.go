package budget_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/internal/budget"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
)

// The overview of a per-client vendor (Halaxy) lists the accounts that
// spent permits within the window, paused first, then the busiest, capped
// with a count of the rest, from the index of used accounts: an account
// used two windows ago is not listed. A vendor whose accounts are all idle
// has one idle row; a per-account vendor has one row.
func TestOverviewListsTheAccountsInUse(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	t0 := time.Date(2026, 12, 7, 5, 0, 0, 0, time.UTC)
	clock := testenv.NewClock(t0)
	perMinute := config.RateLimit{Limit: 500, Per: config.Duration(time.Minute)}
	vendors := map[string]config.Vendor{
		"halaxy-au":  {Kind: config.KindHalaxy, RateLimit: perMinute},
		"halaxy-nz":  {Kind: config.KindHalaxy, RateLimit: perMinute},
		"healthsync": {Kind: config.KindHealthSync, RateLimit: config.RateLimit{Limit: 100, Per: config.Duration(time.Hour)}},
		"no-limit":   {Kind: config.KindOAuth2},
	}
	rdb, prefix := testenv.RedisPrefix(t)
	b := budget.New(rdb, budget.Options{Prefix: prefix, Clock: clock.Now, Jitter: -1})
	t.Cleanup(func() { _ = b.Close(context.Background()) })

	au := budget.LimitOf(vendors["halaxy-au"])
	spend := func(account string, n int) {
		t.Helper()
		require.Equal(t, n, takeN(t, b, account, au, budget.Priority, n))
	}
	spend("halaxy-au/earlier", 3) // two windows ago: no longer in use
	clock.Set(t0.Add(2 * time.Minute))
	for i := range 52 {
		spend(fmt.Sprintf("halaxy-au/n%02d", i), 1)
	}
	spend("halaxy-au/busy", 30)
	spend("halaxy-au/light", 2)
	spend("halaxy-nzz/other", 1) // another vendor whose name starts alike
	h := http.Header{}
	h.Set("Retry-After", "20")
	until, err := b.Observe(ctx, "halaxy-au/limited", au, http.StatusTooManyRequests, h)
	require.NoError(t, err)

	got, err := b.Overview(ctx, vendors, clock.Now())
	require.NoError(t, err)
	var accounts []string
	for _, r := range got {
		accounts = append(accounts, r.Account)
	}
	want := []string{"halaxy-au/limited", "halaxy-au/busy", "halaxy-au/light"}
	for i := range budget.MaxPerClientRows - 3 {
		want = append(want, fmt.Sprintf("halaxy-au/n%02d", i))
	}
	want = append(want, "halaxy-nz", "healthsync")
	require.Equal(t, want, accounts, "paused, then by use, capped; unused accounts and other vendors' absent")

	require.Equal(t, until, got[0].PausedUntil)
	require.Equal(t, budget.Row{Account: "halaxy-au/busy", Limit: 500, Per: time.Minute, Used: 30, Remaining: 470}, got[1])
	last := got[budget.MaxPerClientRows-1]
	require.Equal(t, 55-budget.MaxPerClientRows, last.More, "55 accounts in use, 50 shown")
	require.False(t, last.MoreAtLeast)
	for _, r := range got[:budget.MaxPerClientRows-1] {
		require.Zero(t, r.More)
	}
	require.Equal(t, budget.Row{Account: "halaxy-nz", Limit: 500, Per: time.Minute, Idle: true}, got[budget.MaxPerClientRows])
	hs := got[budget.MaxPerClientRows+1]
	require.Equal(t, "healthsync", hs.Account, "one budget for the vendor instance")
	require.Equal(t, 100, hs.Limit)
}

func TestCredentialOfReadsWhatAccountWrites(t *testing.T) {
	t.Parallel()
	id, ok := budget.CredentialOf(budget.Account("halaxy-au", "clinic-42"), "halaxy-au")
	require.True(t, ok)
	require.Equal(t, "clinic-42", id)
	for _, account := range []string{budget.Account("halaxy-au", ""), "halaxy-au/", "halaxy-aux/c", "other/clinic-42"} {
		_, ok := budget.CredentialOf(account, "halaxy-au")
		require.False(t, ok, account)
	}
}
