package config_test

import (
	"encoding/base64"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/config"
)

// TestConnectionSettings checks the Redis topology, TLS and NATS
// authentication settings: each bad one is refused naming its field.
func TestConnectionSettings(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"TOKENRELAY_SECRET_KEY": base64.StdEncoding.EncodeToString(make([]byte, 32)),
		"SENTINEL_PASSWORD":     "sentinel-pw-3f9a",
	}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	for _, tc := range []struct {
		name, yaml string
		problem    string // "" when valid
	}{
		{name: "sentinel", yaml: `redis: {url: "rediss://:pw@ignored/2", sentinel: {master: mymaster, addrs: ["s-0:26379", "s-1:26379"], password: "${SENTINEL_PASSWORD}"}, tls: {ca_file: /etc/tls/ca.pem}}`},
		{name: "cluster", yaml: `redis: {url: "redis://:pw@ignored", prefix: "{tokenrelay}:", cluster: {addrs: ["r-0:6379", "r-1:6379"]}}`},
		{name: "nats creds and tls", yaml: `nats: {url: "tls://nats:4222", creds_file: /etc/nats/user.creds, tls: {ca_file: ca.pem, cert_file: c.pem, key_file: k.pem}}`},
		{name: "nats nkey", yaml: `nats: {nkey_seed_file: /etc/nats/seed}`},
		{name: "scheduler metrics", yaml: `scheduler: {metrics_addr: "0.0.0.0:9090"}`},
		{name: "sentinel without addrs", yaml: `redis: {sentinel: {master: mymaster}}`, problem: "redis.sentinel.addrs: required with redis.sentinel.master"},
		{name: "sentinel without master", yaml: `redis: {sentinel: {addrs: ["s-0:26379"]}}`, problem: "redis.sentinel.master: required"},
		{name: "bad sentinel addr", yaml: `redis: {sentinel: {master: m, addrs: ["s-0"]}}`, problem: "redis.sentinel.addrs[0]"},
		{name: "sentinel and cluster", yaml: `redis: {sentinel: {master: m, addrs: ["s:1"]}, cluster: {addrs: ["r:1"]}}`, problem: "redis.cluster: cannot be used with redis.sentinel"},
		{name: "cluster with a DB", yaml: `redis: {url: "redis://r/3", cluster: {addrs: ["r:1"]}}`, problem: "redis.url: a Redis Cluster has only database 0"},
		{name: "cluster without a hash tag", yaml: `redis: {prefix: "tokenrelay:", cluster: {addrs: ["r-0:6379"]}}`, problem: `redis.prefix: "tokenrelay:" has no hash tag, which a Redis Cluster needs`},
		{name: "cluster with an empty hash tag", yaml: `redis: {prefix: "{}tokenrelay:", cluster: {addrs: ["r-0:6379"]}}`, problem: "redis.prefix"},
		{name: "hash tag in the middle", yaml: `redis: {prefix: "acme:{tokenrelay}:", cluster: {addrs: ["r-0:6379"]}}`},
		{name: "replica acks", yaml: `redis: {sentinel: {master: m, addrs: ["s:1"]}, min_replica_acks: 1, replica_ack_timeout: 500ms}`},
		{name: "replica acks, default timeout", yaml: `redis: {min_replica_acks: 1}`},
		{name: "negative replica acks", yaml: `redis: {min_replica_acks: -1}`, problem: "redis.min_replica_acks: must not be negative"},
		{name: "negative replica ack timeout", yaml: `redis: {replica_ack_timeout: -1s}`, problem: `redis.replica_ack_timeout: "-1s" is negative`},
		{name: "replica ack timeout past the client's read", yaml: `redis: {min_replica_acks: 1, replica_ack_timeout: 3s}`, problem: "redis.replica_ack_timeout: 3s is longer than 2s"},
		{name: "replica ack timeout eats the claim", yaml: "redis: {min_replica_acks: 1, replica_ack_timeout: 1s}\nscheduler: {claim_lease: 4s}", problem: "redis.replica_ack_timeout: 1s is more than a fifth of scheduler.claim_lease (4s)"},
		{name: "default replica ack timeout eats the claim", yaml: "redis: {min_replica_acks: 1}\nscheduler: {claim_lease: 4s}", problem: "redis.replica_ack_timeout: 1s is more than a fifth"},
		{name: "stream replicas", yaml: `nats: {url: "nats://n-0:4222,nats://n-1:4222,nats://n-2:4222", stream_replicas: 3}`},
		{name: "too many stream replicas", yaml: `nats: {stream_replicas: 7}`, problem: "nats.stream_replicas: must be between 1 and 5"},
		{name: "sentinel URL", yaml: `redis: {url: "rediss+sentinel://:pw@s-0:26379,s-1:26379/mymaster/2"}`},
		{name: "cluster URL", yaml: `redis: {url: "redis+cluster://r-0:6379,r-1:6379", prefix: "{tokenrelay}:"}`},
		{name: "sentinel URL without master", yaml: `redis: {url: "redis+sentinel://:sentinel-pw-3f9a@s-0:26379"}`, problem: "redis.url: a Sentinel URL names the master after the sentinels"},
		{name: "cluster URL with a DB", yaml: `redis: {url: "redis+cluster://:sentinel-pw-3f9a@r-0:6379/3", prefix: "{t}:"}`, problem: "redis.url: a Redis Cluster has only database 0"},
		{name: "topology URL with a bad node", yaml: `redis: {url: "redis+cluster://r-0:6379,r-1", prefix: "{t}:"}`, problem: "redis.url: lists a server that is not host:port"},
		{name: "topology URL and fields", yaml: `redis: {url: "redis+cluster://r-0:6379", prefix: "{t}:", cluster: {addrs: ["r-0:6379"]}}`, problem: "redis.url: names the servers, and so does redis.sentinel or redis.cluster"},
		{name: "unknown topology", yaml: `redis: {url: "redis+shards://r-0:6379"}`, problem: `redis.url: scheme "redis+shards" is not one tokenrelay knows`},
		{name: "cluster URL without a hash tag", yaml: `redis: {url: "redis+cluster://r-0:6379"}`, problem: "redis.prefix"},
		{name: "tls without rediss", yaml: `redis: {url: "redis://r:6379/0", tls: {ca_file: ca.pem}}`, problem: "redis.tls: is set but redis.url is not rediss://"},
		{name: "cert without key", yaml: `nats: {tls: {cert_file: c.pem}}`, problem: "nats.tls: cert_file and key_file go together"},
		{name: "creds and nkey", yaml: `nats: {creds_file: a, nkey_seed_file: b}`, problem: "nats.nkey_seed_file: cannot be used with nats.creds_file"},
		{name: "bad metrics addr", yaml: `scheduler: {metrics_addr: "9090"}`, problem: "scheduler.metrics_addr"},
		{name: "prometheus url", yaml: `http: {prometheus_url: "http://prometheus:9090"}`},
		{name: "bad prometheus url", yaml: `http: {prometheus_url: "prometheus:9090"}`, problem: "http.prometheus_url"},
		{name: "per-vendor credential metrics", yaml: `http: {credential_metrics: per_vendor}`},
		{name: "unknown credential metrics", yaml: `http: {credential_metrics: none}`, problem: `http.credential_metrics: "none" is not a choice: use per_credential (the default) or per_vendor`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := config.Parse([]byte(tc.yaml), lookup)
			if tc.problem == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.problem)
			require.NotContains(t, err.Error(), "sentinel-pw-3f9a")
			require.Nil(t, cfg)
		})
	}
}
