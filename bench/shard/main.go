// Command shard measures what one Redis shard carries for tokenrelay (make
// bench-shard; results in BENCHMARKS.md, "Issue 12: what one Redis shard
// carries"). It starts a Redis Cluster of three masters of its own
// (redis-server processes on free ports, joined by redis-cli --cluster
// create) and gives the store the hash-tagged prefix "{tokenrelay}:" a
// cluster needs: every key of the store, the outbox and the request
// queues hashes to the prefix's slot, so one master, the home shard,
// holds them all. It then measures, on the home shard:
//
//  1. credentials: -creds credentials written through the store, each
//     with a committed token, and the shard's used_memory growth per
//     credential (and what the other shards got: nothing);
//  2. renewals: for -duration, a scheduler loop claiming due credentials
//     (store.ClaimDue) and -workers goroutines renewing them as workers do
//     (store.Claim, then store.CommitRenewal with the token.renewed event
//     in the outbox, the next refresh due at once), while the event relay
//     drains the outbox to JetStream (a stream of its own on -nats): the
//     renewals per second achieved and the shard's CPU per renewal, from
//     which the renewals per second one core of redis-server sustains;
//  3. queued requests: -requests request jobs submitted (requests.Submitter)
//     and left queued (no feeder), a GET and, apart, a POST with a 1 KiB
//     body: the shard's memory per queued request.
//
// The asynq queues are not in the prefix's slot (asynq tags them
// {critical}, {default}, {low}); the program says which shard each lands
// on.
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/tokenrelay/tokenrelay/bench/internal/benchdb"
	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/requests"
	"github.com/tokenrelay/tokenrelay/internal/seal"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/jobs"
	"github.com/tokenrelay/tokenrelay/secret"
)

const (
	prefix = "{tokenrelay}:"
	vendor = "halaxy-au"
	owner  = "bench-shard"
)

type options struct {
	natsURL           string
	creds, workers    int
	requests          int
	duration, warmup  time.Duration
	masters, fillConc int
}

func main() {
	var o options
	flag.StringVar(&o.natsURL, "nats", "nats://127.0.0.1:4222", "NATS server with JetStream (the relay's stream is created and deleted)")
	flag.IntVar(&o.creds, "creds", 20000, "credentials stored")
	flag.IntVar(&o.workers, "workers", 16, "goroutines renewing")
	flag.IntVar(&o.requests, "requests", 10000, "request jobs queued of each kind")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "measured renewal phase")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Second, "renewals before the measured phase")
	flag.IntVar(&o.masters, "masters", 3, "masters of the Redis Cluster")
	flag.IntVar(&o.fillConc, "fill-concurrency", 16, "goroutines writing credentials")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "shard:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	ctx := context.Background()
	addrs, stop, err := startCluster(o.masters)
	if err != nil {
		return err
	}
	defer stop()
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, PoolSize: 4 * o.workers})
	defer rdb.Close()
	home, err := rdb.MasterForKey(ctx, prefix)
	if err != nil {
		return err
	}
	nodes := map[string]*redis.Client{}
	for _, a := range addrs {
		c := redis.NewClient(&redis.Options{Addr: a})
		defer c.Close()
		nodes[a] = c
	}
	homeAddr := home.Options().Addr
	fmt.Printf("Redis Cluster of %d masters (redis-server %s), prefix %q: slot %d, home shard %s\n",
		o.masters, serverVersion(ctx, nodes[homeAddr]), prefix, slotOf(ctx, nodes[homeAddr], prefix), homeAddr)
	for _, q := range []string{jobs.QueueCritical, jobs.QueueDefault, jobs.QueueLow} {
		m, err := rdb.MasterForKey(ctx, "asynq:{"+q+"}:pending")
		if err != nil {
			return err
		}
		fmt.Printf("asynq queue %s: slot %d, shard %s\n", q, slotOf(ctx, nodes[homeAddr], "asynq:{"+q+"}:pending"), m.Options().Addr)
	}

	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	ring, err := seal.NewKeyring(raw)
	if err != nil {
		return err
	}
	st, err := store.New(rdb, store.Options{Prefix: prefix, Keyring: ring})
	if err != nil {
		return err
	}

	// 1. Credentials.
	before := usedMemory(ctx, nodes)
	start := time.Now()
	if err := fill(ctx, st, o.creds, o.fillConc); err != nil {
		return err
	}
	// The first renewals' events: the relay would have published and
	// deleted them; they are not what a credential costs.
	if err := rdb.XTrimMaxLen(ctx, events.OutboxKey(prefix), 0).Err(); err != nil {
		return err
	}
	after := usedMemory(ctx, nodes)
	fmt.Printf("\n## Credentials\n\n%d credentials with a token each, written in %s (%.0f/s)\n\n", o.creds,
		time.Since(start).Round(time.Millisecond), float64(o.creds)/time.Since(start).Seconds())
	fmt.Println("| shard | used_memory growth | per credential |")
	fmt.Println("|---|---|---|")
	for _, a := range addrs {
		d := after[a] - before[a]
		fmt.Printf("| %s%s | %d B | %.0f B |\n", a, mark(a == homeAddr), d, float64(d)/float64(o.creds))
	}
	keys, total, err := benchdb.KeyMemory(ctx, nodes[homeAddr], prefix)
	if err != nil {
		return err
	}
	fmt.Printf("\nMEMORY USAGE of the prefix's keys on the home shard: %d B (%.0f B per credential): %v\n", total, float64(total)/float64(o.creds), keys)

	// 2. Renewals.
	if err := renewals(ctx, o, rdb, st, nodes[homeAddr], ring); err != nil {
		return err
	}

	// 3. Queued requests.
	return queued(ctx, o, rdb, st, ring, nodes, homeAddr)
}

