package config_test

import (
	"encoding/base64"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/config"
)

// TestRedisTopologyURLs checks that REDIS_URL alone can point at a
// Sentinel or a Cluster: the URL becomes the redis:// URL of the servers'
// credentials and DB, and the sentinel or cluster fields.
func TestRedisTopologyURLs(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, url, prefix string
		want              config.Redis
	}{
		{
			name: "sentinel", url: "rediss+sentinel://app:pw-9c1e@s-0:26379,s-1:26379,s-2:26379/mymaster/2",
			want: config.Redis{URL: "rediss://app:pw-9c1e@s-0:26379/2", Prefix: config.DefaultRedisPrefix,
				Sentinel: config.RedisSentinel{Master: "mymaster", Addrs: []string{"s-0:26379", "s-1:26379", "s-2:26379"}}},
		},
		{
			name: "sentinel, DB 0", url: "redis+sentinel://s-0:26379/mymaster",
			want: config.Redis{URL: "redis://s-0:26379/0", Prefix: config.DefaultRedisPrefix,
				Sentinel: config.RedisSentinel{Master: "mymaster", Addrs: []string{"s-0:26379"}}},
		},
		{
			name: "cluster", url: "redis+cluster://:pw-9c1e@r-0:6379,r-1:6379/", prefix: "{tokenrelay}:",
			want: config.Redis{URL: "redis://:pw-9c1e@r-0:6379/0", Prefix: "{tokenrelay}:",
				Cluster: config.RedisCluster{Addrs: []string{"r-0:6379", "r-1:6379"}}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := map[string]string{
				"TOKENRELAY_SECRET_KEY": base64.StdEncoding.EncodeToString(make([]byte, 32)),
				config.EnvRedisURL:      tc.url,
			}
			yaml := ""
			if tc.prefix != "" {
				yaml = `redis: {prefix: "` + tc.prefix + `"}`
			}
			cfg, err := config.Parse([]byte(yaml), func(k string) (string, bool) { v, ok := env[k]; return v, ok })
			require.NoError(t, err)
			require.Equal(t, tc.want, cfg.Redis)
		})
	}
}

// TestRedisTopologyURLProblemsHideThePassword checks that a refused
// topology URL from REDIS_URL is named by the variable and never quoted.
func TestRedisTopologyURLProblemsHideThePassword(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"TOKENRELAY_SECRET_KEY": base64.StdEncoding.EncodeToString(make([]byte, 32)),
		config.EnvRedisURL:      "redis+sentinel://:pw-77aa@s-0:26379,s-1",
	}
	_, err := config.Parse(nil, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	require.ErrorContains(t, err, "REDIS_URL")
	require.ErrorContains(t, err, "lists a server that is not host:port")
	require.NotContains(t, err.Error(), "pw-77aa")
}
