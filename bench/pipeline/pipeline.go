package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/tokenrelay/tokenrelay/bench/internal/benchdb"
	"github.com/tokenrelay/tokenrelay/bench/internal/profile"
	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/app"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/jobs"
	"github.com/tokenrelay/tokenrelay/vendors/sandbox"
)

// The asynq keys of the critical queue (asynq's layout: asynq:{<queue>}:...).
var (
	asynqPending = "asynq:{" + jobs.QueueCritical + "}:pending"
	asynqActive  = "asynq:{" + jobs.QueueCritical + "}:active"
)

// pipeOpts are the settings shared by the pipeline and capacity phases.
type pipeOpts struct {
	RedisURL, NATSURL   string
	Credentials         int
	Lifetime            time.Duration
	Window              time.Duration
	Schedulers, Workers int
	Concurrency         int
	PerTask             int // renewals per refresh task (scheduler.Options.PerTask; 0: its default)
	TaskCheck           time.Duration
	SeedRate            float64 // credentials/s while seeding; 0 auto, <0 unpaced
	SeedParallel        int
	CPUProfile          string
	Log                 zerolog.Logger
	Progress            func(string, ...any)
	MeasureMemory       bool
	NC                  *nats.Conn
	Admin               *redis.Client // on the benchmark's database
}

// backlog is what waits in the pipeline at one moment.
type backlog struct {
	Overdue, Pending, Active, Outbox int64
}

type pipelineResult struct {
	Credentials                      int
	Lifetime                         time.Duration
	Schedulers, Workers, Concurrency int
	MeanInterval                     time.Duration // mean time between two renewals of a credential
	Demand                           float64       // renewals/s the schedule asks for: N / MeanInterval
	SeedRate                         float64
	SeedTime                         time.Duration
	WarmUp                           time.Duration // roles started -> every first token relayed
	Window                           time.Duration
	Renewals                         int     // token.renewed PubAcks in the window
	RenewalRate                      float64 // Renewals / Window
	TokenCalls                       int     // sandbox token calls in the window
	Rate5sMin, Rate5sMax             float64
	Lag                              dist
	Slack                            dist // previous token's expiry minus the renewal's request time
	Gaps                             int  // renewals requested after the previous token had expired (whole run)
	WinEvents, ByType                map[string]int
	ExpiredUses                      int // sandbox: requests with an expired token (whole run)
	States                           map[store.State]int
	ExpiredAtEnd                     int // credentials whose token had expired at the end of the window
	NeverRenewed                     int
	BacklogMax, BacklogEnd           backlog
	CPU                              cpuShare
	Commands                         []benchdb.CmdStat
	Dropped                          int64
	Memory                           *memResult
}

// keptUp reports whether the pipeline kept up with the schedule: within
// 5% of the rate it asked for, and no token expired before its renewal.
func (r *pipelineResult) keptUp() bool {
	return r.RenewalRate >= 0.95*r.Demand && r.Gaps == 0 && r.ExpiredAtEnd == 0
}

// meanInterval is the mean time between renewals of a token of the given
// effective lifetime under the vendor's renewal policy: renewals fall
// uniformly in [At-Jitter, At] of the lifetime.
func meanInterval(v config.Vendor, lifetime time.Duration) time.Duration {
	return time.Duration((v.RefreshAt - v.RefreshJitter/2) * float64(lifetime))
}

