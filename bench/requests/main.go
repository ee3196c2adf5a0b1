// Command requests benchmarks request jobs (make bench-requests; results in
// BENCHMARKS.md, "Issue 4: requests"). On the machine's real Redis (a
// database it leases, as the tests do) and the sandbox's Halaxy on a
// loopback port:
//
//   - budget (b): -n requests of one credential through -workers worker
//     processes (asynq servers of -concurrency each, each with its own
//     budget) and the feeder, at a compressed window (-limit per -window):
//     the achieved rate as a share of the limit and the 429s, once with the
//     limit known (configured = the vendor's) and once unknown (configured
//     -over, above the vendor's);
//   - throughput (c): -tput-n requests against a sandbox without a limit,
//     through tokenrelay (whose asynq slots each send a group of requests
//     side by side) and through a plain Go HTTP client loop of as many
//     senders as tokenrelay has slots (-plain-senders), run before and
//     after tokenrelay; the ratio of the two, and the Redis round trips per
//     request job end to end (submit, feeder, asynq, handler, outcome:
//     every command or pipeline on the one client they all share);
//   - memory: -mem-n requests submitted and left queued (no feeder): the
//     bytes per queued request by MEMORY USAGE (SAMPLES 0: every element)
//     of the database's keys, and by INFO used_memory growth (which also
//     counts each key's keyspace and expiry entries), and what a million
//     would take.
//
// It prints the results as Markdown, and with -out writes them to a file.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"

	"github.com/tokenrelay/tokenrelay/adminclient"
	"github.com/tokenrelay/tokenrelay/bench/internal/profile"
	"github.com/tokenrelay/tokenrelay/bench/internal/relay"
	"github.com/tokenrelay/tokenrelay/bench/internal/roundtrips"
	"github.com/tokenrelay/tokenrelay/internal/budget"
	"github.com/tokenrelay/tokenrelay/internal/requests"
	"github.com/tokenrelay/tokenrelay/internal/slidingwindow"
	"github.com/tokenrelay/tokenrelay/jobs"
)

type options struct {
	n, limit, over, workers, concurrency, tputN, memN, plainSenders int
	rounds                                                          int
	groupSize, maxInFlight, groupConcurrency                        int
	cpuProfile                                                      string
	jobsProfile, plainProfile, jobsAllocs                           string
	window, budgetLease, budgetSlack                                time.Duration
	budgetReserve                                                   float64
	vendorSlack                                                     time.Duration
	phases                                                          map[string]bool
	redisAddr, out                                                  string
}