func mark(home bool) string {
	if home {
		return " (home)"
	}
	return ""
}

func id(i int) string { return "cred-" + strconv.Itoa(i) }

// fill writes n credentials, each claimed and committed once, as after
// their first renewal: a sealed client secret and a sealed token.
func fill(ctx context.Context, st *store.Store, n, conc int) error {
	var next atomic.Int64
	errs := make(chan error, conc)
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				if err := renew(ctx, st, id(i), 0, true, time.Hour); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// renew claims credential cid at generation gen and commits a new token,
// with its event, due again after next; create adds the credential first.
func renew(ctx context.Context, st *store.Store, cid string, gen int64, create bool, next time.Duration) error {
	if create {
		if _, err := st.Upsert(ctx, store.NewCredential{ID: cid, Vendor: vendor, ClientID: "client-" + cid,
			Keys: store.Keys{ClientSecret: secret.New("secret-" + cid + "-0123456789abcdef0123456789abcdef")}}); err != nil {
			return err
		}
	}
	if _, err := st.Claim(ctx, cid, gen, owner, time.Minute); err != nil {
		return err
	}
	now := time.Now()
	ev, err := events.New(events.TypeTokenRenewed, vendor, cid, now, events.TokenRenewed{
		Vendor: vendor, Credential: cid, Generation: gen + 1, IssuedAt: now, ExpiresAt: now.Add(15 * time.Minute)})
	if err != nil {
		return err
	}
	// A token the size of Halaxy's (a 64-character opaque string).
	tok := "tok-" + cid + "-" + strings.Repeat("x", 64-len(cid)-5)
	return st.CommitRenewal(ctx, cid, owner, gen, store.Renewal{
		Token:       store.Token{AccessToken: secret.New(tok), TokenType: "Bearer", IssuedAt: now, ExpiresAt: now.Add(15 * time.Minute)},
		NextRefresh: now.Add(next),
	}, ev)
}

// renewals runs the renewal loop for the warm-up and the measured phase
// and prints the home shard's figures over the measured one.
func renewals(ctx context.Context, o options, rdb redis.UniversalClient, st *store.Store, home *redis.Client, ring *seal.Keyring) error {
	nc, err := nats.Connect(o.natsURL)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	stream := strings.ToUpper(fmt.Sprintf("BENCH_SHARD_%d", time.Now().UnixNano()))
	subjects := strings.ToLower(stream) + "."
	if _, err := events.EnsureStream(ctx, js, events.StreamConfig{Name: stream, SubjectPrefix: subjects}); err != nil {
		return err
	}
	defer func() { _ = js.DeleteStream(context.Background(), stream) }()
	relay, err := events.NewRelay(events.RelayOptions{Redis: rdb, Prefix: prefix, JetStream: js, SubjectPrefix: subjects,
		Logger: zerolog.Nop(), Keyring: ring})
	if err != nil {
		return err
	}
	runCtx, stopAll := context.WithCancel(ctx)
	defer stopAll()
	var wg sync.WaitGroup
	wg.Go(func() { _ = relay.Run(runCtx) })

	// Every credential becomes due now: the renewal loop keeps them due.
	if err := rdb.Eval(ctx, `for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do redis.call('ZADD', KEYS[1], 0, m) end return 0`,
		[]string{prefix + "due"}).Err(); err != nil {
		return err
	}
	due := make(chan store.Due, 4*o.workers)
	var renewed, failed atomic.Int64
	wg.Go(func() {
		defer close(due)
		for runCtx.Err() == nil {
			got, err := st.ClaimDue(runCtx, time.Now(), 200, 30*time.Second)
			if err != nil {
				continue
			}
			if len(got) == 0 {
				time.Sleep(5 * time.Millisecond) // nothing due: poll as the scheduler does
			}
			for _, d := range got {
				select {
				case due <- d:
				case <-runCtx.Done():
					return
				}
			}
		}
	})
	for range o.workers {
		wg.Go(func() {
			for d := range due {
				if err := renew(runCtx, st, d.ID, d.Generation, false, 0); err != nil {
					if runCtx.Err() == nil {
						failed.Add(1)
					}
					continue
				}
				renewed.Add(1)
			}
		})
	}
	time.Sleep(o.warmup)
	cpu0, stats0, n0, t0 := cpuOf(ctx, home), commandStats(ctx, home), renewed.Load(), time.Now()
	time.Sleep(o.duration)
	cpu1, stats1, n1, t1 := cpuOf(ctx, home), commandStats(ctx, home), renewed.Load(), time.Now()
	stopAll()
	wg.Wait()
	if failed.Load() > 0 {
		return fmt.Errorf("%d renewals failed", failed.Load())
	}
	n := float64(n1 - n0)
	secs := t1.Sub(t0).Seconds()
	cpuPer := (cpu1 - cpu0) / n * 1e6
	fmt.Printf("\n## Renewals\n\n%d workers, %s measured after %s of warm-up: %.0f renewals (%.0f/s); the home shard's redis-server used %.2f cores, %.1f µs of CPU per renewal: one core sustains about %.0f renewals/s of the store\n\n",
		o.workers, o.duration, o.warmup, n, n/secs, (cpu1-cpu0)/secs, cpuPer, 1e6/cpuPer)
	fmt.Println("| command | calls per renewal | µs per call | µs per renewal |")
	fmt.Println("|---|---|---|---|")
	for _, c := range benchdb.DiffCommandStats(stats0, stats1) {
		if c.Calls == 0 {
			continue
		}
		fmt.Printf("| %s | %.2f | %.1f | %.1f |\n", c.Name, float64(c.Calls)/n, float64(c.Usec)/float64(c.Calls), float64(c.Usec)/n)
	}
	return nil
}

// queued submits o.requests GET and o.requests POST request jobs, left
// queued, and prints the memory each kind takes on every shard.
func queued(ctx context.Context, o options, rdb redis.UniversalClient, st *store.Store, ring *seal.Keyring, nodes map[string]*redis.Client, homeAddr string) error {
	sub, err := requests.NewSubmitter(requests.SubmitterOptions{Redis: rdb, Prefix: prefix, Credentials: st, Keyring: ring,
		Vendors: map[string]config.Vendor{vendor: {Name: vendor, Kind: config.KindHalaxy}}})
	if err != nil {
		return err
	}
	body := []byte(`{"resourceType":"Appointment","note":"` + strings.Repeat("n", 1024-40) + `"}`)
	kinds := []struct {
		name string
		make func(i int) jobs.Request
	}{
		{"GET Patient?_count=50", func(i int) jobs.Request {
			r := jobs.NewRequest(id(i%o.creds), "GET", "Patient")
			r.Vendor, r.Query, r.Batch = vendor, map[string][]string{"_count": {"50"}}, "sync-1"
			return r
		}},
		{"POST Appointment, 1 KiB JSON body", func(i int) jobs.Request {
			r := jobs.NewRequest(id(i%o.creds), "POST", "Appointment")
			r.Vendor, r.Body, r.Batch = vendor, body, "sync-2"
			r.Headers = map[string]string{"Content-Type": "application/fhir+json"}
			return r
		}},
	}
	fmt.Printf("\n## Queued requests\n\n%d of each kind, submitted and left queued (no feeder)\n\n", o.requests)
	fmt.Println("| request | home shard growth | per request | other shards |")
	fmt.Println("|---|---|---|---|")
	for _, k := range kinds {
		before := usedMemory(ctx, nodes)
		for i := range o.requests {
			if _, err := sub.Submit(ctx, k.make(i)); err != nil {
				return fmt.Errorf("submit: %w", err)
			}
		}
		after := usedMemory(ctx, nodes)
		var others int64
		for a := range nodes {
			if a != homeAddr {
				others += after[a] - before[a]
			}
		}
		d := after[homeAddr] - before[homeAddr]
		fmt.Printf("| %s | %d B | %.0f B | %d B |\n", k.name, d, float64(d)/float64(o.requests), others)
	}
	return nil
}

func usedMemory(ctx context.Context, nodes map[string]*redis.Client) map[string]int64 {
	out := map[string]int64{}
	for a, c := range nodes {
		m, err := benchdb.UsedMemory(ctx, c)
		if err != nil {
			panic(err)
		}
		out[a] = m
	}
	return out
}

// cpuOf is the server's CPU time so far (user + system), in seconds.
func cpuOf(ctx context.Context, c *redis.Client) float64 {
	info, err := benchdb.Info(ctx, c, "cpu")
	if err != nil {
		panic(err)
	}
	u, _ := strconv.ParseFloat(info["used_cpu_user"], 64)
	s, _ := strconv.ParseFloat(info["used_cpu_sys"], 64)
	return u + s
}

func commandStats(ctx context.Context, c *redis.Client) map[string]benchdb.CmdStat {
	s, err := benchdb.CommandStats(ctx, c)
	if err != nil {
		panic(err)
	}
	return s
}

func slotOf(ctx context.Context, c *redis.Client, key string) int64 {
	return c.ClusterKeySlot(ctx, key).Val()
}

func serverVersion(ctx context.Context, c *redis.Client) string {
	info, _ := benchdb.Info(ctx, c, "server")
	return info["redis_version"]
}

// startCluster starts masters redis-server processes in cluster mode on
// free ports, without persistence, and joins them; stop kills them.
func startCluster(masters int) ([]string, func(), error) {
	dir, err := os.MkdirTemp("", "bench-shard-")
	if err != nil {
		return nil, nil, err
	}
	var cmds []*exec.Cmd
	stop := func() {
		for _, c := range cmds {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
		_ = os.RemoveAll(dir)
	}
	var addrs []string
	for i := range masters {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			stop()
			return nil, nil, err
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		d := filepath.Join(dir, strconv.Itoa(i))
		if err := os.Mkdir(d, 0o700); err != nil {
			stop()
			return nil, nil, err
		}
		cmd := exec.Command("redis-server", "--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--dir", d,
			"--save", "", "--appendonly", "no", "--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(d, "nodes.conf"),
			"--logfile", filepath.Join(d, "redis.log"))
		if err := cmd.Start(); err != nil {
			stop()
			return nil, nil, fmt.Errorf("start redis-server: %w", err)
		}
		cmds = append(cmds, cmd)
		addrs = append(addrs, "127.0.0.1:"+strconv.Itoa(port))
	}
	for _, a := range addrs {
		if err := await(func(ctx context.Context) bool {
			c := redis.NewClient(&redis.Options{Addr: a})
			defer c.Close()
			return c.Ping(ctx).Err() == nil
		}); err != nil {
			stop()
			return nil, nil, fmt.Errorf("redis-server %s: %w", a, err)
		}
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	if out, err := exec.Command("redis-cli", append(args, "--cluster-replicas", "0", "--cluster-yes")...).CombinedOutput(); err != nil {
		stop()
		return nil, nil, fmt.Errorf("redis-cli --cluster create: %w\n%s", err, out)
	}
	for _, a := range addrs {
		if err := await(func(ctx context.Context) bool {
			c := redis.NewClient(&redis.Options{Addr: a})
			defer c.Close()
			info, err := c.ClusterInfo(ctx).Result()
			return err == nil && strings.Contains(info, "cluster_state:ok")
		}); err != nil {
			stop()
			return nil, nil, fmt.Errorf("cluster state at %s: %w", a, err)
		}
	}
	return addrs, stop, nil
}

// await polls cond until it holds, for up to 30 s.
func await(cond func(ctx context.Context) bool) error {
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		ok := cond(ctx)
		cancel()
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("not within 30s")
		}
	}
}
