// Command tokenget measures token.get latency (make bench-tokenget; results
// in BENCHMARKS.md, "Issue 12: token.get through a Redis stall"). It starts
// a redis-server of its own on a free port (so that pausing it stalls no one
// else), fills it with -creds credentials through the store, and runs the
// token service on the NATS server at -nats under a fresh subject prefix.
// -requesters goroutines then ask for random credentials' tokens in a
// closed loop, first in normal running for -duration, then during -stalls
// Redis stalls of -stall each (CLIENT PAUSE ALL), each measured while the
// pause holds. It does so for the token service as configured by default
// (cache, concurrent answers) and, for comparison, as it was before issue
// 12 (no cache, one request at a time), and prints a Markdown table.
package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"

	"github.com/tokenrelay/tokenrelay/client"
	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/seal"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/internal/tokenservice"
	"github.com/tokenrelay/tokenrelay/secret"
)

const vendor = "halaxy-au"

type options struct {
	natsURL              string
	creds, requesters    int
	duration, stall, gap time.Duration
	stalls               int
}

func main() {
	var o options
	flag.StringVar(&o.natsURL, "nats", "nats://127.0.0.1:4222", "NATS server")
	flag.IntVar(&o.creds, "creds", 1000, "credentials in the store")
	flag.IntVar(&o.requesters, "requesters", 64, "concurrent requesters (closed loop)")
	flag.DurationVar(&o.duration, "duration", 5*time.Second, "length of the normal-running phase")
	flag.DurationVar(&o.stall, "stall", 2*time.Second, "length of one Redis stall (CLIENT PAUSE ALL)")
	flag.IntVar(&o.stalls, "stalls", 3, "Redis stalls measured")
	flag.DurationVar(&o.gap, "gap", time.Second, "normal running between two stalls (not measured)")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "tokenget:", err)
		os.Exit(1)
	}
}

// mode is one configuration of the token service.
type mode struct {
	name string
	opts tokenservice.Options
}

func run(o options) error {
	ctx := context.Background()
	addr, stop, err := startRedis()
	if err != nil {
		return err
	}
	defer stop()
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	pauser := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 1})
	defer pauser.Close()

	st, err := fill(ctx, rdb, o.creds)
	if err != nil {
		return err
	}
	svcConn, err := nats.Connect(o.natsURL, nats.Name("bench-tokenget-service"))
	if err != nil {
		return fmt.Errorf("connect to NATS: %w", err)
	}
	defer svcConn.Close()
	reqConn, err := nats.Connect(o.natsURL, nats.Name("bench-tokenget-requesters"))
	if err != nil {
		return fmt.Errorf("connect to NATS: %w", err)
	}
	defer reqConn.Close()

	fmt.Printf("%d credentials, %d requesters, normal %s, %d stalls of %s; GOMAXPROCS %d, %s\n\n",
		o.creds, o.requesters, o.duration, o.stalls, o.stall, runtime.GOMAXPROCS(0), time.Now().UTC().Format(time.RFC3339))
	fmt.Println("| token service | phase | answered | per second | p50 | p99 | max | errors |")
	fmt.Println("|---|---|---:|---:|---:|---:|---:|---:|")
	for _, m := range []mode{
		{"issue 12: cache, 64 at a time", tokenservice.Options{}},
		{"before: no cache, one at a time", tokenservice.Options{CacheSize: -1, Concurrency: 1}},
	} {
		prefix := fmt.Sprintf("bench%d.", time.Now().UnixNano())
		m.opts.SubjectPrefix, m.opts.Reader = prefix, st
		svc, err := tokenservice.New(svcConn, m.opts)
		if err != nil {
			return err
		}
		if err := svcConn.Flush(); err != nil {
			return err
		}
		ask := func(id string) (time.Duration, error) {
			began := time.Now()
			msg, err := reqConn.Request(client.TokenSubject(prefix, vendor, id), nil, 10*time.Second)
			if err != nil {
				return 0, err
			}
			var reply client.TokenReply
			if err := json.Unmarshal(msg.Data, &reply); err != nil {
				return 0, err
			}
			if reply.Error != "" {
				return 0, errors.New(reply.Error)
			}
			return time.Since(began), nil
		}
		for i := range o.creds { // every credential asked once: the cache is warm
			if _, err := ask(id(i)); err != nil {
				return fmt.Errorf("warm-up: %w", err)
			}
		}
		normal := load(o, ask, o.duration, nil)
		normal.print(m.name, "normal running")

		var stalled result
		for range o.stalls {
			if err := pauser.Do(ctx, "CLIENT", "PAUSE", strconv.FormatInt(o.stall.Milliseconds(), 10), "ALL").Err(); err != nil {
				return fmt.Errorf("pause Redis: %w", err)
			}
			// Measured while the pause holds: requests sent in its window.
			r := load(o, ask, o.stall-50*time.Millisecond, &stalled)
			stalled = r
			time.Sleep(o.gap + 50*time.Millisecond)
		}
		stalled.print(m.name, fmt.Sprintf("Redis stalled (%d × %s)", o.stalls, o.stall))
		if err := svc.Stop(); err != nil {
			return err
		}
	}
	return nil
}