func main() {
	var o options
	var phases string
	flag.IntVar(&o.n, "n", 20000, "requests of the budget phase")
	flag.IntVar(&o.limit, "limit", 500, "the vendor's true limit per window")
	flag.DurationVar(&o.window, "window", 5*time.Second, "the vendor's (compressed) sliding window")
	flag.IntVar(&o.over, "over", 600, "the configured limit when the true one is unknown")
	flag.IntVar(&o.workers, "workers", 2, "worker processes (asynq servers)")
	flag.IntVar(&o.concurrency, "concurrency", 4, "concurrency of each worker")
	flag.IntVar(&o.tputN, "tput-n", 20000, "requests of each round of the throughput phase")
	flag.IntVar(&o.rounds, "rounds", 5, "rounds of the throughput phase (each: plain loop, tokenrelay, plain loop); the ratio reported is their median")
	flag.IntVar(&o.plainSenders, "plain-senders", 0, "senders of the throughput phase's plain loop (0: as many as tokenrelay's asynq slots, workers×concurrency)")
	flag.IntVar(&o.memN, "mem-n", 10000, "requests of the memory phase")
	flag.DurationVar(&o.budgetLease, "budget-lease", 0, "budget.Options.Lease (0: the budget's default, window/100)")
	flag.DurationVar(&o.budgetSlack, "budget-slack", 0, "budget.Options.Slack (0: the budget's default, window/100)")
	flag.DurationVar(&o.vendorSlack, "vendor-slack", 25*time.Millisecond, "the vendor's rate_limit.slack (the sandbox is on loopback; 0: the budget's default)")
	flag.Float64Var(&o.budgetReserve, "budget-reserve", -1, "budget.Options.PriorityReserve and the feeder's BulkReserve (default -1: none, as the worker; 0: the budget's 0.01)")
	flag.IntVar(&o.groupSize, "group", 0, "the feeder's GroupSize: requests per task (0: its default, requests.DefaultGroupSize)")
	flag.IntVar(&o.maxInFlight, "max-in-flight", 0, "the feeder's MaxInFlight (0: its default, 256)")
	flag.IntVar(&o.groupConcurrency, "group-concurrency", 0, "the handlers' GroupConcurrency: a group's requests sent at once (0: all)")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the run to this file")
	flag.StringVar(&o.plainProfile, "plain-cpuprofile", "", "write a CPU profile of the throughput phase's first plain loop to this file (of each round: the last round's is kept)")
	flag.StringVar(&o.jobsAllocs, "jobs-allocprofile", "", "write the allocation profile to this file after the throughput phase's timed tokenrelay run, and to this file + .before before it (go tool pprof -base; of each round: the last round's is kept)")
	flag.StringVar(&o.jobsProfile, "jobs-cpuprofile", "", "write a CPU profile of the throughput phase's timed tokenrelay run alone (not the submits or the plain loop) to this file (each round writes it again: the last round's is kept)")
	flag.StringVar(&phases, "phases", "known,unknown,throughput,memory", "phases to run")
	flag.StringVar(&o.redisAddr, "redis", "127.0.0.1:6379", "Redis address")
	flag.StringVar(&o.out, "out", "", "also write the Markdown results to this file")
	flag.Parse()
	o.phases = map[string]bool{}
	for p := range strings.SplitSeq(phases, ",") {
		o.phases[strings.TrimSpace(p)] = true
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if o.cpuProfile != "" && (o.jobsProfile != "" || o.plainProfile != "") {
		fmt.Fprintln(os.Stderr, "bench/requests: -cpuprofile profiles the whole run; give it or -jobs-cpuprofile / -plain-cpuprofile, not both")
		os.Exit(2)
	}
	stopProfile, err := profile.StartCPU(o.cpuProfile)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/requests:", err)
		os.Exit(1)
	}
	defer stopProfile()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "bench/requests:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	trips := roundtrips.New(".")
	rdb, db, done, err := relay.Redis(ctx, o.redisAddr, "bench-requests", trips)
	if err != nil {
		return err
	}
	defer done()

	var md strings.Builder
	md.WriteString(relay.Machine(o.redisAddr, db))
	if o.phases["known"] || o.phases["unknown"] {
		fmt.Fprintf(&md, "#### (b) Achieved rate at a compressed window\n\n%d requests of one Halaxy credential (sandbox: %d per sliding %s), %d worker processes × concurrency %d (each with its own budget), one feeder. Achieved rate = accepted requests / (first-to-last span + one window): a sliding window admits at most limit requests per window, so n requests need at least n / limit windows; share = that rate over limit / window. The largest window and the 429s are from the sandbox's record of the requests it answered.\n\n",
			o.n, o.limit, o.window, o.workers, o.concurrency)
		fmt.Fprintln(&md, "| Limit | Configured | Requests | Completed | Wall time | Achieved rate | Share of limit | 429s | 429 share | Largest window | Budget waits | Slot reuse late p50 / mean |")
		fmt.Fprintln(&md, "|---|---|---|---|---|---|---|---|---|---|---|---|")
	}
	var budgetTrips, budgetRows []string
	for _, c := range []struct {
		phase      string
		configured int
	}{{"known", o.limit}, {"unknown", o.over}} {
		if !o.phases[c.phase] {
			continue
		}
		if err := rdb.FlushDB(ctx).Err(); err != nil {
			return err
		}
		trips.Snapshot()
		r, err := budgetPhase(ctx, rdb, o, c.configured)
		if err != nil {
			return fmt.Errorf("%s: %w", c.phase, err)
		}
		t := trips.Snapshot()
		budgetTrips = append(budgetTrips, fmt.Sprintf("%s: %.2f per job (%d)", c.phase, float64(t.Total())/float64(o.n), t.Total()))
		for _, r := range t.Rows(o.n) {
			budgetRows = append(budgetRows, "| "+c.phase+" "+r)
		}
		row := fmt.Sprintf("| %s (%d per %s) | %d | %d | %d | %s | %.1f/s | **%.1f%%** | %d | %.2f%% | %d | %.0f | %s / %s |",
			c.phase, o.limit, o.window, c.configured, o.n, r.completed, r.wall.Round(time.Millisecond), r.rate, 100*r.share,
			r.limited, 100*float64(r.limited)/float64(o.n), r.maxWindow, r.waits,
			r.lateP50.Round(time.Millisecond), r.lateMean.Round(time.Millisecond))
		fmt.Fprintln(&md, row)
		fmt.Fprintln(os.Stderr, row)
	}
	if len(budgetTrips) > 0 {
		fmt.Fprintf(&md, "\nRedis round trips per request job, end to end (submit to outcome, budget waits and asynq retries included): %s.\n\n", strings.Join(budgetTrips, "; "))
		fmt.Fprintln(&md, "| phase | round trip | count | per job |")
		fmt.Fprintln(&md, "|---|---|---|---|")
		for _, r := range budgetRows {
			fmt.Fprintln(&md, r)
		}
	}
	if o.phases["throughput"] {
		// Rounds, each its own plain loops around its tokenrelay run: the
		// machine's load moves by ±15% from one run to the next here, so
		// one round's ratio says little; the median of several does.
		var rounds []throughputRound
		for i := range max(o.rounds, 1) {
			if err := rdb.FlushDB(ctx).Err(); err != nil {
				return err
			}
			trips.Snapshot()
			r, err := throughputPhase(ctx, rdb, o, trips)
			if err != nil {
				return fmt.Errorf("throughput round %d: %w", i+1, err)
			}
			rounds = append(rounds, r)
			fmt.Fprintf(os.Stderr, "throughput round %d: ratio %.2f (tokenrelay %.0f/s, plain loop %.0f/s)\n", i+1, r.ratio(), r.jobRate, r.plain.both)
		}
		med := medianRound(rounds)
		plain, submitTrips, runTrips := med.plain, med.submitTrips, med.runTrips
		fmt.Fprintf(&md, "\n#### (c) Request throughput, no rate limit\n\n%d rounds of %d GET Patient requests of one credential against the sandbox without a limit: tokenrelay (submitted first; timed from the workers' start to the last request.completed in the outbox: feeder, asynq, budget, token read, outbox write; %d asynq slots, each sending the requests of its task's group side by side: %s) and a plain Go `net/http` loop of %d senders with the token in hand, run before and after tokenrelay in each round (a round's reference is both runs' requests over their summed time). The ratio is the rounds' median; the figures below it are the median round's.\n\n", len(rounds), o.tputN, o.workers*o.concurrency, groupConcurrency(o), cmp.Or(o.plainSenders, o.workers*o.concurrency))
		fmt.Fprintln(&md, "| Round | Plain loop before / after / both (requests/s) | tokenrelay (requests/s) | Ratio | CPU per request: plain / job |")
		fmt.Fprintln(&md, "|---|---|---|---|---|")
		for i, r := range rounds {
			fmt.Fprintf(&md, "| %d | %.0f / %.0f / %.0f | %.0f | %.2f | %d / %d µs |\n", i+1, r.plain.before, r.plain.after, r.plain.both,
				r.jobRate, r.ratio(), r.plain.cpu.Microseconds(), r.plain.jobCPU.Microseconds())
		}
		fmt.Fprintf(&md, "\nRatio, median of %d rounds: **%.2f** (%s).\n", len(rounds), med.ratio(), ratioRange(rounds))
		fmt.Fprintf(&md, "\nCPU of this process per request (sandbox included, Redis's own not): plain loop %.0f µs, request job %.0f µs (%.2f).\n",
			float64(plain.cpu.Microseconds()), float64(plain.jobCPU.Microseconds()), float64(plain.cpu)/float64(max(plain.jobCPU, 1)))
		fmt.Fprintf(&md, "\nRedis server's CPU per request job (INFO cpu, server-wide): submit %.0f µs, run %.0f µs.\n",
			float64(plain.redisSubmit.Microseconds()), float64(plain.redisRun.Microseconds()))
		n := o.tputN
		fmt.Fprintf(&md, "\nRedis round trips of those %d request jobs (a go-redis hook on the one client that the submitter, feeder, asynq client and servers, handlers, budgets and store share: one per command sent alone, one per pipeline; the benchmark's own polling not counted): submit %d (%.2f per job), run %d (%.2f per job), **%.2f per job end to end**. asynq's servers' background work (heartbeats, idle polls, forwarders) is in \"run\".\n\n",
			n, submitTrips.Total(), float64(submitTrips.Total())/float64(n), runTrips.Total(), float64(runTrips.Total())/float64(n),
			float64(submitTrips.Total()+runTrips.Total())/float64(n))
		fmt.Fprintln(&md, "| step | round trip | count | per job |")
		fmt.Fprintln(&md, "|---|---|---|---|")
		for _, r := range submitTrips.Rows(n) {
			fmt.Fprintln(&md, "| submit "+r)
		}
		for _, r := range runTrips.Rows(n) {
			fmt.Fprintln(&md, "| run "+r)
		}
	}
	if o.phases["memory"] {
		if err := rdb.FlushDB(ctx).Err(); err != nil {
			return err
		}
		m, err := memoryPhase(ctx, rdb, o)
		if err != nil {
			return fmt.Errorf("memory: %w", err)
		}
		per := float64(m.after-m.before) / float64(o.memN)
		fmt.Fprintf(&md, "\n#### Memory of queued requests\n\n%d GET Patient?_count=10 requests submitted through requests.Submitter and left queued (no feeder, no workers). MEMORY USAGE (SAMPLES 0) of every key of the database before and after: %d B → %d B, **%.0f B per queued request**, so a million would take **%.0f MB** (INFO used_memory, server-wide on a shared Redis: %+d B, %.0f B per request).\n",
			o.memN, m.before, m.after, per, per*1e6/1e6, m.usedAfter-m.usedBefore, float64(m.usedAfter-m.usedBefore)/float64(o.memN))
		fmt.Fprintln(&md, "\n| key | type | MEMORY USAGE | per request |")
		fmt.Fprintln(&md, "|---|---|---|---|")
		for _, k := range m.keys {
			fmt.Fprintf(&md, "| `%s` | %s | %d B | %.0f B |\n", k.name, k.typ, k.bytes, float64(k.bytes)/float64(o.memN))
		}
	}
	fmt.Print(md.String())
	if o.out != "" {
		return os.WriteFile(o.out, []byte(md.String()), 0o644)
	}
	return nil
}

