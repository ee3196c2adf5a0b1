// Command webhooks is the benchmark of issue 5: verified, deduplicated
// webhooks per second into JetStream for one worker process, with the
// latency from request to 2xx, against a bare net/http handler that only
// publishes to JetStream (no verification, no dedup) under the same load, as
// the reference ratio.
//
// The receiver runs in a child process of its own (this binary with
// -role=server), as in a worker; the load generator here keeps its
// connections alive and signs each delivery (Standard Webhooks) with a fresh
// webhook-id. Real Redis (a leased database of its own) and the real NATS
// (a stream of its own, deleted afterwards).
//
//	go run ./bench/webhooks -duration 10s -conns 64
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"slices"
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
	"github.com/tokenrelay/tokenrelay/bench/internal/benchtrace"
	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/tracing"
	"github.com/tokenrelay/tokenrelay/internal/webhooks"
	"github.com/tokenrelay/tokenrelay/internal/webhooks/verify"
	"github.com/tokenrelay/tokenrelay/secret"
)

var (
	role      = flag.String("role", "load", "load (the benchmark) or server (the receiver process it starts)")
	duration  = flag.Duration("duration", 10*time.Second, "measured time of each phase")
	warmup    = flag.Duration("warmup", 2*time.Second, "unmeasured time before each phase")
	conns     = flag.Int("conns", 64, "concurrent keep-alive connections")
	bodySize  = flag.Int("body", 1024, "approximate body size in bytes")
	dupEvery  = flag.Int("dup-every", 20, "every Nth delivery is a redelivery of an earlier one (0: none)")
	rate      = flag.Int("rate", 0, "offered load in deliveries per second, spread over the connections (0: as fast as they go); latency then counts from each request's scheduled time")
	redisAddr = flag.String("redis", "127.0.0.1:6379", "Redis address")
	natsURL   = flag.String("nats", "nats://127.0.0.1:4222", "NATS URL")
	// Set by the parent for the server process.
	redisDB  = flag.Int("redis-db", 0, "server: Redis database")
	subject  = flag.String("subject-prefix", "", "server: subject prefix")
	traceArg = flag.String("trace", "off", "tracing of the server process: off, or on at this sampling percentage (1, 100), exporting over OTLP to a Jaeger the benchmark starts")
	profile  = flag.String("cpuprofile", "", "write the server process's CPU profile here")
)

// benchSecret signs every delivery.
var benchSecret = "whsec_" + base64.StdEncoding.EncodeToString([]byte("bench-webhook-signing-key-32-bytes"))

func main() {
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var err error
	if *role == "server" {
		err = serve(ctx)
	} else {
		err = run(ctx)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/webhooks:", err)
		os.Exit(1)
	}
}