// result holds the latencies of answered requests and the errors.
type result struct {
	lat    []time.Duration
	errs   map[string]int
	window time.Duration
}

// load runs the requesters for d, each sending requests back to back; a
// request sent within d is counted even when it is answered later. acc,
// when set, is added to.
func load(o options, ask func(string) (time.Duration, error), d time.Duration, acc *result) result {
	var r result
	if acc != nil {
		r = *acc
	}
	if r.errs == nil {
		r.errs = map[string]int{}
	}
	r.window += d
	var mu sync.Mutex
	var wg sync.WaitGroup
	end := time.Now().Add(d)
	for range o.requesters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) {
				lat, err := ask(id(mrand.IntN(o.creds)))
				mu.Lock()
				if err != nil {
					r.errs[err.Error()]++
				} else {
					r.lat = append(r.lat, lat)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return r
}

func (r result) print(name, phase string) {
	sort.Slice(r.lat, func(i, j int) bool { return r.lat[i] < r.lat[j] })
	q := func(p float64) string {
		if len(r.lat) == 0 {
			return "–"
		}
		return ms(r.lat[min(len(r.lat)-1, int(p*float64(len(r.lat))))])
	}
	errs := 0
	for _, n := range r.errs {
		errs += n
	}
	errText := strconv.Itoa(errs)
	if errs > 0 {
		errText += fmt.Sprintf(" %v", r.errs)
	}
	fmt.Printf("| %s | %s | %d | %.0f | %s | %s | %s | %s |\n", name, phase, len(r.lat),
		float64(len(r.lat))/r.window.Seconds(), q(0.50), q(0.99), q(1), errText)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }

func id(i int) string { return "cred-" + strconv.Itoa(i) }

// fill creates n credentials with a token each, through the store.
func fill(ctx context.Context, rdb *redis.Client, n int) (*store.Store, error) {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, err
	}
	kr, err := seal.NewKeyring(raw)
	if err != nil {
		return nil, err
	}
	st, err := store.New(rdb, store.Options{Keyring: kr})
	if err != nil {
		return nil, err
	}
	now := time.Now()
	for i := range n {
		cid := id(i)
		if _, err := st.Upsert(ctx, store.NewCredential{ID: cid, Vendor: vendor, ClientID: "client-" + cid,
			Keys: store.Keys{ClientSecret: secret.New("secret-" + cid)}}); err != nil {
			return nil, err
		}
		if _, err := st.Claim(ctx, cid, 0, "bench", time.Minute); err != nil {
			return nil, err
		}
		ev, err := events.New(events.TypeTokenRenewed, vendor, cid, now, events.TokenRenewed{
			Vendor: vendor, Credential: cid, Generation: 1, IssuedAt: now, ExpiresAt: now.Add(time.Hour)})
		if err != nil {
			return nil, err
		}
		if err := st.CommitRenewal(ctx, cid, "bench", 0, store.Renewal{
			Token: store.Token{AccessToken: secret.New("tok-" + cid), TokenType: "Bearer",
				IssuedAt: now, ExpiresAt: now.Add(time.Hour)},
			NextRefresh: now.Add(time.Hour),
		}, ev); err != nil {
			return nil, err
		}
	}
	return st, nil
}

// startRedis starts redis-server on a free port, without persistence.
func startRedis() (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dir, err := os.MkdirTemp("", "bench-tokenget-")
	if err != nil {
		return "", nil, err
	}
	cmd := exec.Command("redis-server", "--bind", "127.0.0.1", "--port", strconv.Itoa(port),
		"--dir", dir, "--save", "", "--appendonly", "no", "--logfile", filepath.Join(dir, "redis.log"))
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("start redis-server: %w", err)
	}
	stop := func() { _ = cmd.Process.Kill(); _ = cmd.Wait(); _ = os.RemoveAll(dir) }
	addr := "127.0.0.1:" + strconv.Itoa(port)
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if rdb.Ping(context.Background()).Err() == nil {
			return addr, stop, nil
		}
		if time.Now().After(deadline) {
			stop()
			return "", nil, errors.New("redis-server did not answer within 10s")
		}
	}
}
