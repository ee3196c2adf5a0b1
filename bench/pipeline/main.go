// Command pipeline is tokenrelay's load benchmark (make bench; results in
// BENCHMARKS.md). It runs, on the real Redis and NATS of the machine, in
// a Redis database it leases and a JetStream stream of its own:
//
//   - reference: bare asynq no-op tasks, the reference throughput;
//   - pipeline: -credentials credentials through the whole pipeline (the
//     sandbox on a loopback port, schedulers and workers as the binaries
//     build them), renewed over and over, measured over a steady window:
//     renewals/s, outbox-to-JetStream lag, CPU and Redis command shares;
//   - memory: the Redis memory per credential after that run;
//   - capacity: every credential due at once, renewed as fast as it goes;
//   - steps: the CPU and Redis cost of each step of a renewal, alone;
//   - schedcost: the cost of finding due work at 1k, 10k and 100k credentials;
//   - kservices: token-endpoint calls and 401s per hour of K services
//     sharing one credential, with their own golang.org/x/oauth2 refresh
//     and through tokenrelay (time compressed).
//
// It prints a table of results against the targets and, with -out, writes
// it as Markdown.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/tokenrelay/tokenrelay/bench/internal/benchdb"
	"github.com/tokenrelay/tokenrelay/bench/internal/benchtrace"
	"github.com/tokenrelay/tokenrelay/internal/tracing"
)

var allPhases = []string{"reference", "pipeline", "memory", "capacity", "steps", "schedcost", "kservices"}

