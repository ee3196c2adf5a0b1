package config

import (
	"fmt"
	"net/url"
	"strings"
)

// validateConnections checks the Redis topology (standalone, Sentinel or
// Cluster), the TLS settings of Redis and NATS, NATS authentication files
// and the scheduler's metrics address. Files are only checked to be named
// consistently here; they are read when the connections are made.
func (c *Config) validateConnections(p *problems) {
	c.validateRedisTopology(p)
	c.validateClustered(p)
	c.validateRedisTLS(p)
	c.validateNATSAuth(p)
	if u := c.HTTP.PrometheusURL; u != "" {
		checkURL(p, "http.prometheus_url", u, []string{"http", "https"}, "e.g. http://prometheus:9090")
	}
	if a := c.Scheduler.MetricsAddr; a != "" && !validAddr(a) {
		p.add("scheduler.metrics_addr", "%s must be host:port (e.g. 0.0.0.0:9090), or empty for none", p.show("scheduler.metrics_addr", a))
	}
}

// validateRedisTopology checks redis.sentinel and redis.cluster: one of
// them at most, each complete, their addresses host:port.
func (c *Config) validateRedisTopology(p *problems) {
	r := c.Redis
	sentinel := r.Sentinel.Master != "" || len(r.Sentinel.Addrs) > 0
	cluster := len(r.Cluster.Addrs) > 0
	if sentinel && cluster {
		p.add("redis.cluster", "cannot be used with redis.sentinel: pick the one your Redis runs")
	}
	if sentinel {
		switch {
		case r.Sentinel.Master == "":
			p.add("redis.sentinel.master", "required with redis.sentinel.addrs (the master's name in the sentinels' configuration, e.g. mymaster)")
		case len(r.Sentinel.Addrs) == 0:
			p.add("redis.sentinel.addrs", "required with redis.sentinel.master (the sentinels' host:port, e.g. [sentinel-0:26379, sentinel-1:26379])")
		}
		checkAddrs(p, "redis.sentinel.addrs", r.Sentinel.Addrs, "sentinel-0:26379")
	}
	if cluster {
		checkAddrs(p, "redis.cluster.addrs", r.Cluster.Addrs, "redis-0:6379")
		if u, err := url.Parse(r.URL); err == nil && strings.Trim(u.Path, "/") != "" && strings.Trim(u.Path, "/") != "0" {
			p.add("redis.url", "a Redis Cluster has only database 0: remove the /DB from the URL")
		}
	}
}

// validateRedisTLS checks that redis.tls goes with a rediss:// URL and
// names its client certificate whole.
func (c *Config) validateRedisTLS(p *problems) {
	if !c.Redis.TLS.IsZero() {
		if u, err := url.Parse(c.Redis.URL); err == nil && u.Scheme != "rediss" {
			p.add("redis.tls", "is set but redis.url is not rediss://: use rediss:// to turn TLS on")
		}
	}
	checkTLS(p, "redis.tls", c.Redis.TLS)
}

// validateNATSAuth checks nats.tls and that NATS is given one way to
// authenticate.
func (c *Config) validateNATSAuth(p *problems) {
	checkTLS(p, "nats.tls", c.NATS.TLS)
	if c.NATS.CredsFile != "" && c.NATS.NKeySeedFile != "" {
		p.add("nats.nkey_seed_file", "cannot be used with nats.creds_file (a creds file holds its own seed): keep one")
	}
}

func checkAddrs(p *problems, path string, addrs []string, example string) {
	for i, a := range addrs {
		if !validAddr(a) {
			ip := fmt.Sprintf("%s[%d]", path, i)
			p.add(ip, "%s must be host:port (e.g. %s)", p.show(ip, a), example)
		}
	}
}

func checkTLS(p *problems, path string, t TLS) {
	if (t.CertFile == "") != (t.KeyFile == "") {
		p.add(path, "cert_file and key_file go together: give both for a client certificate, or neither")
	}
}
