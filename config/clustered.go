package config

import (
	"strings"
)

// MaxStreamReplicas is the most replicas JetStream keeps of a stream.
const MaxStreamReplicas = 5

// validateClustered checks what clustered engines need: a Redis Cluster
// needs a key prefix with a hash tag, so that the keys the scripts touch
// together share one slot; the stream's replica count must be one
// JetStream accepts.
func (c *Config) validateClustered(p *problems) {
	if len(c.Redis.Cluster.Addrs) > 0 && !hasHashTag(c.Redis.Prefix) {
		p.add("redis.prefix", "%s has no hash tag, which a Redis Cluster needs (the store's scripts touch several keys at once, all in one slot): use e.g. \"{tokenrelay}:\"",
			p.show("redis.prefix", c.Redis.Prefix))
	}
	if r := c.NATS.StreamReplicas; r < 0 || r > MaxStreamReplicas {
		p.add("nats.stream_replicas", "must be between 1 and %d (3 in a 3-node NATS cluster; 0 for the default 1)", MaxStreamReplicas)
	}
}

// hasHashTag reports whether Redis Cluster hashes key by a part of it:
// a "{" followed later by "}" with at least one byte between them.
func hasHashTag(key string) bool {
	_, after, ok := strings.Cut(key, "{")
	if !ok {
		return false
	}
	end := strings.IndexByte(after, '}')
	return end > 0
}
