package rotation

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/tokenrelay/tokenrelay/internal/store"
)

// SchedulerStore is what the Scheduler needs of the credential store.
type SchedulerStore interface {
	ClaimDueRotations(ctx context.Context, now time.Time, limit int, lease time.Duration) ([]string, error)
	ScheduleRotations(ctx context.Context, ids []string, at time.Time) (int, error)
	Scan(ctx context.Context, fn func(store.Summary) error) error
	GetRotation(ctx context.Context, id string) (store.Rotation, error)
}

// SchedulerOptions configure a Scheduler.
type SchedulerOptions struct {
	Store SchedulerStore
	// Enqueue hands a due rotation to the queue (the key:rotate job).
	// Required.
	Enqueue func(ctx context.Context, credential string) error
	// RotateEvery is a vendor's rotate_every by vendor name; 0 means its
	// credentials are not rotated on a schedule. Required.
	RotateEvery func(vendor string) time.Duration
	// PollInterval is how often due rotations are looked for. Default 5s.
	PollInterval time.Duration
	// ReconcileEvery is how often every credential of a rotating vendor is
	// made sure to have a next rotation (the first one rotate_every after
	// it is first seen). Default 10m; the first pass runs at start.
	ReconcileEvery time.Duration
	// ClaimLease is how long a claimed rotation is not handed out again;
	// a job that gets lost brings it back after. Default 10m.
	ClaimLease time.Duration
	// Running lists the credentials whose rotation job the queue shows
	// running, whether the worker running it is alive or not. A worker
	// that dies leaves its job so until the queue notices (asynq: one to
	// two minutes); with Resume, a rotation among them whose hold has
	// lapsed is resumed at the next poll instead. Default nil: the queue's
	// own recovery alone.
	Running func(ctx context.Context) ([]string, error)
	// Resume queues the resumption of a rotation whose holder died; a
	// resumption queued already is success. Required with Running.
	Resume func(ctx context.Context, rot store.Rotation) error
	// Batch is how many due rotations are claimed at once. Default 100.
	Batch  int
	Logger zerolog.Logger
	// Clock defaults to time.Now.
	Clock func() time.Time
}

// Scheduler enqueues key rotations as they fall due. Any number of
// replicas may run: a due rotation is claimed by one.
type Scheduler struct{ o SchedulerOptions }

// NewScheduler fills the defaults of o and returns a Scheduler.
func NewScheduler(o SchedulerOptions) (*Scheduler, error) {
	if o.Store == nil || o.Enqueue == nil || o.RotateEvery == nil {
		return nil, errors.New("rotation: scheduler needs a store, an enqueue function and the vendors' rotate_every")
	}
	if o.Running != nil && o.Resume == nil {
		return nil, errors.New("rotation: scheduler options: Running needs Resume")
	}
	if o.PollInterval <= 0 {
		o.PollInterval = 5 * time.Second
	}
	if o.ReconcileEvery <= 0 {
		o.ReconcileEvery = 10 * time.Minute
	}
	if o.ClaimLease <= 0 {
		o.ClaimLease = 10 * time.Minute
	}
	if o.Batch <= 0 {
		o.Batch = 100
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	return &Scheduler{o: o}, nil
}

// Run schedules until ctx ends; it returns nil then. Failures of Redis or
// the queue are logged and tried again at the next tick.
func (s *Scheduler) Run(ctx context.Context) error {
	poll := time.NewTicker(s.o.PollInterval)
	defer poll.Stop()
	reconcile := time.NewTicker(s.o.ReconcileEvery)
	defer reconcile.Stop()
	if _, err := s.Reconcile(ctx); err != nil && ctx.Err() == nil {
		s.o.Logger.Warn().Err(err).Msg("rotation: reconcile failed")
	}
	for {
		if _, err := s.Tick(ctx); err != nil && ctx.Err() == nil {
			s.o.Logger.Warn().Err(err).Msg("rotation: enqueue due rotations failed")
		}
		if _, err := s.ResumeOrphans(ctx); err != nil && ctx.Err() == nil {
			s.o.Logger.Warn().Err(err).Msg("rotation: resume orphaned rotations failed")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-poll.C:
		case <-reconcile.C:
			if _, err := s.Reconcile(ctx); err != nil && ctx.Err() == nil {
				s.o.Logger.Warn().Err(err).Msg("rotation: reconcile failed")
			}
		}
	}
}

// Tick enqueues the rotations due now and returns how many.
func (s *Scheduler) Tick(ctx context.Context) (int, error) {
	n := 0
	for {
		ids, err := s.o.Store.ClaimDueRotations(ctx, s.o.Clock(), s.o.Batch, s.o.ClaimLease)
		if err != nil {
			return n, err
		}
		for _, id := range ids {
			if err := s.o.Enqueue(ctx, id); err != nil {
				return n, fmt.Errorf("rotation: enqueue %s: %w", id, err)
			}
			n++
		}
		if len(ids) < s.o.Batch {
			return n, nil
		}
	}
}

// ResumeOrphans queues the resumption of every rotation whose job is
// running (Options.Running) while its hold has lapsed: its holder died,
// since a live one renews the hold every third of it. It returns how many
// it queued.
func (s *Scheduler) ResumeOrphans(ctx context.Context) (int, error) {
	if s.o.Running == nil {
		return 0, nil
	}
	ids, err := s.o.Running(ctx)
	if err != nil {
		return 0, fmt.Errorf("rotation: running rotations: %w", err)
	}
	n := 0
	for _, id := range ids {
		rot, err := s.o.Store.GetRotation(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return n, fmt.Errorf("rotation: resume %s: %w", id, err)
		}
		if rot.Step.Finished() || rot.LeaseUntil.After(s.o.Clock()) {
			continue
		}
		if err := s.o.Resume(ctx, rot); err != nil {
			return n, fmt.Errorf("rotation: resume %s: %w", id, err)
		}
		s.o.Logger.Info().Str("credential", id).Str("rotation", rot.ID).Str("step", string(rot.Step)).
			Time("hold_lapsed", rot.LeaseUntil).Msg("rotation: its holder is gone; resuming it")
		n++
	}
	return n, nil
}

// Reconcile gives every credential of a vendor that rotates on a schedule,
// and is not revoked, a next rotation when it has none, and returns how
// many it scheduled.
func (s *Scheduler) Reconcile(ctx context.Context) (int, error) {
	now := s.o.Clock()
	byEvery := map[time.Duration][]string{}
	added := 0
	flush := func() error {
		for every, ids := range byEvery {
			n, err := s.o.Store.ScheduleRotations(ctx, ids, now.Add(every))
			if err != nil {
				return err
			}
			added += n
		}
		clear(byEvery)
		return nil
	}
	pending := 0
	err := s.o.Store.Scan(ctx, func(sum store.Summary) error {
		every := s.o.RotateEvery(sum.Vendor)
		if every <= 0 || sum.State == store.StateRevoked {
			return nil
		}
		byEvery[every] = append(byEvery[every], sum.ID)
		if pending++; pending >= 1000 {
			pending = 0
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return added, fmt.Errorf("rotation: reconcile: %w", err)
	}
	return added, nil
}
