package app

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/tokenrelay/tokenrelay/internal/budget"
	"github.com/tokenrelay/tokenrelay/internal/requests"
	"github.com/tokenrelay/tokenrelay/internal/web/admin"
	"github.com/tokenrelay/tokenrelay/jobs"
)

// requestJobs is the worker's part of request jobs: the handler of its
// asynq tasks, the NATS submission service, the feeder (active in one
// worker at a time), and what the admin API uses.
type requestJobs struct {
	env           *Env
	log           zerolog.Logger
	budget        *budget.Budget
	handler       *requests.Handler
	sub           *requests.Submitter
	batches       *requests.Batches
	metrics       *requests.Metrics
	budgetMetrics *budget.Metrics
	// syncs take the outcomes of their page requests from handler.
	syncs *syncJobs
}

// newRequestJobs builds the request jobs of a worker. refresh is the
// worker's refresh handler: a 401 or a token close to expiry goes through
// its fenced refresh.
func newRequestJobs(env *Env, refresh *jobs.RefreshHandler, hc *http.Client, log zerolog.Logger) (*requestJobs, error) {
	log = log.With().Str("component", "requests").Logger()
	prefix := env.Config.Redis.Prefix
	bm := budget.NewMetrics()
	// Token-endpoint calls and refreshes never consult the budget (the
	// vendors count API calls against their windows), so they can never
	// wait behind bulk requests and nothing is kept back from bulk for
	// them: no Priority reserve, here and in the feeder.
	b := budget.New(env.Redis, budget.Options{Prefix: prefix, Clock: env.BudgetClock, Metrics: bm, PriorityReserve: noReserve})
	sub, err := requests.NewSubmitter(requests.SubmitterOptions{Redis: env.Redis, Prefix: prefix,
		Credentials: env.Store, Vendors: env.Config.Vendors, Clock: env.Clock, Keyring: env.Store.Keyring()})
	if err != nil {
		return nil, err
	}
	m := requests.NewMetrics()
	objects := &lazyObjects{js: env.JS, bucket: requestsBucket(env)}
	sy, err := newSyncJobs(env, sub, objects, log)
	if err != nil {
		return nil, err
	}
	h, err := requests.NewHandler(requests.HandlerDeps{
		Redis: env.Redis, Prefix: prefix, Credentials: env.Store, Refresh: refresh.Handle, Budget: b,
		Vendors: env.Config.Vendors, HTTPClient: hc, Objects: objects,
		Bucket: requestsBucket(env), Metrics: m, Logger: log, Clock: env.Clock, Keyring: env.Store.Keyring(),
		Pages: sy.runner,
	})
	if err != nil {
		return nil, err
	}
	return &requestJobs{env: env, log: log, budget: b, handler: h, sub: sub, syncs: sy,
		batches: requests.NewBatches(env.Redis, prefix, env.Clock), metrics: m, budgetMetrics: bm}, nil
}

// noReserve is the budget's and the feeder's PriorityReserve and
// BulkReserve: none (see newRequestJobs).
const noReserve = -1

// requestsBucket is the object store bucket of large answer bodies: one
// per event stream.
func requestsBucket(env *Env) string {
	stream := env.Config.NATS.Stream
	if stream == "" {
		stream = "TOKENRELAY"
	}
	return strings.ToUpper(stream) + "_REQUESTS"
}

// register adds the request task's handler to mux.
func (r *requestJobs) register(mux *asynq.ServeMux) { mux.Handle(jobs.TypeVendorRequest, r.handler) }

// jobs is what the admin API serves.
func (r *requestJobs) jobs() admin.RequestJobs {
	return requests.Jobs{Submitter: r.sub, Batches: r.batches}
}

// registerMetrics registers the request jobs' metrics on the worker's
// registry.
func (r *requestJobs) registerMetrics(reg prometheus.Registerer) error {
	if err := reg.Register(r.metrics); err != nil {
		return fmt.Errorf("app: request metrics: %w", err)
	}
	for _, c := range r.budgetMetrics.Collectors() {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("app: budget metrics: %w", err)
		}
	}
	return nil
}

// start runs the feeder and the NATS submission service until stop.
func (r *requestJobs) start(ctx context.Context) (stop func(), err error) {
	svc, err := requests.NewService(r.env.NATS, r.sub, requests.ServiceOptions{
		SubjectPrefix: r.env.Config.NATS.SubjectPrefix, Logger: r.log, InboxPrefix: r.env.Config.NATS.InboxPrefix})
	if err != nil {
		return nil, fmt.Errorf("app: request submission service: %w", err)
	}
	feeder, err := requests.NewFeeder(requests.FeederOptions{Redis: r.env.Redis, Prefix: r.env.Config.Redis.Prefix, BulkReserve: noReserve,
		Budget: r.budget, Vendors: r.env.Config.Vendors, Enqueuer: asynq.NewClientFromRedisClient(r.env.Redis),
		Logger: r.log, Clock: r.env.Clock, Keyring: r.env.Store.Keyring()})
	if err != nil {
		_ = svc.Stop()
		return nil, err
	}
	fctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = feeder.Run(fctx) }()
	return func() {
		cancel()
		<-done
		_ = svc.Stop()
		closeCtx, c := context.WithTimeout(context.Background(), 2*time.Second)
		defer c()
		_ = r.budget.Close(closeCtx)
	}, nil
}

// lazyObjects opens (creating it if needed) the object store bucket on first
// use, so that a worker starts while NATS is down.
type lazyObjects struct {
	js     jetstream.JetStream
	bucket string
	mu     sync.Mutex
	store  jetstream.ObjectStore
}

func (l *lazyObjects) PutBytes(ctx context.Context, name string, data []byte) (*jetstream.ObjectInfo, error) {
	l.mu.Lock()
	if l.store == nil {
		objects, err := l.js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
			Bucket: l.bucket, Description: "tokenrelay: answer bodies of request jobs too large for their event",
			TTL: 7 * 24 * time.Hour,
		})
		if err != nil {
			l.mu.Unlock()
			return nil, fmt.Errorf("app: object store %s: %w", l.bucket, err)
		}
		l.store = objects
	}
	objects := l.store
	l.mu.Unlock()
	return objects.PutBytes(ctx, name, data)
}
