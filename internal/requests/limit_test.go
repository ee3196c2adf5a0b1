package requests_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/internal/budget"
	"github.com/tokenrelay/tokenrelay/internal/requests"
)

func TestAccountFollowsTheVendor(t *testing.T) {
	t.Parallel()
	halaxy := config.Vendor{Kind: config.KindHalaxy, RateLimit: config.RateLimit{Limit: 500, Per: config.Duration(time.Minute)}}
	hs := config.Vendor{Kind: config.KindHealthSync, RateLimit: config.RateLimit{Limit: 1000, Per: config.Duration(time.Hour)}}
	account := requests.AccountFor(map[string]config.Vendor{"h": halaxy, "s": hs})
	require.Equal(t, budget.Account("h", "clinic-1"), account("h", "clinic-1"), "Halaxy limits each OAuth client")
	require.Equal(t, budget.Account("s", ""), account("s", "clinic-1"), "HealthSync limits the whole plan")
}
