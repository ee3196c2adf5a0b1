package app

import (
	"context"
	"fmt"
	"net/http"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/tokenrelay/tokenrelay/internal/requests"
	"github.com/tokenrelay/tokenrelay/internal/webhooks"
	"github.com/tokenrelay/tokenrelay/jobs"
)

// webhookRelay is the worker's part of webhooks: the receiver on
// /webhooks/{vendor}, the poll task's handler, and the poller that falls
// back to polling where webhooks are off or silent.
type webhookRelay struct {
	receiver *webhooks.Receiver
	poller   *webhooks.Poller
	metrics  *webhooks.Metrics
	enqueuer *asynq.Client
}

// newWebhookRelay builds the webhook relay of a worker; sub submits the
// request jobs of fetches, and polls are incremental syncs started with
// sy, all through the shared rate budget. A vendor that accepts webhooks
// unverified is warned about.
func newWebhookRelay(env *Env, sub *requests.Submitter, sy webhooks.SyncStarter, log zerolog.Logger) (*webhookRelay, error) {
	log = log.With().Str("component", "webhooks").Logger()
	vendors, unverified, err := webhooks.VendorsFromConfig(env.Config.Vendors)
	if err != nil {
		return nil, err
	}
	for _, name := range unverified {
		log.Warn().Str("vendor", name).
			Msg("webhooks of this vendor are accepted WITHOUT verification (verify: none, accept_unverified: true): anyone who can reach the worker can post events")
	}
	fetcher := submitFetcher{sub: sub}
	m := webhooks.NewMetrics()
	rcv, err := webhooks.NewReceiver(webhooks.Deps{
		Vendors: vendors, JetStream: env.JS, Connected: env.NATS.IsConnected, Redis: env.Redis,
		KeyPrefix: env.Config.Redis.Prefix, SubjectPrefix: env.Config.NATS.SubjectPrefix,
		Fetcher: fetcher, Clock: env.Clock, Logger: log, Metrics: m,
	})
	if err != nil {
		return nil, err
	}
	enq := asynq.NewClientFromRedisClient(env.Redis)
	poller, err := webhooks.NewPoller(webhooks.PollerDeps{
		Targets: webhooks.PollTargetsFromConfig(env.Config.Vendors, vendors),
		Redis:   env.Redis, KeyPrefix: env.Config.Redis.Prefix,
		JetStream: env.JS, SubjectPrefix: env.Config.NATS.SubjectPrefix,
		Enqueuer: enq, Queue: jobs.QueueLow, Syncs: sy, Clock: env.Clock, Logger: log, Metrics: m,
	})
	if err != nil {
		return nil, err
	}
	return &webhookRelay{receiver: rcv, poller: poller, metrics: m, enqueuer: enq}, nil
}

// register adds the poll task's handler to mux.
func (w *webhookRelay) register(mux *asynq.ServeMux) { jobs.Handle(mux, w.poller.HandlePoll) }

// registerMetrics registers the webhook and polling metrics.
func (w *webhookRelay) registerMetrics(reg prometheus.Registerer) error {
	if err := reg.Register(w.metrics); err != nil {
		return fmt.Errorf("app: webhook metrics: %w", err)
	}
	return nil
}

// mount serves POST /webhooks/{vendor} (and GET, for Redox's endpoint
// verification) in front of next.
func (w *webhookRelay) mount(next http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST /webhooks/{vendor}", w.receiver)
	mux.Handle("GET /webhooks/{vendor}", w.receiver)
	mux.Handle("/", next)
	return mux
}

// start runs the poller until the returned stop is called; stop also
// finishes remembering the deliveries relayed (call it after the HTTP
// server stopped).
func (w *webhookRelay) start(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = w.poller.Run(ctx) }()
	return func() {
		cancel()
		<-done
		w.receiver.Close()
		_ = w.enqueuer.Close()
	}
}

// submitFetcher makes each fetch a request job.
type submitFetcher struct{ sub *requests.Submitter }

var _ webhooks.Fetcher = submitFetcher{}

// Fetch implements webhooks.Fetcher.
func (f submitFetcher) Fetch(ctx context.Context, x webhooks.Fetch) error {
	r := jobs.NewRequest(x.Credential, x.Method, x.Path)
	r.Vendor, r.Query, r.IdempotencyKey = x.Vendor, jobs.Query(x.Query), x.IdempotencyKey
	if len(x.Batch) <= 64 {
		r.Batch = x.Batch
	}
	if _, err := f.sub.Submit(ctx, r); err != nil {
		return fmt.Errorf("app: submit fetch: %w", err)
	}
	return nil
}
