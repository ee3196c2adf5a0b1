package main

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokenrelay/tokenrelay/bench/internal/benchdb"
	"github.com/tokenrelay/tokenrelay/internal/app"
	"github.com/tokenrelay/tokenrelay/vendors/sandbox"
)

// capResult is the flood: every credential due at once, renewed as fast
// as the pipeline goes (the most it can do, rather than what a schedule
// asks of it).
type capResult struct {
	Credentials int
	UpsertRate  float64       // credentials/s added with parallel upserts
	Rate        float64       // token calls/s between 10% and 90% of the credentials
	AllRelayed  time.Duration // roles started -> every first token's event acked
	TokenCalls  int           // sandbox token calls in all (one per credential if exactly once holds)
	MaxPending  int64         // most tasks waiting in asynq's critical queue
	MaxOverdue  int64         // most unclaimed due entries
	ByType      map[string]int
	Lag         dist
	CPU         cpuShare
	Commands    []benchdb.CmdStat
}

func runCapacity(ctx context.Context, o pipeOpts) (*capResult, error) {
	res := &capResult{Credentials: o.Credentials}
	if err := o.Admin.FlushDB(ctx).Err(); err != nil {
		return nil, fmt.Errorf("capacity: flush: %w", err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Tokens live 15 minutes, as Halaxy's: no credential comes due twice
	// during the flood.
	lifetime := sandbox.DefaultRealTokenLifetime
	sb := sandbox.New(sandbox.Options{RealTokenLifetime: lifetime})
	sbURL, sbDone, err := startSandbox(runCtx, sb)
	if err != nil {
		return nil, err
	}
	defer func() { cancel(); <-sbDone }()
	n := newNames("c")
	cfg, err := benchConfig(o.RedisURL, o.NATSURL, sbURL, n, lifetime)
	if err != nil {
		return nil, err
	}
	deleteStream, err := ensureStream(ctx, o.NC, cfg)
	if err != nil {
		return nil, err
	}
	defer deleteStream()

	seedRDB := redis.NewClient(mustParseURL(o.RedisURL))
	defer seedRDB.Close()
	sd, err := newSeeder(seedRDB, cfg, sb, nil)
	if err != nil {
		return nil, err
	}
	o.Progress("capacity: adding %s credentials, all due at once", thousands(int64(o.Credentials)))
	took, err := sd.seed(runCtx, 0, o.Credentials, o.SeedParallel, -1, o.Progress)
	if err != nil {
		return nil, err
	}
	res.UpsertRate = rate(o.Credentials, took)
	o.Progress("capacity: added at %.0f upserts/s; starting the pipeline", res.UpsertRate)

	col := newCollector()
	col.startWindow(time.Now())
	cmd0, err := benchdb.CommandStats(ctx, o.Admin)
	if err != nil {
		return nil, err
	}
	stopProfile, err := startProfile(o.CPUProfile)
	if err != nil {
		return nil, err
	}
	cpu0 := takeCPU(ctx, o.Admin)
	start := time.Now()
	rl, err := startRoles(runCtx, cfg, o.Log, o.Schedulers, o.Workers, o.PerTask,
		app.WorkerOptions{Concurrency: o.Concurrency, TaskCheckInterval: o.TaskCheck}, col.onPublished)
	if err != nil {
		stopProfile()
		return nil, err
	}
	defer rl.stopAll()

	var t10, t90 time.Time
	lo, hi := o.Credentials/10, o.Credentials*9/10
	lastReport, lastSample := time.Now(), time.Time{}
	err = waitFor(ctx, 20*time.Minute, 20*time.Millisecond, func() (bool, error) {
		calls := sb.TotalTokenCalls()
		now := time.Now()
		if now.Sub(lastSample) >= 500*time.Millisecond {
			lastSample = now
			if b, err := sampleBacklog(ctx, o.Admin, cfg.Redis.Prefix); err == nil {
				res.MaxPending = max(res.MaxPending, b.Pending)
				res.MaxOverdue = max(res.MaxOverdue, b.Overdue)
			}
		}
		if t10.IsZero() && calls >= lo {
			t10 = now
		}
		if t90.IsZero() && calls >= hi {
			t90 = now
		}
		if now.Sub(lastReport) >= 5*time.Second {
			lastReport = now
			g, _ := col.firstTokens()
			o.Progress("capacity: %s token calls, %s renewals relayed", thousands(int64(calls)), thousands(int64(g)))
		}
		g, _ := col.firstTokens()
		return g >= o.Credentials, nil
	})
	cpu1 := takeCPU(ctx, o.Admin)
	stopProfile()
	if err != nil {
		g, _ := col.firstTokens()
		return nil, fmt.Errorf("capacity: only %d of %d credentials renewed: %w", g, o.Credentials, err)
	}
	_, last := col.firstTokens()
	res.AllRelayed = last.Sub(start)
	res.Rate = rate(hi-lo, t90.Sub(t10))
	res.CPU = cpu1.since(cpu0)
	cmd1, err := benchdb.CommandStats(ctx, o.Admin)
	if err != nil {
		return nil, err
	}
	res.Commands = benchdb.DiffCommandStats(cmd0, cmd1)
	// Let late duplicates (re-claimed after their lease) show up, if any.
	time.Sleep(2 * time.Second)
	res.TokenCalls = sb.TotalTokenCalls()
	snap := col.snapshot()
	res.ByType = snap.ByType
	res.Lag = summarise(snap.WinLags)
	rl.stopAll()
	if err := o.Admin.FlushDB(ctx).Err(); err != nil {
		return nil, fmt.Errorf("capacity: flush: %w", err)
	}
	return res, nil
}
