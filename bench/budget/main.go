// Command budget is benchmark (a) of the shared rate budget (make
// bench-budget; results in BENCHMARKS.md): permits acquired per second
// against the real Redis, side by side in one run with
// github.com/go-redis/redis_rate (GCRA) on the same Redis and the same
// concurrency, and how exactly each enforces a sliding window.
//
//   - speed: -concurrency goroutines spread over -procs budgets (as worker
//     processes, each with its own Redis client) take permits of one
//     account as fast as they can for -duration, with a limit far too high
//     to bind; the same with redis_rate's Allow. Rounds alternate, the
//     median is reported.
//   - exactness: the same goroutines against a limit that binds (-exact-limit
//     per -exact-per), waiting out each refusal as a rescheduled job would;
//     the most permits granted in any sliding window of -exact-per, from the
//     time each grant returned, against the limit.
//
// It takes a Redis database of its own (leased as the tests lease theirs,
// flushed before and after).
package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"

	"github.com/tokenrelay/tokenrelay/bench/internal/benchdb"
	"github.com/tokenrelay/tokenrelay/internal/budget"
	"github.com/tokenrelay/tokenrelay/internal/slidingwindow"
)

type options struct {
	redisAddr     string
	concurrency   int
	procs         int
	duration      time.Duration
	rounds        int
	exactLimit    int
	exactPer      time.Duration
	exactDuration time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.redisAddr, "redis", "127.0.0.1:6379", "Redis address")
	flag.IntVar(&o.concurrency, "concurrency", 16, "goroutines taking permits")
	flag.IntVar(&o.procs, "procs", 2, "budgets (worker processes) the goroutines are spread over")
	flag.DurationVar(&o.duration, "duration", 5*time.Second, "length of each speed run")
	flag.IntVar(&o.rounds, "rounds", 3, "speed runs of each limiter, alternating")
	flag.IntVar(&o.exactLimit, "exact-limit", 500, "limit of the exactness run")
	flag.DurationVar(&o.exactPer, "exact-per", 10*time.Second, "window of the exactness run")
	flag.DurationVar(&o.exactDuration, "exact-duration", 30*time.Second, "length of the exactness run (best a whole number of windows)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "bench-budget:", err)
		os.Exit(1)
	}
}

// taker is one way of taking a permit: ok, or when to try again.
type taker func(ctx context.Context) (ok bool, retryAt time.Time, err error)

// limiterSet builds -procs takers of one account for one limiter.
type limiterSet struct {
	name string
	make func(clients []*redis.Client, limit int, per time.Duration) ([]taker, func())
}

// budgetSet is the budget; maxBlock 1 turns leasing off (one Redis call
// per permit, to compare the scripts alone).
func budgetSet(name string, maxBlock int) limiterSet {
	return limiterSet{name: name, make: func(clients []*redis.Client, limit int, per time.Duration) ([]taker, func()) {
		lim := budget.Limit{Requests: limit, Per: per, Kind: budget.Sliding}
		var ts []taker
		var bs []*budget.Budget
		for _, c := range clients {
			b := budget.New(c, budget.Options{Prefix: "bench:", MaxBlock: maxBlock})
			bs = append(bs, b)
			ts = append(ts, func(ctx context.Context) (bool, time.Time, error) {
				return b.Take(ctx, "halaxy/bench", lim, budget.Bulk)
			})
		}
		return ts, func() {
			for _, b := range bs {
				_ = b.Close(context.Background())
			}
		}
	}}
}

func gcraSet() limiterSet {
	return limiterSet{name: "go-redis/redis_rate v10 (GCRA, burst = rate)", make: func(clients []*redis.Client, limit int, per time.Duration) ([]taker, func()) {
		lim := redis_rate.Limit{Rate: limit, Burst: limit, Period: per}
		var ts []taker
		for _, c := range clients {
			l := redis_rate.NewLimiter(c)
			ts = append(ts, func(ctx context.Context) (bool, time.Time, error) {
				res, err := l.Allow(ctx, "halaxy/bench", lim)
				if err != nil {
					return false, time.Time{}, err
				}
				if res.Allowed > 0 {
					return true, time.Time{}, nil
				}
				return false, time.Now().Add(res.RetryAfter), nil
			})
		}
		return ts, func() {}
	}}
}

// hammer runs concurrency goroutines over takers until d has passed,
// waiting out refusals, and returns the grant times.
func hammer(ctx context.Context, takers []taker, concurrency int, d time.Duration, record bool) ([]time.Time, int64, error) {
	stopAt := time.Now().Add(d)
	var granted atomic.Int64
	var mu sync.Mutex
	var times []time.Time
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for g := range concurrency {
		take := takers[g%len(takers)]
		wg.Go(func() {
			var local []time.Time
			for ctx.Err() == nil && time.Now().Before(stopAt) {
				ok, retryAt, err := take(ctx)
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				if ok {
					granted.Add(1)
					if record {
						local = append(local, time.Now())
					}
					continue
				}
				if w := time.Until(retryAt); w > 0 {
					time.Sleep(min(w, time.Until(stopAt)))
				}
			}
			mu.Lock()
			times = append(times, local...)
			mu.Unlock()
		})
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return nil, 0, err
	}
	return times, granted.Load(), nil
}

