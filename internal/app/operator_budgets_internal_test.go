package app

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/internal/budget"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
	"github.com/tokenrelay/tokenrelay/internal/testenv/storetest"
	"github.com/tokenrelay/tokenrelay/internal/web/operator"
	"github.com/tokenrelay/tokenrelay/secret"
)

// The budgets page shows the budget's overview (budget.Overview): for a
// per-client vendor (Halaxy), the accounts that spent permits within the
// window, capped with a count of the rest; credentials never used are not
// listed, and the store is not read at all (its Redis is closed before the
// page is).
func TestOperatorBudgetsListTheAccountsInUseWithoutTheStore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := testenv.NewClock(storetest.T0)
	st, storeRedis := storetest.New(t, clock.Now)
	for i := range 3 {
		_, err := st.Upsert(ctx, store.NewCredential{ID: fmt.Sprintf("idle-%d", i), Vendor: "halaxy-au", ClientID: "cid",
			Keys: store.Keys{ClientSecret: secret.New("s3cret")}})
		require.NoError(t, err)
	}
	perMinute := config.RateLimit{Limit: 500, Per: config.Duration(time.Minute)}
	cfg := &config.Config{
		Vendors: map[string]config.Vendor{
			"halaxy-au":  {Kind: config.KindHalaxy, UserAgent: "t (t@t.invalid)", RateLimit: perMinute},
			"halaxy-nz":  {Kind: config.KindHalaxy, UserAgent: "t (t@t.invalid)", RateLimit: perMinute},
			"healthsync": {Kind: config.KindHealthSync, RateLimit: config.RateLimit{Limit: 100, Per: config.Duration(time.Hour)}},
		},
		SecretKey: secret.New("0123456789abcdef0123456789abcdef"),
	}
	cfg.SetDefaults()
	rdb, prefix := testenv.RedisPrefix(t)
	b := budget.New(rdb, budget.Options{Prefix: prefix, Clock: clock.Now, Jitter: -1})
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	env := &Env{Config: cfg, Store: st, Clock: clock.Now, BudgetClock: clock.Now}

	au := budget.LimitOf(cfg.Vendors["halaxy-au"])
	spend := func(account string, n int) {
		t.Helper()
		for range n {
			ok, _, err := b.Take(ctx, account, au, budget.Priority)
			require.NoError(t, err)
			require.True(t, ok)
		}
	}
	// Used two windows ago: no longer in use.
	spend("halaxy-au/earlier", 3)
	clock.Set(storetest.T0.Add(2 * time.Minute))
	for i := range 52 {
		spend(fmt.Sprintf("halaxy-au/n%02d", i), 1)
	}
	spend("halaxy-au/busy", 30)
	spend("halaxy-au/light", 2)
	h := http.Header{}
	h.Set("Retry-After", "20")
	until, err := b.Observe(ctx, "halaxy-au/limited", au, http.StatusTooManyRequests, h)
	require.NoError(t, err)
	require.NoError(t, storeRedis.Close())

	got, err := operatorBudgets{env: env, budget: b}.Budgets(ctx)
	require.NoError(t, err)
	require.Len(t, got, budget.MaxPerClientRows+2, "the budget's overview (tested in internal/budget), nothing from the store")
	require.Equal(t, "halaxy-au/limited", got[0].Account)
	require.Equal(t, until, got[0].PausedUntil)

	// The page says so.
	srv := httptest.NewServer(operator.Handler(operator.Deps{Token: secret.New("op-token-0123456789abcdefghijklmnopqrstuvwxyzAB"), Credentials: st,
		Budgets: operatorBudgets{env: env, budget: b}, Logger: zerolog.Nop(), Clock: clock.Now}))
	t.Cleanup(srv.Close)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/ui/budgets?refresh=0", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer op-token-0123456789abcdefghijklmnopqrstuvwxyzAB")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusOK, resp.StatusCode)
	page := string(body)
	require.Contains(t, page, "and 5 more accounts of this vendor used in the last 1m, not shown")
	require.Regexp(t, `(?s)id="budget-halaxy-au/limited">.*after a 429`, page)
	require.Regexp(t, `(?s)id="budget-halaxy-nz">\s*<td>halaxy-nz</td>\s*<td colspan="6" class="muted">no account used in the last 1m`, page)
	require.NotContains(t, page, "idle-")
	require.NotContains(t, page, "halaxy-au/earlier")
}