// runPipeline runs 100k credentials (o.Credentials) through the whole
// pipeline and measures a steady window.
func runPipeline(ctx context.Context, o pipeOpts) (*pipelineResult, error) {
	res := &pipelineResult{Credentials: o.Credentials, Lifetime: o.Lifetime, Schedulers: o.Schedulers,
		Workers: o.Workers, Concurrency: o.Concurrency, Window: o.Window}
	if err := o.Admin.FlushDB(ctx).Err(); err != nil {
		return nil, fmt.Errorf("pipeline: flush: %w", err)
	}
	time.Sleep(200 * time.Millisecond)
	baseline, err := benchdb.UsedMemory(ctx, o.Admin)
	if err != nil {
		return nil, err
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	sb := sandbox.New(sandbox.Options{RealTokenLifetime: o.Lifetime})
	sbURL, sbDone, err := startSandbox(runCtx, sb)
	if err != nil {
		return nil, err
	}
	defer func() { cancel(); <-sbDone }()

	n := newNames("p")
	cfg, err := benchConfig(o.RedisURL, o.NATSURL, sbURL, n, o.Lifetime)
	if err != nil {
		return nil, err
	}
	deleteStream, err := ensureStream(ctx, o.NC, cfg)
	if err != nil {
		return nil, err
	}
	defer deleteStream()

	res.MeanInterval = meanInterval(cfg.Vendors[benchVendor], o.Lifetime)
	res.Demand = float64(o.Credentials) / res.MeanInterval.Seconds()
	seedRate := o.SeedRate
	if seedRate == 0 {
		seedRate = res.Demand
	}
	res.SeedRate = max(seedRate, 0)

	col := newCollector()
	start := time.Now()
	rl, err := startRoles(runCtx, cfg, o.Log, o.Schedulers, o.Workers, o.PerTask,
		app.WorkerOptions{Concurrency: o.Concurrency, TaskCheckInterval: o.TaskCheck}, col.onPublished)
	if err != nil {
		return nil, err
	}
	stopped := false
	defer func() {
		if !stopped {
			rl.stopAll()
		}
	}()

	// Seed: credentials arrive at the renewal rate, so that their renewals
	// are spread evenly over the renewal interval from the first round on,
	// as in a store that filled up over time.
	seedRDB := redis.NewClient(mustParseURL(o.RedisURL))
	defer seedRDB.Close()
	sd, err := newSeeder(seedRDB, cfg, sb, nil)
	if err != nil {
		return nil, err
	}
	o.Progress("pipeline: adding %s credentials at %.0f/s (token lifetime %s, mean renewal interval %s, so %.0f renewals/s expected)",
		thousands(int64(o.Credentials)), seedRate, o.Lifetime, res.MeanInterval.Round(10*time.Millisecond), res.Demand)
	res.SeedTime, err = sd.seed(runCtx, 0, o.Credentials, o.SeedParallel, seedRate, o.Progress)
	if err != nil {
		return nil, err
	}
	o.Progress("pipeline: %s credentials added in %s; waiting for every first token", thousands(int64(o.Credentials)), res.SeedTime.Round(100*time.Millisecond))
	err = waitFor(ctx, 15*time.Minute, 100*time.Millisecond, func() (bool, error) {
		g, _ := col.firstTokens()
		return g >= o.Credentials, nil
	})
	if err != nil {
		g, _ := col.firstTokens()
		return nil, fmt.Errorf("pipeline: only %d of %d credentials got their first token: %w", g, o.Credentials, err)
	}
	res.WarmUp = time.Since(start)
	o.Progress("pipeline: every credential has its first token (%s after start); measuring %s", res.WarmUp.Round(100*time.Millisecond), o.Window)

	// The steady window.
	calls0 := sb.TotalTokenCalls()
	cmd0, err := benchdb.CommandStats(ctx, o.Admin)
	if err != nil {
		return nil, err
	}
	stopProfile, err := startProfile(o.CPUProfile)
	if err != nil {
		return nil, err
	}
	cpu0 := takeCPU(ctx, o.Admin)
	winStart := time.Now()
	col.startWindow(winStart)
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		end := winStart.Add(o.Window)
		for time.Now().Before(end) {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			b, err := sampleBacklog(ctx, o.Admin, cfg.Redis.Prefix)
			if err != nil {
				continue
			}
			res.BacklogEnd = b
			res.BacklogMax.Overdue = max(res.BacklogMax.Overdue, b.Overdue)
			res.BacklogMax.Pending = max(res.BacklogMax.Pending, b.Pending)
			res.BacklogMax.Active = max(res.BacklogMax.Active, b.Active)
			res.BacklogMax.Outbox = max(res.BacklogMax.Outbox, b.Outbox)
		}
	}()
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(o.Window):
	}
	winEnd := time.Now()
	col.endWindow(winEnd)
	cpu1 := takeCPU(ctx, o.Admin)
	stopProfile()
	<-sampled
	cmd1, err := benchdb.CommandStats(ctx, o.Admin)
	if err != nil {
		return nil, err
	}
	res.TokenCalls = sb.TotalTokenCalls() - calls0
	res.CPU = cpu1.since(cpu0)
	res.Commands = benchdb.DiffCommandStats(cmd0, cmd1)
	res.Window = winEnd.Sub(winStart)

	// The state of every credential right at the end of the window, while
	// the pipeline still runs.
	res.States = make(map[store.State]int)
	scanAt := time.Now()
	err = rl.scheds[0].env.Store.Scan(ctx, func(s store.Summary) error {
		res.States[s.State]++
		if s.Generation == 0 {
			res.NeverRenewed++
		}
		if !s.ExpiresAt.IsZero() && s.ExpiresAt.Before(scanAt) {
			res.ExpiredAtEnd++
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("pipeline: scan: %w", err)
	}

	// Drain: no more claims; let the queue empty, then the outbox.
	o.Progress("pipeline: window done; draining the queue and the outbox")
	rl.stopClaiming()
	if err := waitFor(ctx, 2*time.Minute, 100*time.Millisecond, func() (bool, error) {
		b, err := sampleBacklog(ctx, o.Admin, cfg.Redis.Prefix)
		return err == nil && b.Pending == 0 && b.Active == 0, err
	}); err != nil {
		return nil, fmt.Errorf("pipeline: the task queue did not drain: %w", err)
	}
	rl.stopWorkers()
	if err := waitFor(ctx, 2*time.Minute, 100*time.Millisecond, func() (bool, error) {
		b, err := sampleBacklog(ctx, o.Admin, cfg.Redis.Prefix)
		return err == nil && b.Outbox == 0, err
	}); err != nil {
		return nil, fmt.Errorf("pipeline: the outbox did not drain: %w", err)
	}
	rl.stopRelays()
	stopped = true
	res.ExpiredUses = sb.ExpiredUses()

	snap := col.snapshot()
	res.Renewals = snap.WinRenewed
	res.RenewalRate = rate(snap.WinRenewed, res.Window)
	res.Lag = summarise(snap.WinLags)
	res.Slack = summarise(snap.WinSlack)
	res.Gaps = snap.Gaps
	res.WinEvents = snap.WinEvents
	res.ByType = snap.ByType
	res.Dropped = snap.Dropped
	res.Rate5sMin, res.Rate5sMax = fiveSecondRates(snap.PerSecond, winStart, winEnd)

	if o.MeasureMemory {
		mem, err := measureMemory(ctx, o.Admin, cfg.Redis.Prefix, o.Credentials, baseline)
		if err != nil {
			return nil, err
		}
		res.Memory = mem
	}
	if err := o.Admin.FlushDB(ctx).Err(); err != nil {
		return nil, fmt.Errorf("pipeline: flush: %w", err)
	}
	return res, nil
}

// fiveSecondRates returns the lowest and highest renewal rate over the
// whole 5-second buckets of the window.
func fiveSecondRates(perSecond map[int64]int, start, end time.Time) (lo, hi float64) {
	first := start.Unix() + 1 // the first whole second
	last := end.Unix() - 1
	lo = -1
	for s := first; s+5 <= last+1; s += 5 {
		n := 0
		for i := s; i < s+5; i++ {
			n += perSecond[i]
		}
		r := float64(n) / 5
		if lo < 0 || r < lo {
			lo = r
		}
		hi = max(hi, r)
	}
	return max(lo, 0), hi
}

func sampleBacklog(ctx context.Context, rdb *redis.Client, prefix string) (backlog, error) {
	var b backlog
	cmds, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.ZCount(ctx, prefix+"due", "-inf", strconv.FormatInt(time.Now().UnixMilli(), 10))
		p.LLen(ctx, asynqPending)
		p.LLen(ctx, asynqActive)
		p.XLen(ctx, events.OutboxKey(prefix))
		return nil
	})
	if err != nil {
		return b, err
	}
	b.Overdue = cmds[0].(*redis.IntCmd).Val()
	b.Pending = cmds[1].(*redis.IntCmd).Val()
	b.Active = cmds[2].(*redis.IntCmd).Val()
	b.Outbox = cmds[3].(*redis.IntCmd).Val()
	return b, nil
}