// serve is the worker process: the receiver and the bare handler, each on
// its own port, printed as "full=ADDR bare=ADDR".
func serve(ctx context.Context) error {
	if *profile != "" {
		f, err := os.Create(*profile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer func() { pprof.StopCPUProfile(); _ = f.Close() }()
	}
	flushTraces, err := tracing.Setup(ctx, "tokenrelay-webhooks-bench", os.Getenv)
	if err != nil {
		return err
	}
	defer func() { _ = flushTraces(context.Background()) }()
	rdb := redis.NewClient(&redis.Options{Addr: *redisAddr, DB: *redisDB, PoolSize: 4 * runtime.GOMAXPROCS(0) * 10})
	defer rdb.Close()
	nc, err := nats.Connect(*natsURL)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	cfg := &config.Config{Vendors: map[string]config.Vendor{"bench": {Kind: config.KindHealthSync,
		Webhooks: config.Webhooks{Verify: config.VerifyStandardWebhooks, Secret: secret.New(benchSecret)}}}}
	cfg.SetDefaults()
	vendors, _, err := webhooks.VendorsFromConfig(cfg.Vendors)
	if err != nil {
		return err
	}
	stages := newStageTimes()
	defer stages.print(os.Stderr)
	rdb.AddHook(redisTimer{stages})
	rcv, err := webhooks.NewReceiver(webhooks.Deps{Vendors: vendors, JetStream: timedPublisher{js, stages}, Connected: nc.IsConnected,
		Redis: rdb, KeyPrefix: "bench:", SubjectPrefix: *subject, Logger: zerolog.Nop(), Metrics: webhooks.NewMetrics()})
	if err != nil {
		return err
	}
	defer rcv.Close()
	full := http.NewServeMux()
	full.Handle("POST /webhooks/{vendor}", rcv)
	bare := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err != nil {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		msg := nats.NewMsg(*subject + "webhook.bare.event")
		msg.Data = body
		msg.Header.Set(jetstream.MsgIDHeader, r.Header.Get("webhook-id"))
		pctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		if _, err := js.PublishMsg(pctx, msg); err != nil {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok\n")
	})
	lnFull, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	lnBare, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go func() { _ = http.Serve(lnFull, full) }()
	go func() { _ = http.Serve(lnBare, bare) }()
	fmt.Printf("full=%s bare=%s\n", lnFull.Addr(), lnBare.Addr())
	<-ctx.Done()
	return nil
}

// phaseResult is one phase's numbers.
type phaseResult struct {
	name                  string
	ok, dup, failed       int64
	okAll                 int64 // new deliveries answered 2xx, warm-up included
	elapsed               time.Duration
	p50, p90, p99, pMax   time.Duration
	stored                uint64
	cpuUser, cpuSys       time.Duration
	loadBefore, loadAfter string
}

func run(ctx context.Context) error {
	traceMode, err := benchtrace.Parse(*traceArg)
	if err != nil {
		return err
	}
	collector, err := benchtrace.Start(ctx, traceMode)
	if err != nil {
		return err
	}
	defer collector.Stop()
	lease, err := benchdb.Lease(ctx, *redisAddr, "bench-webhooks", -1)
	if err != nil {
		return err
	}
	defer lease.Release()
	rdb := redis.NewClient(&redis.Options{Addr: *redisAddr, DB: lease.Number()})
	defer rdb.Close()
	_ = rdb.FlushDB(ctx).Err()
	defer rdb.FlushDB(context.Background())

	nc, err := nats.Connect(*natsURL)
	if err != nil {
		return fmt.Errorf("nats: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	tag := randHex(4)
	stream, prefix := "BENCH_WEBHOOKS_"+strings.ToUpper(tag), "bench"+tag+"."
	if _, err := events.EnsureStream(ctx, js, events.StreamConfig{Name: stream, SubjectPrefix: prefix}); err != nil {
		return err
	}
	defer js.DeleteStream(context.Background(), stream)

	self, err := os.Executable()
	if err != nil {
		return err
	}
	srvCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := exec.CommandContext(srvCtx, self, "-role=server", "-redis", *redisAddr, "-redis-db", strconv.Itoa(lease.Number()),
		"-nats", *natsURL, "-subject-prefix", prefix, "-cpuprofile", *profile)
	cmd.Stderr = os.Stderr
	if collector != nil {
		cmd.Env = append(os.Environ(), collector.Env...)
	}
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { cancel(); _ = cmd.Wait() }()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		return fmt.Errorf("server did not start: %w", err)
	}
	var fullAddr, bareAddr string
	if _, err := fmt.Sscanf(strings.TrimSpace(line), "full=%s bare=%s", &fullAddr, &bareAddr); err != nil {
		return fmt.Errorf("server said %q: %w", line, err)
	}
	pid := cmd.Process.Pid

	key, _ := verify.DecodeStandardSecret(benchSecret)
	fmt.Printf("machine: %d CPU (%s), GOMAXPROCS %d, %s; load average %s\n", runtime.NumCPU(), cpuModel(), runtime.GOMAXPROCS(0), runtime.Version(), loadAvg())
	offered := "as fast as they go"
	if *rate > 0 {
		offered = fmt.Sprintf("offered %d/s (latency from each request's scheduled time)", *rate)
	}
	fmt.Printf("load: %d keep-alive connections, %s, ~%d-byte bodies, every %dth a redelivery; %s warm-up + %s per phase; tracing %s\n\n",
		*conns, offered, *bodySize, *dupEvery, *warmup, *duration, traceMode)

	s, err := js.Stream(ctx, stream)
	if err != nil {
		return err
	}
	count := func(subj string) uint64 {
		info, err := s.Info(ctx, jetstream.WithSubjectFilter(subj))
		if err != nil {
			return 0
		}
		return info.State.Msgs
	}
	var results []phaseResult
	for _, ph := range []struct {
		name, url, subject string
		signed             bool
	}{
		{"tokenrelay receiver (verify + dedup + JetStream)", "http://" + fullAddr + "/webhooks/bench", prefix + "webhook.bench.>", true},
		{"bare net/http → JetStream (reference)", "http://" + bareAddr + "/", prefix + "webhook.bare.>", false},
	} {
		r := load(ctx, ph.url, key, pid)
		r.name = ph.name
		r.stored = count(ph.subject)
		results = append(results, r)
	}
	report(results)
	if collector != nil {
		cancel()
		_ = cmd.Wait()
		services, err := collector.Services()
		fmt.Printf("tracing %s: jaeger received spans from %v (%v)\n", traceMode, services, err)
	}
	return nil
}

// load runs warm-up and a measured phase against url.
func load(ctx context.Context, url string, key []byte, pid int) phaseResult {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *conns, MaxConnsPerHost: *conns, IdleConnTimeout: time.Minute}}
	pad := strings.Repeat("x", max(*bodySize-120, 0))
	var seq atomic.Int64
	var measuring atomic.Bool
	var ok, dup, failed, okAll atomic.Int64
	lat := make([][]time.Duration, *conns)
	var wg sync.WaitGroup
	stopAt := time.Now().Add(*warmup + *duration)
	// No new request after stopAt; those in flight finish, so that every
	// delivery the receiver stored was answered (the exactly-once check).
	phaseCtx, cancel := context.WithDeadline(ctx, stopAt)
	defer cancel()
	for c := range *conns {
		wg.Go(func() {
			var recent []string
			var interval time.Duration
			next := time.Now()
			if *rate > 0 {
				interval = time.Duration(float64(time.Second) * float64(*conns) / float64(*rate))
				next = next.Add(time.Duration(c) * interval / time.Duration(*conns)) // spread the connections' phases
			}
			for phaseCtx.Err() == nil {
				scheduled := time.Now()
				if interval > 0 {
					if d := time.Until(next); d > 0 {
						time.Sleep(d)
					}
					scheduled, next = next, next.Add(interval)
					if time.Now().After(stopAt) {
						break
					}
				}
				n := seq.Add(1)
				id := fmt.Sprintf("msg_%d", n)
				body := fmt.Appendf(nil, `{"type":"patient.updated","timestamp":"%s","data":{"id":"p-%d","note":"%s"}}`,
					time.Now().UTC().Format(time.RFC3339), n, pad)
				if *dupEvery > 0 && n%int64(*dupEvery) == 0 && len(recent) > 0 {
					id = recent[0] // a redelivery: same id, same body would be needed for the bare handler's Msg-Id dedup too
				}
				if len(recent) < 8 {
					recent = append(recent, id)
				}
				ts := time.Now().Unix()
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("webhook-id", id)
				req.Header.Set("webhook-timestamp", strconv.FormatInt(ts, 10))
				req.Header.Set("webhook-signature", verify.SignStandard(key, id, ts, body))
				resp, err := client.Do(req)
				took := time.Since(scheduled)
				if err != nil {
					failed.Add(1)
					continue
				}
				answer, _ := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				if resp.StatusCode/100 == 2 && !bytes.Contains(answer, []byte("already")) {
					okAll.Add(1)
				}
				if !measuring.Load() {
					continue
				}
				switch {
				case resp.StatusCode/100 == 2 && bytes.Contains(answer, []byte("already")):
					dup.Add(1)
				case resp.StatusCode/100 == 2:
					ok.Add(1)
				default:
					failed.Add(1)
				}
				lat[c] = append(lat[c], took)
			}
		})
	}
	time.Sleep(*warmup)
	before := loadAvg()
	u0, s0 := procCPU(pid)
	measuring.Store(true)
	t0 := time.Now()
	wg.Wait()
	elapsed := time.Since(t0)
	u1, s1 := procCPU(pid)
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	slices.Sort(all)
	q := func(p float64) time.Duration {
		if len(all) == 0 {
			return 0
		}
		return all[min(len(all)-1, int(p*float64(len(all))))]
	}
	return phaseResult{ok: ok.Load(), dup: dup.Load(), failed: failed.Load(), okAll: okAll.Load(), elapsed: elapsed,
		p50: q(0.50), p90: q(0.90), p99: q(0.99), pMax: q(1), cpuUser: u1 - u0, cpuSys: s1 - s0,
		loadBefore: before, loadAfter: loadAvg()}
}

