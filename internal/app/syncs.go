package app

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/tokenrelay/tokenrelay/adminclient"
	"github.com/tokenrelay/tokenrelay/internal/metrics"
	"github.com/tokenrelay/tokenrelay/internal/requests"
	"github.com/tokenrelay/tokenrelay/internal/syncs"
	"github.com/tokenrelay/tokenrelay/internal/web/admin"
	"github.com/tokenrelay/tokenrelay/internal/web/operator"
	"github.com/tokenrelay/tokenrelay/jobs"
)

// syncJobs is the worker's part of syncs: the runner that takes the
// outcomes of their page requests, and the NATS start service.
type syncJobs struct {
	env     *Env
	log     zerolog.Logger
	runner  *syncs.Runner
	metrics *syncs.Metrics
}

// newSyncJobs builds the syncs of a worker on its request submitter; large
// pages go to objects, the request jobs' bucket.
func newSyncJobs(env *Env, sub *requests.Submitter, objects syncs.Objects, log zerolog.Logger) (*syncJobs, error) {
	log = log.With().Str("component", "syncs").Logger()
	m := syncs.NewMetrics()
	c := env.Config.Syncs
	r, err := syncs.New(syncs.Deps{Redis: env.Redis, Prefix: env.Config.Redis.Prefix, Submitter: sub, Credentials: env.Store,
		Vendors: env.Config.Vendors, Keyring: env.Store.Keyring(), Objects: objects, Bucket: requestsBucket(env),
		MaxPages: c.MaxPages, Overlap: time.Duration(c.Overlap), Metrics: m, Logger: log, Clock: env.Clock})
	if err != nil {
		return nil, fmt.Errorf("app: syncs: %w", err)
	}
	return &syncJobs{env: env, log: log, runner: r, metrics: m}, nil
}

// registerMetrics registers the sync counters and the running-syncs gauge.
func (s *syncJobs) registerMetrics(reg prometheus.Registerer) error {
	for _, c := range append(s.metrics.Collectors(), metrics.NewSyncs(s.runner)) {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("app: sync metrics: %w", err)
		}
	}
	return nil
}

// start runs the NATS start service until stop.
func (s *syncJobs) start() (stop func(), err error) {
	svc, err := syncs.NewService(s.env.NATS, s.runner, requests.ServiceOptions{
		SubjectPrefix: s.env.Config.NATS.SubjectPrefix, Logger: s.log, InboxPrefix: s.env.Config.NATS.InboxPrefix})
	if err != nil {
		return nil, fmt.Errorf("app: sync start service: %w", err)
	}
	return func() { _ = svc.Stop() }, nil
}

// admin is what the admin API serves.
func (s *syncJobs) admin() admin.SyncJobs { return syncAdmin{s.runner} }

// syncAdmin adapts the runner to the admin API.
type syncAdmin struct{ r *syncs.Runner }

var (
	_ admin.SyncJobs = syncAdmin{}
	_ operator.Syncs = syncAdmin{} // the operator pages list syncs through the admin API's dependency
)

func (a syncAdmin) List(ctx context.Context, limit int) ([]adminclient.SyncStatus, error) {
	return a.r.List(ctx, limit)
}

func (a syncAdmin) Start(ctx context.Context, s jobs.Sync) (jobs.Sync, error) {
	return a.r.Start(ctx, s)
}
func (a syncAdmin) Decode(body []byte) (jobs.Sync, error) { return syncs.DecodeSync(body) }
func (a syncAdmin) Status(ctx context.Context, vendor, credential, id string) (adminclient.SyncStatus, error) {
	return a.r.Status(ctx, vendor, credential, id)
}
func (a syncAdmin) Cancel(ctx context.Context, vendor, credential, id string) (adminclient.SyncStatus, error) {
	return a.r.Cancel(ctx, vendor, credential, id)
}

// newSyncSchedule builds the scheduler's starter of the configured
// scheduled syncs (config syncs.scheduled).
func newSyncSchedule(env *Env, log zerolog.Logger) (*syncs.Schedule, error) {
	log = log.With().Str("component", "syncs").Logger()
	sub, err := requests.NewSubmitter(requests.SubmitterOptions{Redis: env.Redis, Prefix: env.Config.Redis.Prefix,
		Credentials: env.Store, Vendors: env.Config.Vendors, Clock: env.Clock, Keyring: env.Store.Keyring()})
	if err != nil {
		return nil, err
	}
	c := env.Config.Syncs
	r, err := syncs.New(syncs.Deps{Redis: env.Redis, Prefix: env.Config.Redis.Prefix, Submitter: sub, Credentials: env.Store,
		Vendors: env.Config.Vendors, Keyring: env.Store.Keyring(), MaxPages: c.MaxPages, Overlap: time.Duration(c.Overlap),
		Logger: log, Clock: env.Clock})
	if err != nil {
		return nil, fmt.Errorf("app: syncs: %w", err)
	}
	return syncs.NewSchedule(syncs.ScheduleOptions{Starter: r, Credentials: env.Store, Entries: c.Scheduled,
		Clock: env.Clock, Logger: log})
}
