package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/tokenrelay/tokenrelay/bench/internal/benchdb"
	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/scheduler"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/jobs"
	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/vendors"
	"github.com/tokenrelay/tokenrelay/vendors/halaxy"
	"github.com/tokenrelay/tokenrelay/vendors/sandbox"
)

// stepRow is the cost of one step of a renewal, measured alone: each step
// run ops times (16 at a time where it is a call per credential), with the
// CPU of this process, Redis and NATS and the Redis commands counted over
// just that step.
type stepRow struct {
	Step       string
	Ops        int
	Wall       time.Duration
	CPU        cpuShare
	Scripts    float64 // EVALSHA per op
	RedisCalls float64 // Redis commands called by the client per op (EVALSHA and plain ones)
	ScriptUsec float64 // server time inside EVALSHA per op
}

// perOp converts a share of cores over the step to µs per op.
func (r stepRow) perOp(cores float64) float64 {
	return cores * r.Wall.Seconds() * 1e6 / float64(r.Ops)
}

// stepParallel is how many goroutines run a per-credential step.
const stepParallel = 16

// runSteps times, one after the other, every step a renewal goes through,
// each on ops credentials: Upsert (not part of a renewal; for scale), the
// scheduler's tick (ClaimDue and the enqueue of the refresh tasks, perTask
// renewals a task), asynq's dequeue and done of those tasks (a server with
// a no-op handler), the worker's Claim, the Halaxy token call to the
// sandbox, CommitRenewal, and the relay's XREAD, publish and XDEL. Costs
// are per renewal.
func runSteps(ctx context.Context, admin *redis.Client, redisURL string, nc *nats.Conn, ops, perTask int, progress func(string, ...any)) ([]stepRow, error) {
	if err := admin.FlushDB(ctx).Err(); err != nil {
		return nil, err
	}
	defer admin.FlushDB(context.Background())
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	sb := sandbox.New(sandbox.Options{RealTokenLifetime: time.Hour})
	sbURL, sbDone, err := startSandbox(runCtx, sb)
	if err != nil {
		return nil, err
	}
	defer func() { cancel(); <-sbDone }()
	n := newNames("t")
	cfg, err := benchConfig(redisURL, "", sbURL, n, 15*time.Minute)
	if err != nil {
		return nil, err
	}
	rdb := redis.NewClient(mustParseURL(redisURL))
	defer rdb.Close()
	sd, err := newSeeder(rdb, cfg, sb, nil)
	if err != nil {
		return nil, err
	}
	st := sd.st
	ids := make([]string, ops)
	for i := range ids {
		ids[i] = credentialID(i)
	}
	var rows []stepRow
	measure := func(name string, fn func() (int, error)) error {
		cmd0, err := benchdb.CommandStats(ctx, admin)
		if err != nil {
			return err
		}
		cpu0 := takeCPU(ctx, admin)
		count, err := fn()
		cpu1 := takeCPU(ctx, admin)
		if err != nil {
			return fmt.Errorf("steps: %s: %w", name, err)
		}
		cmd1, err := benchdb.CommandStats(ctx, admin)
		if err != nil {
			return err
		}
		row := stepRow{Step: name, Ops: count, Wall: cpu1.at.Sub(cpu0.at), CPU: cpu1.since(cpu0)}
		inScripts := scriptCommands()
		for _, c := range benchdb.DiffCommandStats(cmd0, cmd1) {
			switch {
			case c.Name == "info":
			case c.Name == "evalsha" || c.Name == "eval":
				row.Scripts += float64(c.Calls) / float64(count)
				row.RedisCalls += float64(c.Calls) / float64(count)
				row.ScriptUsec += float64(c.Usec) / float64(count)
			case !inScripts[c.Name]:
				row.RedisCalls += float64(c.Calls) / float64(count)
			}
		}
		rows = append(rows, row)
		progress("steps: %-28s %6.1f µs of CPU per op (Go %.1f, Redis %.1f, NATS %.1f), %.2f scripts per op",
			name, row.perOp(row.CPU.Self+row.CPU.Redis+row.CPU.NATS), row.perOp(row.CPU.Self), row.perOp(row.CPU.Redis), row.perOp(row.CPU.NATS), row.Scripts)
		return nil
	}
	each := func(fn func(i int) error) (int, error) {
		var next atomic.Int64
		var firstErr error
		var once sync.Once
		var wg sync.WaitGroup
		next.Store(-1)
		for range stepParallel {
			wg.Go(func() {
				for {
					i := int(next.Add(1))
					if i >= ops {
						return
					}
					if err := fn(i); err != nil {
						once.Do(func() { firstErr = err })
						return
					}
				}
			})
		}
		wg.Wait()
		return ops, firstErr
	}

	// Upsert.
	if err := measure("store.Upsert", func() (int, error) {
		_, err := sd.seed(ctx, 0, ops, stepParallel, -1, func(string, ...any) {})
		return ops, err
	}); err != nil {
		return nil, err
	}
	// The scheduler's tick: ClaimDue, then the refresh tasks (perTask
	// renewals a task, the scheduler's default when 0), through the real
	// scheduler.
	client := asynq.NewClientFromRedisClient(rdb)
	sched, err := scheduler.New(scheduler.Options{Store: st, Enqueuer: client, Logger: zerolog.Nop(), PerTask: perTask})
	if err != nil {
		return nil, err
	}
	if err := measure("scheduler.Tick (ClaimDue + enqueue)", func() (int, error) {
		claimed := 0
		for claimed < ops {
			n, err := sched.Tick(ctx)
			if err != nil {
				return 0, err
			}
			if n == 0 {
				return 0, fmt.Errorf("claimed %d of %d", claimed, ops)
			}
			claimed += n
		}
		return claimed, nil
	}); err != nil {
		return nil, err
	}
	tasks, err := rdb.LLen(ctx, asynqPending).Result()
	if err != nil {
		return nil, err
	}
	progress("steps: the scheduler made %s tasks for %s renewals", thousands(tasks), thousands(int64(ops)))
	// asynq dequeue and done, with a handler that does nothing.
	if err := measure("asynq dequeue + done (no-op)", func() (int, error) {
		var done atomic.Int64
		srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{
			Concurrency: 20, Queues: jobs.Queues, StrictPriority: true, TaskCheckInterval: 50 * time.Millisecond,
			DelayedTaskCheckInterval: time.Second, LogLevel: asynq.ErrorLevel,
		})
		if err := srv.Start(asynq.HandlerFunc(func(context.Context, *asynq.Task) error { done.Add(1); return nil })); err != nil {
			return 0, err
		}
		err := waitFor(ctx, 5*time.Minute, 5*time.Millisecond, func() (bool, error) { return done.Load() >= tasks, nil })
		srv.Shutdown()
		return ops, err
	}); err != nil {
		return nil, err
	}
	// The worker's claim: the credentials of a refresh task in one
	// ClaimBatch, as jobs.HandleBatch does it.
	per := perTask
	if per <= 0 {
		per = scheduler.DefaultPerTask
	}
	eachBatch := func(fn func(lo, hi int) error) (int, error) {
		var next atomic.Int64
		var firstErr error
		var once sync.Once
		var wg sync.WaitGroup
		for range stepParallel {
			wg.Go(func() {
				for {
					hi := int(next.Add(int64(per)))
					lo := hi - per
					if lo >= ops {
						return
					}
					if err := fn(lo, min(hi, ops)); err != nil {
						once.Do(func() { firstErr = err })
						return
					}
				}
			})
		}
		wg.Wait()
		return ops, firstErr
	}
	owners := make([]string, ops)
	creds := make([]store.Credential, ops)
	if err := measure("store.ClaimBatch", func() (int, error) {
		return eachBatch(func(lo, hi int) error {
			owner := uuid.NewString()
			items := make([]store.Due, 0, hi-lo)
			for i := lo; i < hi; i++ {
				owners[i] = owner
				items = append(items, store.Due{ID: ids[i]})
			}
			got, err := st.ClaimBatch(ctx, items, owner, 10*time.Second)
			if err != nil {
				return err
			}
			for j, c := range got {
				if c.Err != nil {
					return c.Err
				}
				creds[lo+j] = c.Credential
			}
			return nil
		})
	}); err != nil {
		return nil, err
	}
	// The vendor call: the Halaxy adapter against the sandbox (both sides
	// run in this process, so its CPU counts the emulated vendor too).
	adapter, err := halaxy.New(halaxy.Options{BaseURL: sbURL + sandbox.HalaxyPath, UserAgent: benchUserAgent,
		HTTPClient: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}})
	if err != nil {
		return nil, err
	}
	tokens := make([]vendors.Token, ops)
	if err := measure("Halaxy token call (+sandbox)", func() (int, error) {
		return each(func(i int) error {
			t, err := adapter.Token(ctx, vendors.Credential{ID: ids[i], ClientID: creds[i].ClientID, ClientSecret: creds[i].ClientSecret})
			tokens[i] = t
			return err
		})
	}); err != nil {
		return nil, err
	}
	// The commit of a task's renewals with their events, in one
	// CommitRenewals, as jobs.HandleBatch does it.
	if err := measure("store.CommitRenewals", func() (int, error) {
		return eachBatch(func(lo, hi int) error {
			commits := make([]store.RenewalCommit, 0, hi-lo)
			for i := lo; i < hi; i++ {
				now := time.Now()
				exp := now.Add(15 * time.Minute)
				ev, err := events.New(events.TypeTokenRenewed, benchVendor, ids[i], now, events.TokenRenewed{
					Vendor: benchVendor, Credential: ids[i], Generation: 1, IssuedAt: now.UTC(), ExpiresAt: exp.UTC(),
					Fingerprint: tokens[i].AccessToken.Fingerprint(),
				})
				if err != nil {
					return err
				}
				commits = append(commits, store.RenewalCommit{ID: ids[i], Owner: owners[i], Generation: 0, Event: ev,
					Renewal: store.Renewal{
						Token:       store.Token{AccessToken: tokens[i].AccessToken, TokenType: "Bearer", IssuedAt: now, ExpiresAt: exp, RefreshToken: secret.Value{}},
						NextRefresh: now.Add(10 * time.Minute),
					}})
			}
			errs, err := st.CommitRenewals(ctx, commits)
			if err != nil {
				return err
			}
			return errors.Join(errs...)
		})
	}); err != nil {
		return nil, err
	}
	// The relay: every event of the outbox to JetStream.
	deleteStream, err := ensureStream(ctx, nc, cfg)
	if err != nil {
		return nil, err
	}
	defer deleteStream()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	var relayed atomic.Int64
	relay, err := events.NewRelay(events.RelayOptions{Redis: rdb, Prefix: cfg.Redis.Prefix, JetStream: js,
		SubjectPrefix: cfg.NATS.SubjectPrefix, Logger: zerolog.Nop(),
		OnPublished: func(events.Envelope, time.Duration) { relayed.Add(1) }})
	if err != nil {
		return nil, err
	}
	if err := measure("relay (XREAD, publish, XDEL)", func() (int, error) {
		rctx, rcancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- relay.Run(rctx) }()
		err := waitFor(ctx, 5*time.Minute, 5*time.Millisecond, func() (bool, error) { return relayed.Load() >= int64(ops), nil })
		rcancel()
		<-done
		return ops, err
	}); err != nil {
		return nil, err
	}
	return rows, nil
}

// scriptCommands names the commands the scripts of a renewal call (they
// are counted by INFO commandstats on their own as well as inside EVALSHA).
func scriptCommands() map[string]bool {
	names := []string{"exists", "hset", "hdel", "lpush", "rpoplpush", "zadd", "hget", "lrem", "zrem", "del", "incr",
		"expireat", "get", "set", "hmget", "zscore", "hgetall", "xadd", "zrangebyscore", "sadd", "sismember"}
	out := make(map[string]bool, len(names))
	for _, n := range names {
		out[n] = true
	}
	return out
}
