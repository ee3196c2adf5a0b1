package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/redis/go-redis/v9"
)

// The clustered engines a real deployment runs (see deployments/README.md),
// started by a test as processes of its own on free ports, so that it can
// kill a master or a stream leader without touching the shared servers.

// clusterWait bounds how long a cluster may take to form or fail over.
const clusterWait = 30 * time.Second

// RedisCluster is a Redis Cluster of masters without replicas.
type RedisCluster struct {
	Nodes []*RedisServer
}

// StartRedisCluster starts masters redis-server processes in cluster mode,
// joins them with redis-cli --cluster create (the slots spread evenly), and
// waits until every node reports the cluster ok.
func StartRedisCluster(t testing.TB, masters int) *RedisCluster {
	t.Helper()
	if _, err := exec.LookPath("redis-cli"); err != nil {
		t.Skip("redis-cli is not installed")
	}
	c := &RedisCluster{}
	for range masters {
		c.Nodes = append(c.Nodes, startRedisServer(t, func(port int, dir string) []string {
			return []string{"--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--dir", dir, "--save", "",
				"--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(dir, "nodes.conf"),
				"--cluster-node-timeout", "2000", "--logfile", filepath.Join(dir, "redis.log")}
		}))
	}
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	out, err := exec.Command("redis-cli", append(args, "--cluster-replicas", "0", "--cluster-yes")...).CombinedOutput()
	if err != nil {
		t.Fatalf("testenv: redis-cli --cluster create: %v\n%s", err, out)
	}
	for _, n := range c.Nodes {
		waitFor(t, n.String()+" reports cluster_state:ok", func(ctx context.Context) bool {
			rdb := redis.NewClient(&redis.Options{Addr: n.Addr()})
			defer rdb.Close()
			info, err := rdb.ClusterInfo(ctx).Result()
			return err == nil && strings.Contains(info, "cluster_state:ok")
		})
	}
	return c
}

// Addrs are the nodes' host:port.
func (c *RedisCluster) Addrs() []string {
	var out []string
	for _, n := range c.Nodes {
		out = append(out, n.Addr())
	}
	return out
}

// MasterOf returns the node serving key's slot.
func (c *RedisCluster) MasterOf(t testing.TB, key string) *RedisServer {
	t.Helper()
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	defer rdb.Close()
	m, err := rdb.MasterForKey(context.Background(), key)
	if err != nil {
		t.Fatalf("testenv: master for %q: %v", key, err)
	}
	for _, n := range c.Nodes {
		if n.Addr() == m.Options().Addr {
			return n
		}
	}
	t.Fatalf("testenv: %q is served by %s, not a node of the cluster", key, m.Options().Addr)
	return nil
}

// RedisSentinel is a Redis master with one replica, watched by three
// sentinels that fail over to the replica within seconds of the master
// going down.
type RedisSentinel struct {
	// MasterName is the name the sentinels know the master by.
	MasterName string
	Master     *RedisServer
	Replica    *RedisServer
	Sentinels  []*RedisServer
}

// StartRedisSentinel starts the master, the replica and three sentinels
// (quorum 2, the master declared down after 1 s), and waits until the
// replica is in sync and every sentinel knows it and the other sentinels.
func StartRedisSentinel(t testing.TB) *RedisSentinel {
	t.Helper()
	data := func(extra ...string) func(port int, dir string) []string {
		return func(port int, dir string) []string {
			return append([]string{"--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--dir", dir,
				"--appendonly", "yes", "--appendfsync", "always", "--save", "",
				"--repl-diskless-sync-delay", "0", // a replica syncs at once, not 5 s later
				"--logfile", filepath.Join(dir, "redis.log")}, extra...)
		}
	}
	s := &RedisSentinel{MasterName: "tokenrelay-test"}
	s.Master = startRedisServer(t, data())
	s.Replica = startRedisServer(t, data("--replicaof", "127.0.0.1", strconv.Itoa(s.Master.Port)))
	for range 3 {
		s.Sentinels = append(s.Sentinels, startRedisServer(t, func(port int, dir string) []string {
			conf := filepath.Join(dir, "sentinel.conf")
			body := fmt.Sprintf("bind 127.0.0.1\nport %d\ndir %s\nlogfile %s\n"+
				"sentinel monitor %s 127.0.0.1 %d 2\n"+
				"sentinel down-after-milliseconds %[4]s 1000\n"+
				"sentinel failover-timeout %[4]s 10000\n"+
				"sentinel parallel-syncs %[4]s 1\n",
				port, dir, filepath.Join(dir, "redis.log"), s.MasterName, s.Master.Port)
			if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
				t.Fatalf("testenv: write sentinel.conf: %v", err)
			}
			return []string{conf, "--sentinel"}
		}))
	}
	waitFor(t, s.Replica.String()+" is in sync with the master", func(ctx context.Context) bool {
		c := redis.NewClient(&redis.Options{Addr: s.Replica.Addr()})
		defer c.Close()
		info, err := c.Info(ctx, "replication").Result()
		return err == nil && strings.Contains(info, "master_link_status:up")
	})
	for _, sn := range s.Sentinels {
		waitFor(t, sn.String()+" knows the replica and the other sentinels", func(ctx context.Context) bool {
			c := redis.NewSentinelClient(&redis.Options{Addr: sn.Addr()})
			defer c.Close()
			replicas, err := c.Replicas(ctx, s.MasterName).Result()
			if err != nil || len(replicas) == 0 {
				return false
			}
			others, err := c.Sentinels(ctx, s.MasterName).Result()
			return err == nil && len(others) == len(s.Sentinels)-1
		})
	}
	return s
}