// world is one phase's tokenrelay and sandbox.
type world struct {
	*relay.World
	// budgetMetrics count the budget's refusals (a worker's take told to
	// wait: the request went back to asynq).
	budgetMetrics *budget.Metrics
	// query is the submitted requests' query (nil: none).
	query jobs.Query
}

func newWorld(ctx context.Context, rdb *redis.Client, sandboxLimit int, window time.Duration, configured int, vendorSlack time.Duration) (*world, error) {
	w, err := relay.New(ctx, rdb, relay.Options{SandboxLimit: sandboxLimit, SandboxWindow: window, Configured: configured, Slack: vendorSlack})
	if err != nil {
		return nil, err
	}
	return &world{World: w, budgetMetrics: budget.NewMetrics()}, nil
}

// submit submits n GET Patient requests in one batch, 8 at a time.
func (w *world) submit(ctx context.Context, n int) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				r := jobs.NewRequest(relay.Credential, http.MethodGet, "Patient")
				r.Batch = "bench"
				r.Query = w.query
				if _, err := w.Sub.Submit(ctx, r); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// start runs the workers and the feeder until the returned stop.
func (w *world) start(ctx context.Context, o options) (stop func(), err error) {
	return w.Start(ctx, relay.StartOptions{Workers: o.workers, Concurrency: o.concurrency, BulkReserve: o.budgetReserve,
		GroupSize: o.groupSize, MaxInFlight: o.maxInFlight, GroupConcurrency: o.groupConcurrency,
		Budget: func() *budget.Budget {
			return budget.New(w.RDB, budget.Options{Prefix: relay.Prefix, Metrics: w.budgetMetrics, Lease: o.budgetLease, Slack: o.budgetSlack,
				PriorityReserve: o.budgetReserve})
		}})
}

