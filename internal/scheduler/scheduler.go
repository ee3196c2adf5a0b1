// Package scheduler decides when credentials are refreshed. The credential
// store's due index is the timer queue: the scheduler claims what is due
// (leasing each entry so that other replicas skip it and a lost job comes
// back), and enqueues one refresh task per (credential, generation) on the
// critical queue at once, rather than asking asynq to run it later: asynq
// keeps due times in whole seconds and moves them every few seconds, too
// coarse for tokens that live minutes (or, in tests, seconds).
//
// Any number of scheduler replicas may run: the due lease keeps them from
// doing the same work, and the store's generation fence makes a duplicate
// harmless (a single refresh's task id names its credential, generation
// and lease, so that a retried enqueue within one lease adds nothing).
// A periodic reconcile puts back any credential that lost its due entry
// (one replica per period does it). Due credentials are put in tasks of
// PerTask renewals, and no more are claimed while the queue holds
// MaxBacklog tasks: under overload the due index, not the queue, is where
// work waits, oldest first, and no lease runs out in the queue.
package scheduler

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/internal/tracing"
	"github.com/tokenrelay/tokenrelay/jobs"
)

// DueStore is what the scheduler needs of the credential store.
type DueStore interface {
	ClaimDue(ctx context.Context, now time.Time, limit int, lease time.Duration) ([]store.Due, error)
	Reconcile(ctx context.Context, now time.Time) (int, error)
	ReconcileTurn(ctx context.Context, period time.Duration) (bool, error)
}

// Enqueuer puts tasks on the queue (an *asynq.Client).
type Enqueuer interface {
	EnqueueContext(ctx context.Context, task *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error)
}

// Options configure a Scheduler. Zero values take the defaults given.
type Options struct {
	Store    DueStore
	Enqueuer Enqueuer
	Logger   zerolog.Logger
	// Clock defaults to time.Now.
	Clock func() time.Time
	// PollInterval is how often the due index is read (default 100ms).
	PollInterval time.Duration
	// ClaimLease is how long a claimed due entry is hidden from other
	// replicas; if its task is lost, the credential is due again after it
	// (default 10s).
	ClaimLease time.Duration
	// ReconcileEvery is how often every credential is checked for a due
	// entry (default 30s).
	ReconcileEvery time.Duration
	// Batch is the most due entries claimed at once (default 1000).
	Batch int
	// Parallel is how many enqueues run at once (default 16).
	Parallel int
	// PerTask is how many renewals go in one task (default 16; 1 enqueues
	// one jobs.Refresh task each). Batching shares asynq's cost per task.
	PerTask int
	// Backlog, when set, says how many refresh tasks wait in the queue
	// (AsynqBacklog reads asynq's), and the scheduler claims nothing more
	// while MaxBacklog of them wait. Under overload, due credentials then
	// wait in the due index, oldest first, rather than in the queue beyond
	// their lease (when a lease runs out, the credential is enqueued again,
	// and the duplicate adds to the overload). Nil: no limit.
	Backlog func(ctx context.Context) (int64, error)
	// MaxBacklog is the most refresh tasks left waiting in the queue when
	// Backlog is set (default 256: well under a second of work for two
	// workers, and enough to keep them busy between polls).
	MaxBacklog int
}

// AsynqBacklog returns an Options.Backlog that reads how many tasks are
// pending on an asynq queue: the length of asynq's pending list of the
// queue ("asynq:{<queue>}:pending"), one LLEN.
func AsynqBacklog(rdb redis.UniversalClient, queue string) func(ctx context.Context) (int64, error) {
	key := "asynq:{" + queue + "}:pending"
	return func(ctx context.Context) (int64, error) {
		n, err := rdb.LLen(ctx, key).Result()
		if err != nil {
			return 0, fmt.Errorf("scheduler: length of queue %s: %w", queue, err)
		}
		return n, nil
	}
}

// DefaultPerTask is Options.PerTask's default.
const DefaultPerTask = 16

// Scheduler enqueues refresh tasks for due credentials.
type Scheduler struct {
	o Options
}

