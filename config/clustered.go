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

// The topology URL schemes: REDIS_URL alone can point at a Sentinel or a
// Cluster, as the environment of a container often must.
//
//	redis+sentinel://[user:password@]sentinel-0:26379,sentinel-1:26379/mymaster[/db]
//	redis+cluster://[user:password@]redis-0:6379,redis-1:6379
//
// (rediss+sentinel://, rediss+cluster:// for TLS). The user and password
// are the Redis servers', as in a redis:// URL; the sentinels' own, if they
// need one, stay in redis.sentinel.
const (
	topologySentinel = "sentinel"
	topologyCluster  = "cluster"
)

// expandRedisURL turns a topology URL into the redis:// URL (scheme,
// credentials, DB) and the redis.sentinel or redis.cluster fields it
// stands for, so that everything after loading sees one form. Its
// problems never quote the URL: it may hold a password.
func (r *Redis) expandRedisURL(p *problems) {
	scheme, rest, ok := strings.Cut(r.URL, "://")
	base, topology, plus := strings.Cut(scheme, "+")
	if !ok || !plus {
		return
	}
	const forms = "redis+sentinel://[user:password@]host:port,host:port/master[/db] or redis+cluster://[user:password@]host:port,host:port"
	refuse := func(format string, args ...any) {
		p.add("redis.url", format+" (%s)", append(args, forms)...)
		r.URL = base + "://refused" // reported once, here, not again as a bad scheme
	}
	if (base != "redis" && base != "rediss") || (topology != topologySentinel && topology != topologyCluster) {
		refuse("scheme %q is not one tokenrelay knows", scheme)
		return
	}
	authority, path, _ := strings.Cut(rest, "/")
	if strings.ContainsAny(path, "?#") || strings.ContainsAny(authority, "?#") {
		refuse("a %s URL takes no query or fragment", topology)
		return
	}
	var userinfo string
	if i := strings.LastIndexByte(authority, '@'); i >= 0 {
		userinfo, authority = authority[:i+1], authority[i+1:]
	}
	addrs := strings.Split(authority, ",")
	for _, a := range addrs {
		if !validAddr(a) {
			refuse("lists a server that is not host:port")
			return
		}
	}
	if r.Sentinel.Master != "" || len(r.Sentinel.Addrs) > 0 || len(r.Cluster.Addrs) > 0 {
		refuse("names the servers, and so does redis.sentinel or redis.cluster: keep one")
		return
	}
	segments := strings.FieldsFunc(path, func(c rune) bool { return c == '/' })
	db := "0"
	switch topology {
	case topologySentinel:
		if len(segments) == 0 || len(segments) > 2 {
			refuse("a Sentinel URL names the master after the sentinels, then optionally the DB")
			return
		}
		if len(segments) == 2 {
			db = segments[1]
		}
		r.Sentinel.Master, r.Sentinel.Addrs = segments[0], addrs
	case topologyCluster:
		if len(segments) > 1 || (len(segments) == 1 && segments[0] != "0") {
			refuse("a Redis Cluster has only database 0: nothing goes after the nodes")
			return
		}
		r.Cluster.Addrs = addrs
	}
	r.URL = base + "://" + userinfo + addrs[0] + "/" + db
}