// wait waits for the batch to finish and returns its status.
func (w *world) wait(ctx context.Context, n int) (adminclient.BatchStatus, error) {
	batches := requests.NewBatches(w.RDB, relay.Prefix, nil)
	for {
		st, err := batches.Status(roundtrips.Skip(ctx), relay.Vendor, relay.Credential, "bench")
		if err != nil {
			return st, err
		}
		if st.Finished() && st.Total == int64(n) {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

type budgetResult struct {
	completed          int64
	wall               time.Duration
	rate, share        float64
	limited, maxWindow int
	waits              float64
	// lateP50 and lateMean: how long after a permit came free again (the
	// request limit places earlier plus the window) it was used.
	lateP50, lateMean time.Duration
}

func budgetPhase(ctx context.Context, rdb *redis.Client, o options, configured int) (budgetResult, error) {
	w, err := newWorld(ctx, rdb, o.limit, o.window, configured, o.vendorSlack)
	if err != nil {
		return budgetResult{}, err
	}
	defer w.Close()
	if err := w.submit(ctx, o.n); err != nil {
		return budgetResult{}, err
	}
	stop, err := w.start(ctx, o)
	if err != nil {
		return budgetResult{}, err
	}
	st, err := w.wait(ctx, o.n)
	stop()
	if err != nil {
		return budgetResult{}, err
	}
	// The sandbox's own record of the requests its window judged.
	acc, refused := w.RateRecord()
	if len(acc) < 2 {
		return budgetResult{}, errors.New("the sandbox accepted fewer than 2 requests")
	}
	// The run spans (last - first) plus the window the last request opened:
	// a sliding window lets limit requests through per window, so the
	// achieved rate is the requests over that many windows' worth.
	span := acc[len(acc)-1].Sub(acc[0])
	rate := float64(len(acc)) / (span + o.window).Seconds()
	late := []time.Duration{0}
	var lateSum time.Duration
	for i := o.limit; i < len(acc); i++ {
		d := acc[i].Sub(acc[i-o.limit]) - o.window
		late = append(late, d)
		lateSum += d
	}
	sort.Slice(late, func(i, j int) bool { return late[i] < late[j] })
	return budgetResult{
		completed: st.Done, wall: span, rate: rate,
		share: rate / (float64(o.limit) / o.window.Seconds()), limited: refused,
		maxWindow: slidingwindow.MaxIn(acc, o.window), waits: testutilSum(w.budgetMetrics.Waits),
		lateP50: late[len(late)/2], lateMean: lateSum / time.Duration(max(1, len(late))),
	}, nil
}

// testutilSum adds up a counter vector's values.
func testutilSum(c *prometheus.CounterVec) float64 {
	ch := make(chan prometheus.Metric, 64)
	go func() { c.Collect(ch); close(ch) }()
	sum := 0.0
	for m := range ch {
		var d dto.Metric
		if m.Write(&d) == nil && d.Counter != nil {
			sum += d.Counter.GetValue()
		}
	}
	return sum
}

// throughputPhase runs one round of the throughput phase.
func throughputPhase(ctx context.Context, rdb *redis.Client, o options, trips *roundtrips.Counter) (throughputRound, error) {
	var r throughputRound
	plain := &r.plain
	fail := func(err error) (throughputRound, error) { return throughputRound{}, err }
	w, err := newWorld(ctx, rdb, -1, time.Second, 0, 0)
	if err != nil {
		return fail(err)
	}
	defer w.Close()
	senders := o.workers * o.concurrency

	if o.plainSenders > 0 {
		senders = o.plainSenders
	}

	// Plain: the same requests with the token in hand, senders at a time;
	// run before and after tokenrelay's, so that a change in the machine's
	// load during the run weighs on both sides.
	cred, err := w.Store.CurrentToken(ctx, relay.Credential)
	if err != nil {
		return fail(err)
	}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	plainCPU := time.Duration(0)
	plainLoop := func() (time.Duration, error) {
		cpu0 := processCPU()
		defer func() { plainCPU += processCPU() - cpu0 }()
		var next atomic.Int64
		var failed atomic.Int64
		start := time.Now()
		var wg sync.WaitGroup
		for range senders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for next.Add(1) <= int64(o.tputN) {
					req, _ := http.NewRequestWithContext(ctx, http.MethodGet, w.Vendors[relay.Vendor].BaseURL+"Patient?_count=10", nil)
					req.Header.Set("Authorization", "Bearer "+cred.Token.AccessToken.Reveal())
					req.Header.Set("Accept", "application/fhir+json")
					req.Header.Set("User-Agent", relay.UserAgent)
					resp, err := hc.Do(req)
					if err != nil {
						failed.Add(1)
						continue
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						failed.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		if failed.Load() > 0 {
			return 0, fmt.Errorf("plain loop: %d requests failed", failed.Load())
		}
		return time.Since(start), nil
	}
	stopPlainProfile, err := profile.StartCPU(o.plainProfile)
	if err != nil {
		return fail(err)
	}
	before, err := plainLoop()
	stopPlainProfile()
	if err != nil {
		return fail(err)
	}

	trips.Snapshot()
	rcpu0 := redisCPU(ctx, rdb)
	if err := w.submit(ctx, o.tputN); err != nil {
		return fail(err)
	}
	r.submitTrips = trips.Snapshot()
	rcpu1 := redisCPU(ctx, rdb)
	stopProfile, err := profile.StartCPU(o.jobsProfile)
	if err != nil {
		return fail(err)
	}
	if o.jobsAllocs != "" {
		if err := profile.WriteAllocs(o.jobsAllocs + ".before"); err != nil {
			return fail(err)
		}
	}
	start, cpu0 := time.Now(), processCPU()
	stop, err := w.start(ctx, o)
	if err != nil {
		return fail(err)
	}
	st, err := w.wait(ctx, o.tputN)
	stopProfile()
	if o.jobsAllocs != "" {
		if err := profile.WriteAllocs(o.jobsAllocs); err != nil {
			return fail(err)
		}
	}
	r.runTrips = trips.Snapshot()
	rcpu2 := redisCPU(ctx, rdb)
	stop()
	if err != nil {
		return fail(err)
	}
	if st.Done != int64(o.tputN) {
		return fail(fmt.Errorf("tokenrelay: %d of %d completed", st.Done, o.tputN))
	}
	r.jobRate = float64(o.tputN) / st.LastAt.Sub(start).Seconds()
	plain.jobCPU = (processCPU() - cpu0) / time.Duration(o.tputN)
	plain.redisSubmit = (rcpu1 - rcpu0) / time.Duration(o.tputN)
	plain.redisRun = (rcpu2 - rcpu1) / time.Duration(o.tputN)
	after, err := plainLoop()
	if err != nil {
		return fail(err)
	}
	plain.before, plain.after = float64(o.tputN)/before.Seconds(), float64(o.tputN)/after.Seconds()
	plain.both = float64(2*o.tputN) / (before + after).Seconds()
	plain.cpu = plainCPU / time.Duration(2*o.tputN)
	return r, nil
}

// plainRates are the plain loop's rates before and after tokenrelay's run,
// and over both (2n over their summed time): the reference of the ratio;
// and the process's CPU time per request of the plain loop and per
// request job (sandbox included on both sides; Redis's own CPU not), and
// the Redis server's CPU per request job while submitting and running them
// (server-wide: other clients' load is in it unless the server is the
// benchmark's own).
type plainRates struct {
	before, after, both                float64
	cpu, jobCPU, redisSubmit, redisRun time.Duration
}

// redisCPU is the Redis server's CPU time (user and system, all its
// threads) by INFO cpu; 0 when unknown.
func redisCPU(ctx context.Context, rdb *redis.Client) time.Duration {
	info, err := rdb.Info(ctx, "cpu").Result()
	if err != nil {
		return 0
	}
	var total float64
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (k == "used_cpu_sys" || k == "used_cpu_user") {
			f, _ := strconv.ParseFloat(v, 64)
			total += f
		}
	}
	return time.Duration(total * float64(time.Second))
}

// processCPU is the CPU time (user and system) the process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// groupConcurrency says how many of a group's requests a slot sends at once.
func groupConcurrency(o options) string {
	size := o.groupSize
	if size <= 0 {
		size = requests.DefaultGroupSize
	}
	if o.groupConcurrency > 0 {
		return fmt.Sprintf("groups of up to %d, %d at a time", size, o.groupConcurrency)
	}
	return fmt.Sprintf("groups of up to %d, all at once", size)
}

type keyMemory struct {
	name, typ string
	bytes     int64
}

type memoryResult struct {
	before, after, usedBefore, usedAfter int64
	keys                                 []keyMemory
}

// memQuery is the memory phase's requests' query: a short one, as a page
// of a search would have.
var memQuery = jobs.Query{"_count": {"10"}}

// memoryPhase submits o.memN requests (GET Patient?_count=10) without
// workers and measures what they hold in Redis.
func memoryPhase(ctx context.Context, rdb *redis.Client, o options) (memoryResult, error) {
	var m memoryResult
	w, err := newWorld(ctx, rdb, -1, time.Second, 0, 0)
	if err != nil {
		return m, err
	}
	defer w.Close()
	w.query = memQuery
	before, err := keyUsage(ctx, rdb)
	if err != nil {
		return m, err
	}
	if m.usedBefore, err = usedMemory(ctx, rdb); err != nil {
		return m, err
	}
	if err := w.submit(ctx, o.memN); err != nil {
		return m, err
	}
	if m.usedAfter, err = usedMemory(ctx, rdb); err != nil {
		return m, err
	}
	after, err := keyUsage(ctx, rdb)
	if err != nil {
		return m, err
	}
	for _, k := range before {
		m.before += k.bytes
	}
	old := map[string]int64{}
	for _, k := range before {
		old[k.name] = k.bytes
	}
	// Keys grouped by their name with ids cut off (the request hashes are
	// one row).
	groups := map[string]*keyMemory{}
	for _, k := range after {
		m.after += k.bytes
		name := k.name
		if i := strings.LastIndex(name, ":"); i >= 0 && len(name)-i > 20 {
			name = name[:i+1] + "<id>"
		}
		g := groups[name]
		if g == nil {
			g = &keyMemory{name: name, typ: k.typ}
			groups[name] = g
		}
		g.bytes += k.bytes - old[k.name]
	}
	for _, g := range groups {
		if g.bytes > 0 {
			m.keys = append(m.keys, *g)
		}
	}
	sort.Slice(m.keys, func(i, j int) bool { return m.keys[i].bytes > m.keys[j].bytes })
	return m, nil
}

// keyUsage lists every key of the database with MEMORY USAGE (SAMPLES 0).
func keyUsage(ctx context.Context, rdb *redis.Client) ([]keyMemory, error) {
	ctx = roundtrips.Skip(ctx)
	var out []keyMemory
	iter := rdb.Scan(ctx, 0, "*", 1000).Iterator()
	var names []string
	for iter.Next(ctx) {
		names = append(names, iter.Val())
	}
	if err := iter.Err(); err != nil {
		return nil, err
	}
	for i := 0; i < len(names); i += 500 {
		batch := names[i:min(i+500, len(names))]
		p := rdb.Pipeline()
		usage := make([]*redis.IntCmd, len(batch))
		types := make([]*redis.StatusCmd, len(batch))
		for j, k := range batch {
			usage[j] = p.MemoryUsage(ctx, k, 0)
			types[j] = p.Type(ctx, k)
		}
		_, _ = p.Exec(ctx)
		for j, k := range batch {
			out = append(out, keyMemory{name: k, typ: types[j].Val(), bytes: usage[j].Val()})
		}
	}
	return out, nil
}

// usedMemory is INFO memory's used_memory (server-wide).
func usedMemory(ctx context.Context, rdb *redis.Client) (int64, error) {
	info, err := rdb.Info(roundtrips.Skip(ctx), "memory").Result()
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
			var n int64
			_, err := fmt.Sscan(v, &n)
			return n, err
		}
	}
	return 0, errors.New("no used_memory in INFO memory")
}

// throughputRound is one round of the throughput phase.
type throughputRound struct {
	jobRate               float64
	plain                 plainRates
	submitTrips, runTrips roundtrips.Counts
}

// ratio is the round's tokenrelay rate over its plain loops'.
func (r throughputRound) ratio() float64 { return r.jobRate / r.plain.both }

// medianRound is the round of the median ratio (the lower middle one of
// an even count).
func medianRound(rs []throughputRound) throughputRound {
	sorted := slices.Clone(rs)
	slices.SortFunc(sorted, func(a, b throughputRound) int { return cmp.Compare(a.ratio(), b.ratio()) })
	return sorted[(len(sorted)-1)/2]
}

// ratioRange says the rounds' lowest and highest ratios.
func ratioRange(rs []throughputRound) string {
	lo, hi := rs[0].ratio(), rs[0].ratio()
	for _, r := range rs[1:] {
		lo, hi = min(lo, r.ratio()), max(hi, r.ratio())
	}
	return fmt.Sprintf("%.2f-%.2f", lo, hi)
}
