package config_test

import (
	"encoding/base64"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/config"
)

func TestRateLimitWindow(t *testing.T) {
	t.Parallel()
	const base = `vendors:
  generic:
    kind: oauth2
    base_url: https://api.example.com/
    token_url: https://auth.example.com/oauth/token
    rate_limit: {limit: 100, per: 1h, window: `
	key := base64.StdEncoding.EncodeToString(make([]byte, 32))
	lookup := func(name string) (string, bool) { return key, name == "TOKENRELAY_SECRET_KEY" }
	c, err := config.Parse([]byte(base+"fixed}\n"), lookup)
	require.NoError(t, err)
	require.Equal(t, "fixed", c.Vendors["generic"].RateLimit.Window)

	_, err = config.Parse([]byte(base+"hourly}\n"), lookup)
	require.ErrorContains(t, err, `vendors.generic.rate_limit.window: "hourly" must be sliding or fixed`)
}

func TestRateLimitSlack(t *testing.T) {
	t.Parallel()
	const base = `vendors:
  halaxy-au:
    kind: halaxy
    user_agent: "Acme Sync (ops@acme.example)"
    rate_limit: {limit: 500, per: 1m, slack: `
	key := base64.StdEncoding.EncodeToString(make([]byte, 32))
	lookup := func(name string) (string, bool) { return key, name == "TOKENRELAY_SECRET_KEY" }
	c, err := config.Parse([]byte(base+"80ms}\n"), lookup)
	require.NoError(t, err)
	require.Equal(t, config.Duration(80*time.Millisecond), c.Vendors["halaxy-au"].RateLimit.Slack)

	_, err = config.Parse([]byte(base+"10s}\n"), lookup)
	require.ErrorContains(t, err, "vendors.halaxy-au.rate_limit.slack: must be at least 0 and under a tenth of rate_limit.per")
}