// commandCounter counts the Redis commands its clients send (the shared
// Redis serves other programs too, so the server's own counts would not
// do).
type commandCounter struct{ n atomic.Int64 }

func (c *commandCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *commandCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmd)
	}
}

func (c *commandCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.n.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

func loadavg() string {
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

func run(ctx context.Context, o options) error {
	lease, err := benchdb.Lease(ctx, o.redisAddr, "bench-budget", -1)
	if err != nil {
		return err
	}
	defer lease.Release()
	counter := &commandCounter{}
	clients := make([]*redis.Client, o.procs)
	for i := range clients {
		clients[i] = redis.NewClient(&redis.Options{Addr: o.redisAddr, DB: lease.Number(), PoolSize: 4 * o.concurrency})
		clients[i].AddHook(counter)
		defer clients[i].Close()
	}
	admin := redis.NewClient(&redis.Options{Addr: o.redisAddr, DB: lease.Number()})
	defer admin.Close()
	if err := admin.FlushDB(ctx).Err(); err != nil {
		return fmt.Errorf("flush db %d: %w", lease.Number(), err)
	}
	defer admin.FlushDB(context.Background())
	server, _ := benchdb.Info(ctx, admin, "server")
	redisVersion := cmp.Or(server["redis_version"], "?")
	fmt.Printf("bench-budget: %s, %d CPUs, Redis %s (db %d), concurrency %d over %d processes; load average at start %s\n\n",
		runtime.Version(), runtime.NumCPU(), redisVersion, lease.Number(), o.concurrency, o.procs, loadavg())

	sets := []limiterSet{
		budgetSet("tokenrelay budget (sliding log, leased blocks)", 0),
		gcraSet(),
		budgetSet("tokenrelay budget, no leasing (MaxBlock 1)", 1),
	}
	// Speed: a limit that never binds.
	const huge = 1_000_000_000
	rates := make([][]float64, len(sets))
	perCall := make([][]float64, len(sets))
	for round := range o.rounds {
		for i, set := range sets {
			if err := admin.FlushDB(ctx).Err(); err != nil {
				return err
			}
			takers, done := set.make(clients, huge, time.Minute)
			before := counter.n.Load()
			start := time.Now()
			_, n, err := hammer(ctx, takers, o.concurrency, o.duration, false)
			elapsed := time.Since(start)
			done()
			if err != nil {
				return fmt.Errorf("%s: %w", set.name, err)
			}
			calls := counter.n.Load() - before
			rates[i] = append(rates[i], float64(n)/elapsed.Seconds())
			perCall[i] = append(perCall[i], float64(n)/float64(max(calls, 1)))
			fmt.Printf("  round %d %-48s %10.0f permits/s  %6.1f permits per Redis command (load %s)\n", round+1, set.name, rates[i][round], perCall[i][round], loadavg())
		}
	}
	fmt.Printf("\n### Speed (limit %d per minute, never binding; median of %d runs of %s)\n\n", huge, o.rounds, o.duration)
	fmt.Println("| Limiter | Permits/s | Permits per Redis command |")
	fmt.Println("|---|---|---|")
	medians := make([]float64, len(sets))
	for i, set := range sets {
		medians[i] = median(rates[i])
		fmt.Printf("| %s | %.0f | %.1f |\n", set.name, medians[i], median(perCall[i]))
	}
	fmt.Printf("\nRatio budget / redis_rate: **%.2f×** (without leasing: %.2f×)\n", medians[0]/medians[1], medians[2]/medians[1])

	// Exactness: a limit that binds.
	fmt.Printf("\n### Exactness (%d per %s sliding, %s of hammering, refusals waited out)\n\n", o.exactLimit, o.exactPer, o.exactDuration)
	fmt.Println("| Limiter | Granted | Granted / (limit × windows) | Max in any sliding window | Limit |")
	fmt.Println("|---|---|---|---|---|")
	for _, set := range sets {
		if err := admin.FlushDB(ctx).Err(); err != nil {
			return err
		}
		takers, done := set.make(clients, o.exactLimit, o.exactPer)
		times, n, err := hammer(ctx, takers, o.concurrency, o.exactDuration, true)
		done()
		if err != nil {
			return fmt.Errorf("%s: %w", set.name, err)
		}
		share := float64(n) / (float64(o.exactLimit) * o.exactDuration.Seconds() / o.exactPer.Seconds())
		fmt.Printf("| %s | %d | %.1f%% | %d | %d |\n", set.name, n, 100*share, slidingwindow.MaxIn(times, o.exactPer), o.exactLimit)
	}
	fmt.Printf("\nLoad average at end: %s\n", loadavg())
	return nil
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}
