package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/tokenrelay/tokenrelay/jobs"
)

// refResult is the bare asynq reference: no-op tasks on the same Redis,
// with the worker's queue configuration and concurrency.
type refResult struct {
	Tasks       int
	Servers     int
	Concurrency int
	EnqueueRate float64 // tasks/s, enqueued by refEnqueuers goroutines
	ProcessRate float64 // tasks/s from first to last completion
	Elapsed     time.Duration
	CPU         cpuShare
}

// refEnqueuers is how many goroutines enqueue the reference tasks.
const refEnqueuers = 32

// runReference enqueues n no-op tasks on the critical queue of a flushed
// database, then starts servers asynq servers configured as the worker's
// (app.RunWorker: same queues, strict priority, task check interval and
// concurrency) and measures how fast they are processed.
func runReference(ctx context.Context, redisURL string, n, servers, concurrency int, taskCheck time.Duration, progress func(string, ...any)) (refResult, error) {
	res := refResult{Tasks: n, Servers: servers, Concurrency: concurrency}
	opt, err := redis.ParseURL(redisURL)
	if err != nil {
		return res, err
	}
	admin := redis.NewClient(opt)
	defer admin.Close()
	if err := admin.FlushDB(ctx).Err(); err != nil {
		return res, fmt.Errorf("reference: flush: %w", err)
	}

	// Enqueue.
	client := asynq.NewClientFromRedisClient(admin)
	var next atomic.Int64
	var enqErr error
	var errOnce sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	for range refEnqueuers {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(n) || ctx.Err() != nil {
					return
				}
				task := asynq.NewTask("bench:noop", nil, asynq.Queue(jobs.QueueCritical))
				if _, err := client.EnqueueContext(ctx, task); err != nil {
					errOnce.Do(func() { enqErr = err })
					return
				}
			}
		})
	}
	wg.Wait()
	if enqErr != nil {
		return res, fmt.Errorf("reference: enqueue: %w", enqErr)
	}
	res.EnqueueRate = rate(n, time.Since(start))
	progress("reference: enqueued %s no-op tasks at %.0f/s", thousands(int64(n)), res.EnqueueRate)

	// Process.
	var done atomic.Int64
	var first, last atomic.Int64 // unix ns
	handler := asynq.HandlerFunc(func(context.Context, *asynq.Task) error {
		now := time.Now().UnixNano()
		first.CompareAndSwap(0, now)
		last.Store(now)
		done.Add(1)
		return nil
	})
	var srvs []*asynq.Server
	var clients []*redis.Client
	cpu0 := takeCPU(ctx, admin)
	for range servers {
		rc := redis.NewClient(opt) // each worker has its own connections, as in the pipeline
		clients = append(clients, rc)
		srv := asynq.NewServerFromRedisClient(rc, asynq.Config{
			Concurrency:              concurrency,
			Queues:                   jobs.Queues,
			StrictPriority:           true,
			TaskCheckInterval:        taskCheck,
			DelayedTaskCheckInterval: time.Second,
			ShutdownTimeout:          15 * time.Second,
			LogLevel:                 asynq.ErrorLevel,
		})
		if err := srv.Start(handler); err != nil {
			return res, fmt.Errorf("reference: start server: %w", err)
		}
		srvs = append(srvs, srv)
	}
	err = waitFor(ctx, 10*time.Minute, 20*time.Millisecond, func() (bool, error) { return done.Load() >= int64(n), nil })
	cpu1 := takeCPU(ctx, admin)
	for _, s := range srvs {
		s.Shutdown()
	}
	for _, c := range clients {
		_ = c.Close()
	}
	if err != nil {
		return res, fmt.Errorf("reference: %d of %d tasks processed: %w", done.Load(), n, err)
	}
	res.Elapsed = time.Duration(last.Load() - first.Load())
	res.ProcessRate = rate(n-1, res.Elapsed)
	res.CPU = cpu1.since(cpu0)
	if err := admin.FlushDB(ctx).Err(); err != nil {
		return res, fmt.Errorf("reference: flush: %w", err)
	}
	return res, nil
}