// ensureStream creates the run's stream and returns a func deleting it.
func ensureStream(ctx context.Context, nc *nats.Conn, cfg *config.Config) (func(), error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	if _, err := events.EnsureStream(ctx, js, events.StreamConfig{Name: cfg.NATS.Stream, SubjectPrefix: cfg.NATS.SubjectPrefix}); err != nil {
		return nil, err
	}
	return func() {
		dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = js.DeleteStream(dctx, cfg.NATS.Stream)
	}, nil
}

// startProfile starts a CPU profile into path ("" for none), and with it
// mutex and block profiles written next to it (path.mutex, path.block),
// and returns the func that stops them.
func startProfile(path string) (func(), error) {
	if path == "" {
		return func() {}, nil
	}
	stopCPU, err := profile.StartCPU(path)
	if err != nil {
		return nil, err
	}
	runtime.SetMutexProfileFraction(10)
	runtime.SetBlockProfileRate(int(100 * time.Microsecond))
	return func() {
		stopCPU()
		for _, name := range []string{"mutex", "block"} {
			if w, err := os.Create(path + "." + name); err == nil {
				_ = pprof.Lookup(name).WriteTo(w, 0)
				_ = w.Close()
			}
		}
		runtime.SetMutexProfileFraction(0)
		runtime.SetBlockProfileRate(0)
	}, nil
}

func mustParseURL(u string) *redis.Options {
	opt, err := redis.ParseURL(u)
	if err != nil {
		panic(err)
	}
	return opt
}