type options struct {
	credentials  int
	duration     time.Duration
	lifetime     time.Duration
	workers      int
	schedulers   int
	concurrency  int
	perTask      int
	taskCheck    time.Duration
	seedRate     float64
	seedParallel int
	refTasks     int
	stepOps      int
	phases       map[string]bool
	out          string
	cpuprofile   string
	redisAddr    string
	redisDB      int
	natsURL      string
	logFile      string
	waitIdle     time.Duration
	logLevel     string
	schedSizes   []int
	schedDue     int
	schedCalls   int
	ks           []int
	kScale       float64
	kHours       float64
	kEvery       time.Duration
	trace        benchtrace.Mode
	args         []string
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	o, err := parseFlags(args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := bench(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	return 0
}

func parseFlags(args []string) (*options, error) {
	o := &options{args: args}
	fs := flag.NewFlagSet("pipeline", flag.ContinueOnError)
	fs.IntVar(&o.credentials, "credentials", 100000, "credentials in the pipeline and capacity phases")
	fs.DurationVar(&o.duration, "duration", 60*time.Second, "steady window measured in the pipeline phase")
	fs.DurationVar(&o.lifetime, "lifetime", 60*time.Second, "real token lifetime in the pipeline phase (renewal every ~0.62 of it)")
	fs.IntVar(&o.workers, "workers", 2, "worker replicas (app.RunWorker, each with its own connections)")
	fs.IntVar(&o.schedulers, "schedulers", 1, "scheduler replicas (scheduler + outbox relay, each with its own connections)")
	fs.IntVar(&o.concurrency, "concurrency", 20, "asynq concurrency of each worker (and of the reference servers)")
	fs.IntVar(&o.perTask, "per-task", 0, "renewals the scheduler puts in one refresh task (scheduler.Options.PerTask; 0: its default)")
	fs.DurationVar(&o.taskCheck, "task-check", 50*time.Millisecond, "asynq TaskCheckInterval of the workers and the reference")
	fs.Float64Var(&o.seedRate, "seed-rate", 0, "credentials added per second in the pipeline phase (0: the expected renewal rate, so renewals are evenly spread; <0: as fast as possible)")
	fs.IntVar(&o.seedParallel, "seed-parallel", 32, "parallel upserts while adding credentials")
	fs.IntVar(&o.refTasks, "ref-tasks", 100000, "no-op tasks in the asynq reference")
	fs.IntVar(&o.stepOps, "step-ops", 50000, "credentials each step of a renewal is timed on in the steps phase")
	phases := fs.String("phases", strings.Join(allPhases, ","), "comma-separated phases to run: "+strings.Join(allPhases, ", ")+" (memory needs pipeline)")
	fs.StringVar(&o.out, "out", "", "also write the results as Markdown to this file")
	fs.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile of the pipeline's steady window (or, without the pipeline phase, of the capacity flood) to this file, and its mutex and block profiles to FILE.mutex and FILE.block")
	fs.StringVar(&o.redisAddr, "redis", "127.0.0.1:6379", "Redis address")
	fs.IntVar(&o.redisDB, "redis-db", -1, "Redis database to use (flushed); -1 leases a free one the way the tests do")
	fs.StringVar(&o.natsURL, "nats", "nats://127.0.0.1:4222", "NATS URL (JetStream enabled)")
	fs.StringVar(&o.logFile, "log", filepath.Join(os.TempDir(), "tokenrelay-bench.log"), "file receiving the pipeline's logs")
	fs.DurationVar(&o.waitIdle, "wait-idle", 2*time.Minute, "before each measured phase, wait up to this long for the machine to be idle (0: do not wait)")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level of the pipeline (info, as deployed: one line per renewal)")
	sizes := fs.String("sched-sizes", "1000,10000,100000", "credential counts of the schedcost phase")
	fs.IntVar(&o.schedDue, "sched-due", 100, "credentials due at each ClaimDue call in the schedcost phase")
	fs.IntVar(&o.schedCalls, "sched-calls", 200, "timed ClaimDue calls per size")
	kList := fs.String("k", "1,10,50", "numbers of services sharing one credential in the kservices phase")
	fs.Float64Var(&o.kScale, "k-scale", 100, "time compression of the kservices phase (100: an hour takes 36 s)")
	fs.Float64Var(&o.kHours, "k-hours", 3, "simulated hours of the kservices phase")
	fs.DurationVar(&o.kEvery, "k-every", 30*time.Second, "simulated time between two API requests of one service")
	traceMode := fs.String("trace", "off", "tracing: off, or on at this sampling percentage (1, 100), exporting over OTLP to a Jaeger the benchmark starts")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	o.phases = make(map[string]bool)
	for p := range strings.SplitSeq(*phases, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if !slices.Contains(allPhases, p) {
			return nil, fmt.Errorf("-phases: unknown phase %q (have %s)", p, strings.Join(allPhases, ", "))
		}
		o.phases[p] = true
	}
	if o.phases["memory"] && !o.phases["pipeline"] {
		return nil, errors.New("-phases: memory is measured after the pipeline phase; add pipeline")
	}
	var err error
	if o.trace, err = benchtrace.Parse(*traceMode); err != nil {
		return nil, err
	}
	if o.schedSizes, err = intList(*sizes); err != nil {
		return nil, fmt.Errorf("-sched-sizes: %w", err)
	}
	if o.ks, err = intList(*kList); err != nil {
		return nil, fmt.Errorf("-k: %w", err)
	}
	switch {
	case o.perTask < 0:
		return nil, errors.New("-per-task must be 0 (the scheduler's default) or more")
	case o.credentials <= 0, o.workers <= 0, o.schedulers <= 0, o.concurrency <= 0, o.refTasks <= 1, o.seedParallel <= 0, o.stepOps <= 0:
		return nil, errors.New("-credentials, -workers, -schedulers, -concurrency, -seed-parallel, -ref-tasks and -step-ops must be positive")
	case o.duration < 10*time.Second:
		return nil, errors.New("-duration must be at least 10s")
	case o.lifetime < 3*time.Second:
		return nil, errors.New("-lifetime must be at least 3s")
	case o.kScale < 1 || o.kHours <= 0 || o.kEvery <= 0:
		return nil, errors.New("-k-scale must be at least 1, -k-hours and -k-every positive")
	}
	return o, nil
}

func intList(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%q is not a positive integer", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// results is everything measured.
type results struct {
	Machine   machine
	Command   string
	Opts      *options
	Ref       *refResult
	Pipe      *pipelineResult
	Cap       *capResult
	SchedCost []schedCostRow
	Steps     []stepRow
	K         *kResult
	Started   time.Time
	Took      time.Duration
}

func bench(ctx context.Context, o *options) error {
	started := time.Now()
	progress := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "[%6.1fs] %s\n", time.Since(started).Seconds(), fmt.Sprintf(format, args...))
	}
	lease, err := benchdb.Lease(ctx, o.redisAddr, "bench-pipeline", o.redisDB)
	if err != nil {
		return err
	}
	defer lease.Release()
	redisURL := fmt.Sprintf("redis://%s/%d", o.redisAddr, lease.Number())
	admin := redis.NewClient(mustParseURL(redisURL))
	defer admin.Close()
	if err := admin.FlushDB(ctx).Err(); err != nil {
		return err
	}
	defer admin.FlushDB(context.Background())
	nc, err := nats.Connect(o.natsURL, nats.Name("bench-pipeline"))
	if err != nil {
		return fmt.Errorf("nats at %s is not reachable (make services starts it): %w", o.natsURL, err)
	}
	defer nc.Close()

	logf, err := os.Create(o.logFile)
	if err != nil {
		return fmt.Errorf("log file: %w", err)
	}
	defer logf.Close()
	lvl, err := zerolog.ParseLevel(o.logLevel)
	if err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	log := zerolog.New(logf).Level(lvl).Hook(tracing.LogHook{}).With().Timestamp().Logger()

	collector, err := benchtrace.Start(ctx, o.trace)
	if err != nil {
		return err
	}
	defer collector.Stop()
	if collector != nil {
		for _, kv := range collector.Env {
			k, v, _ := strings.Cut(kv, "=")
			os.Setenv(k, v)
		}
	}
	flushTraces, err := tracing.Setup(ctx, "tokenrelay-bench", os.Getenv)
	if err != nil {
		return err
	}
	defer func() {
		_ = flushTraces(context.Background())
		if collector != nil {
			services, err := collector.Services()
			progress("tracing %s: jaeger received spans from %v (%v)", o.trace, services, err)
		}
	}()

	res := &results{Machine: describeMachine(ctx, admin, nc), Opts: o, Started: started.UTC(),
		Command: strings.TrimSpace("go run ./bench/pipeline " + strings.Join(o.args, " "))}
	progress("redis db %d (leased), nats %s, logs in %s; %d CPUs, load average %s; tracing %s",
		lease.Number(), res.Machine.NATSVersion, o.logFile, res.Machine.NProc, res.Machine.LoadAvg, o.trace)

	idle := func(phase string) {
		if o.waitIdle <= 0 {
			return
		}
		busy, ok := waitIdle(ctx, o.waitIdle)
		if !ok {
			progress("%s: the machine is still busy (%.2f cores used by other processes); measuring anyway", phase, busy)
		}
	}
	po := pipeOpts{
		RedisURL: redisURL, NATSURL: o.natsURL, Credentials: o.credentials, Lifetime: o.lifetime,
		Window: o.duration, Schedulers: o.schedulers, Workers: o.workers, Concurrency: o.concurrency, PerTask: o.perTask,
		TaskCheck: o.taskCheck, SeedRate: o.seedRate, SeedParallel: o.seedParallel, CPUProfile: o.cpuprofile,
		Log: log, Progress: progress, MeasureMemory: o.phases["memory"], NC: nc, Admin: admin,
	}
	if o.phases["reference"] {
		progress("reference: %s no-op asynq tasks, %d server(s) of concurrency %d", thousands(int64(o.refTasks)), o.workers, o.concurrency)
		idle("reference")
		r, err := runReference(ctx, redisURL, o.refTasks, o.workers, o.concurrency, o.taskCheck, progress)
		if err != nil {
			return err
		}
		res.Ref = &r
		progress("reference: %.0f tasks/s processed", r.ProcessRate)
	}
	if o.phases["pipeline"] {
		idle("pipeline")
		p, err := runPipeline(ctx, po)
		if err != nil {
			return err
		}
		res.Pipe = p
		progress("pipeline: %.0f renewals/s sustained; outbox lag p50 %s p99 %s", p.RenewalRate, ms(p.Lag.P50), ms(p.Lag.P99))
	}
	if o.phases["capacity"] {
		cpo := po
		if o.phases["pipeline"] {
			cpo.CPUProfile = ""
		}
		idle("capacity")
		c, err := runCapacity(ctx, cpo)
		if err != nil {
			return err
		}
		res.Cap = c
		progress("capacity: %.0f renewals/s with everything due at once", c.Rate)
	}
	if o.phases["steps"] {
		idle("steps")
		rows, err := runSteps(ctx, admin, redisURL, nc, o.stepOps, o.perTask, progress)
		if err != nil {
			return err
		}
		res.Steps = rows
	}
	if o.phases["schedcost"] {
		idle("schedcost")
		rows, err := runSchedCost(ctx, admin, redisURL, o.schedSizes, o.schedDue, o.schedCalls, progress)
		if err != nil {
			return err
		}
		res.SchedCost = rows
	}
	if o.phases["kservices"] {
		idle("kservices")
		k, err := runKServices(ctx, admin, redisURL, o.natsURL, nc, o.ks, o.kScale, o.kHours, o.kEvery, log, progress)
		if err != nil {
			return err
		}
		res.K = k
	}
	res.Took = time.Since(started)

	report(os.Stdout, res, false)
	if o.out != "" {
		f, err := os.Create(o.out)
		if err != nil {
			return err
		}
		report(f, res, true)
		if err := f.Close(); err != nil {
			return err
		}
		progress("results written to %s", o.out)
	}
	return nil
}
