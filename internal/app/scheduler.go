package app

import (
	"context"
	"fmt"
	"time"

	"github.com/hibiken/asynq"

	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/scheduler"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/jobs"
)

// RunScheduler runs the scheduler role until ctx ends: it adds the static
// credentials of the configuration to the store, enqueues refreshes (and
// key rotations, from each vendor's rotate_every) as they
// fall due, and relays the event outbox to JetStream. Any number of
// replicas may run at once.
func RunScheduler(ctx context.Context, env *Env) error {
	log := env.Logger.With().Str("role", "scheduler").Logger()
	if err := SyncCredentials(ctx, env); err != nil {
		return err
	}
	client := asynq.NewClientFromRedisClient(env.Redis)
	sc := env.Config.Scheduler
	sched, err := scheduler.New(scheduler.Options{
		Store: env.Store, Enqueuer: client, Logger: log, Clock: env.Clock,
		PollInterval:   time.Duration(sc.PollInterval),
		ClaimLease:     time.Duration(sc.ClaimLease),
		ReconcileEvery: time.Duration(sc.ReconcileEvery),
		Backlog:        scheduler.AsynqBacklog(env.Redis, jobs.QueueCritical),
	})
	if err != nil {
		return err
	}
	// Event counters are fed by the relay: only the active one publishes,
	// so each event is counted once across replicas.
	reg, eventMetrics := schedulerMetrics(env)
	relay, err := events.NewRelay(events.RelayOptions{
		Redis: env.Redis, Prefix: env.Config.Redis.Prefix, JetStream: env.JS,
		SubjectPrefix: env.Config.NATS.SubjectPrefix, Logger: log,
		OnPublished: eventMetrics.Observe, Keyring: env.Store.Keyring(),
	})
	if err != nil {
		return fmt.Errorf("app: relay: %w", err)
	}
	stopHTTP, err := serveSchedulerHTTP(env, reg, log) // scheduler.metrics_addr
	if err != nil {
		return err
	}
	defer stopHTTP()
	rotations, err := newRotationScheduler(env, log)
	if err != nil {
		return err
	}
	scheduledSyncs, err := newSyncSchedule(env, log)
	if err != nil {
		return err
	}
	log.Info().Msg("scheduler started")
	// The stream is set up in the background: until NATS answers, events
	// wait in the outbox. ensureStream ends only with ctx.
	go func() { _ = env.ensureStream(ctx) }()
	// The scheduler and the relay stop together: if one fails, the other
	// is stopped too and the failure is returned, not hidden until ctx ends.
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	runs := []func(context.Context) error{sched.Run, relay.Run, rotations.Run, scheduledSyncs.Run}
	errc := make(chan error, len(runs))
	for _, run := range runs {
		go func() {
			err := run(runCtx)
			cancel()
			errc <- err
		}()
	}
	var first error
	for range runs {
		if err := <-errc; err != nil && first == nil {
			first = err
		}
	}
	log.Info().Msg("scheduler stopped")
	return first
}

// SyncCredentials adds the configuration's static credentials to the store,
// updating a client id or secret that changed. Nothing is deleted: a
// credential removed from the file stays in the store.
func SyncCredentials(ctx context.Context, env *Env) error {
	for i, c := range env.Config.Credentials {
		res, err := env.Store.Upsert(ctx, store.NewCredential{ID: c.ID, Vendor: c.Vendor, ClientID: c.ClientID, Keys: store.Keys{
			ClientSecret: c.ClientSecret, PrivateKey: c.PrivateKey, KeyID: c.KeyID, APIKey: c.APIKey, RefreshToken: c.RefreshToken,
		}})
		if err != nil {
			return fmt.Errorf("app: add credentials[%d] (%s): %w", i, c.ID, err)
		}
		if res != store.Unchanged {
			env.Logger.Info().Str("credential", c.ID).Str("vendor", c.Vendor).Str("result", string(res)).Msg("static credential synced")
		}
	}
	return nil
}