// New fills the defaults of o and returns a Scheduler.
func New(o Options) (*Scheduler, error) {
	if o.Store == nil || o.Enqueuer == nil {
		return nil, errors.New("scheduler: needs a store and an enqueuer")
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.PollInterval <= 0 {
		o.PollInterval = 100 * time.Millisecond
	}
	if o.ClaimLease <= 0 {
		o.ClaimLease = 10 * time.Second
	}
	if o.ReconcileEvery <= 0 {
		o.ReconcileEvery = 30 * time.Second
	}
	if o.Batch <= 0 {
		o.Batch = 1000
	}
	if o.Parallel <= 0 {
		o.Parallel = 16
	}
	if o.PerTask <= 0 {
		o.PerTask = DefaultPerTask
	}
	if o.MaxBacklog <= 0 {
		o.MaxBacklog = 256
	}
	return &Scheduler{o: o}, nil
}

// Run schedules until ctx is done. Store errors are logged and retried; it
// returns nil when ctx ends.
func (s *Scheduler) Run(ctx context.Context) error {
	s.reconcile(ctx)
	poll := time.NewTicker(s.o.PollInterval)
	defer poll.Stop()
	reconcile := time.NewTicker(s.o.ReconcileEvery)
	defer reconcile.Stop()
	for {
		for {
			n, err := s.Tick(ctx)
			if err != nil && ctx.Err() == nil {
				s.o.Logger.Error().Err(err).Msg("scheduling due refreshes failed; will retry")
			}
			if n < s.o.Batch || err != nil {
				break // caught up, or the queue is full enough
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-reconcile.C:
			s.reconcile(ctx)
		case <-poll.C:
		}
	}
}

// reconcile walks every credential for a missing due entry, when it is
// this replica's turn: one replica does it per period (a little less than
// ReconcileEvery, so that the replica whose turn ends is not refused by its
// own last turn).
func (s *Scheduler) reconcile(ctx context.Context) {
	turn, err := s.o.Store.ReconcileTurn(ctx, s.o.ReconcileEvery-s.o.ReconcileEvery/10)
	if err != nil {
		if ctx.Err() == nil {
			s.o.Logger.Error().Err(err).Msg("reconcile failed; will retry")
		}
		return
	}
	if !turn {
		return // another replica reconciled within this period
	}
	n, err := s.o.Store.Reconcile(ctx, s.o.Clock())
	switch {
	case err != nil && ctx.Err() == nil:
		s.o.Logger.Error().Err(err).Msg("reconcile failed; will retry")
	case n > 0:
		s.o.Logger.Warn().Int("credentials", n).Msg("reconcile found credentials without a scheduled refresh; scheduled them now")
	}
}

// Tick claims one batch of due credentials and enqueues their refresh
// tasks. It returns how many were claimed: fewer than Options.Batch when
// fewer were due, or when the queue's backlog left room for fewer.
func (s *Scheduler) Tick(ctx context.Context) (int, error) {
	limit := s.o.Batch
	if s.o.Backlog != nil {
		waiting, err := s.o.Backlog(ctx)
		if err != nil {
			return 0, err
		}
		room := int64(s.o.MaxBacklog) - waiting
		if room <= 0 {
			return 0, nil
		}
		limit = int(min(int64(limit), room*int64(s.o.PerTask)))
	}
	claimedAt, now := time.Now(), s.o.Clock()
	due, err := s.o.Store.ClaimDue(ctx, now, limit, s.o.ClaimLease)
	if err != nil {
		return 0, fmt.Errorf("scheduler: claim due: %w", err)
	}
	if len(due) == 0 {
		return 0, nil
	}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		failed   int
	)
	sem := make(chan struct{}, s.o.Parallel)
	for start := 0; start < len(due); start += s.o.PerTask {
		group := due[start:min(start+s.o.PerTask, len(due))]
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := s.enqueue(ctx, group, claimedAt, now.Add(s.o.ClaimLease)); err != nil {
				mu.Lock()
				failed += len(group)
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		// The due lease brings these back; say so once per batch.
		s.o.Logger.Error().Err(firstErr).Int("failed", failed).Int("claimed", len(due)).
			Dur("retry_in", s.o.ClaimLease).Msg("could not enqueue some refreshes")
	}
	return len(due), nil
}

// enqueue puts the refresh of due credentials, claimed until leaseEnd, on
// the queue: one jobs.Refresh task for a single one, one jobs.RefreshBatch
// for several. Each renewal is a trace of its own, rooted here (from
// claimedAt): the claim and enqueue, then the worker's task, the vendor
// call, the commit and the publish.
//
// The due lease keeps replicas from enqueueing a renewal twice. A single
// refresh's task id names its lease too, not only the generation: when the
// lease runs out because the worker running the task was killed, asynq
// shows that task active, its id taken, until it recovers it one to two
// minutes later; a task id of the generation alone would refuse the new
// enqueue all that while, and a 30-second token would expire waiting.
func (s *Scheduler) enqueue(ctx context.Context, due []store.Due, claimedAt, leaseEnd time.Time) (err error) {
	var (
		task *asynq.Task
		opts []asynq.Option
	)
	items := make([]jobs.Refresh, len(due))
	spans := make([]trace.Span, len(due))
	// Attributes only on the spans the sampler keeps (tracing.Start).
	start := []trace.SpanStartOption{trace.WithNewRoot(), trace.WithSpanKind(trace.SpanKindProducer), trace.WithTimestamp(claimedAt)}
	for i, d := range due {
		sctx, span := tracing.Tracer().Start(context.WithoutCancel(ctx), "scheduler.enqueue", start...)
		if span.IsRecording() {
			span.SetAttributes(tracing.AttrCredential.String(d.ID), tracing.AttrGeneration.Int64(d.Generation))
		}
		spans[i] = span
		items[i] = jobs.Refresh{Credential: d.ID, Generation: d.Generation, Trace: tracing.Inject(sctx)}
	}
	defer func() {
		for _, span := range spans {
			tracing.Fail(span, err)
			span.End()
		}
	}()
	if len(due) == 1 {
		task, err = jobs.NewRefreshTaskOf(items[0])
		opts = append(opts, asynq.TaskID(leaseTaskID(due[0], leaseEnd)))
	} else {
		task, err = jobs.NewRefreshBatchTask(items)
	}
	if err != nil {
		return err
	}
	_, err = s.o.Enqueuer.EnqueueContext(ctx, task, opts...)
	if errors.Is(err, asynq.ErrTaskIDConflict) || errors.Is(err, asynq.ErrDuplicateTask) {
		return nil // enqueued already under this lease
	}
	if err != nil {
		return fmt.Errorf("scheduler: enqueue refresh of %d credential(s) from %s: %w", len(due), due[0].ID, err)
	}
	s.o.Logger.Debug().Int("credentials", len(due)).Str("first", due[0].ID).Msg("refresh enqueued")
	return nil
}

// leaseTaskID is the task id of the refresh of d under the due lease
// ending at leaseEnd.
func leaseTaskID(d store.Due, leaseEnd time.Time) string {
	return jobs.RefreshTaskID(d.ID, d.Generation) + ":" + strconv.FormatInt(leaseEnd.UnixMilli(), 10)
}