func report(rs []phaseResult) {
	fmt.Printf("| handler | 2xx/s | new | redeliveries | failed | p50 | p90 | p99 | max | server CPU | in stream | load avg (start → end) |\n")
	fmt.Printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for _, r := range rs {
		rate := float64(r.ok+r.dup) / r.elapsed.Seconds()
		fmt.Printf("| %s | %.0f | %d | %d | %d | %s | %s | %s | %s | %.0f%% | %d | %s → %s |\n", r.name, rate, r.ok, r.dup, r.failed,
			ms(r.p50), ms(r.p90), ms(r.p99), ms(r.pMax), 100*(r.cpuUser+r.cpuSys).Seconds()/r.elapsed.Seconds(), r.stored, r.loadBefore, r.loadAfter)
	}
	if len(rs) > 0 {
		fmt.Printf("\nexactly once: the receiver answered %d new deliveries 2xx (warm-up included); its subject holds %d events\n", rs[0].okAll, rs[0].stored)
	}
	if len(rs) == 2 && rs[1].ok+rs[1].dup > 0 {
		a := float64(rs[0].ok+rs[0].dup) / rs[0].elapsed.Seconds()
		b := float64(rs[1].ok+rs[1].dup) / rs[1].elapsed.Seconds()
		fmt.Printf("ratio receiver / bare: %.2f (throughput), p99 %s vs %s\n", a/b, ms(rs[0].p99), ms(rs[1].p99))
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "?"
	}
	for l := range strings.SplitSeq(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

// procCPU is a process's user and system CPU time so far.
func procCPU(pid int) (user, sys time.Duration) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, 0
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, 0
	}
	const hz = 100 // USER_HZ
	return time.Duration(u) * time.Second / hz, time.Duration(st) * time.Second / hz
}
