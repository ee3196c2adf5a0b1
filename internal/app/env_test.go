package app_test

import (
	"context"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/internal/app"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
	"github.com/tokenrelay/tokenrelay/secret"
)

// TestEnvCloseFlushesNATS: what a process has sent is at the server when
// Env.Close returns, so that the server may go right after (as the
// embedded one of make run does) or the process exit: Close waits for the
// connection to drain.
func TestEnvCloseFlushesNATS(t *testing.T) {
	t.Parallel()
	ns, url := testenv.StartNATS(t, 0, "")
	cfg := &config.Config{Redis: config.Redis{URL: testenv.RedisURL(t)}, NATS: config.NATS{URL: url},
		SecretKey: secret.New("0123456789abcdef0123456789abcdef")}
	cfg.SetDefaults()
	env, err := app.Connect(context.Background(), cfg, zerolog.Nop())
	require.NoError(t, err)
	before, err := ns.Varz(nil)
	require.NoError(t, err)

	const n = 20000
	payload := []byte(strings.Repeat("x", 200))
	for range n {
		require.NoError(t, env.NATS.Publish("close.test", payload))
	}
	env.Close()
	after, err := ns.Varz(nil)
	require.NoError(t, err)
	require.GreaterOrEqual(t, after.InMsgs-before.InMsgs, int64(n), "every message published before Close is at the server")
}