// SentinelAddrs are the sentinels' host:port.
func (s *RedisSentinel) SentinelAddrs() []string {
	var out []string
	for _, n := range s.Sentinels {
		out = append(out, n.Addr())
	}
	return out
}

// KillMasterAndFailOver kills the master (SIGKILL, as a crash would) and
// waits until every sentinel names the replica as the master.
func (s *RedisSentinel) KillMasterAndFailOver(t testing.TB) {
	t.Helper()
	s.Master.Kill()
	want := s.Replica.Addr()
	for _, sn := range s.Sentinels {
		waitFor(t, sn.String()+" names the replica as master", func(ctx context.Context) bool {
			c := redis.NewSentinelClient(&redis.Options{Addr: sn.Addr()})
			defer c.Close()
			addr, err := c.GetMasterAddrByName(ctx, s.MasterName).Result()
			return err == nil && len(addr) == 2 && addr[0]+":"+addr[1] == want
		})
	}
	s.Master, s.Replica = s.Replica, nil
}

// NATSCluster is a cluster of embedded NATS servers with JetStream, in the
// test's process, so that a test can shut down any one of them.
type NATSCluster struct {
	Servers []*server.Server
	// URL lists every server's client URL, comma separated, as a client of
	// the cluster is given them.
	URL string
}

// StartNATSCluster starts size embedded servers with JetStream, routed to
// each other as cluster "tokenrelay-test", and waits until they have
// elected a JetStream meta leader. They are shut down when the test ends.
func StartNATSCluster(t testing.TB, size int) *NATSCluster {
	t.Helper()
	var routes []string
	clusterPorts := make([]int, size)
	for i := range size {
		clusterPorts[i] = FreePort(t)
		routes = append(routes, "nats-route://127.0.0.1:"+strconv.Itoa(clusterPorts[i]))
	}
	c := &NATSCluster{}
	var urls []string
	for i := range size {
		opts := &server.Options{
			ServerName: fmt.Sprintf("n%d", i), Host: "127.0.0.1", Port: server.RANDOM_PORT,
			JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
			Cluster: server.ClusterOpts{Name: "tokenrelay-test", Host: "127.0.0.1", Port: clusterPorts[i]},
			Routes:  server.RoutesFromStr(strings.Join(routes, ",")),
		}
		s, err := server.NewServer(opts)
		if err != nil {
			t.Fatalf("testenv: nats server %d: %v", i, err)
		}
		go s.Start()
		t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
		if !s.ReadyForConnections(10 * time.Second) {
			t.Fatalf("testenv: nats server %d not ready", i)
		}
		c.Servers = append(c.Servers, s)
		urls = append(urls, s.ClientURL())
	}
	c.URL = strings.Join(urls, ",")
	waitFor(t, "the NATS cluster elects a JetStream meta leader", func(context.Context) bool {
		for _, s := range c.Servers {
			if s.JetStreamIsLeader() && len(s.JetStreamClusterPeers()) == size {
				return true
			}
		}
		return false
	})
	return c
}

// StreamLeader returns the server leading stream (in the global account),
// or nil when none does at the moment.
func (c *NATSCluster) StreamLeader(stream string) *server.Server {
	for _, s := range c.Servers {
		if s.Running() && s.JetStreamIsStreamLeader(server.DEFAULT_GLOBAL_ACCOUNT, stream) {
			return s
		}
	}
	return nil
}

// waitFor polls cond, each call with a second to answer, until it holds;
// it fails the test after clusterWait.
func waitFor(t testing.TB, what string, cond func(ctx context.Context) bool) {
	t.Helper()
	deadline := time.Now().Add(clusterWait)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		ok := cond(ctx)
		cancel()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("testenv: %s: not within %s", what, clusterWait)
		}
		time.Sleep(50 * time.Millisecond) // polling processes that converge on their own
	}
}
