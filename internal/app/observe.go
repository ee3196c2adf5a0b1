package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/hibiken/asynq"
	asynqmetrics "github.com/hibiken/asynq/x/metrics"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/internal/metrics"
	"github.com/tokenrelay/tokenrelay/internal/web/httpserver"
	"github.com/tokenrelay/tokenrelay/internal/web/websession"
)

// OutboxStuckAfter is how long the oldest event may wait in the outbox
// before /readyz says the outbox is stuck (no relay running, or none
// reaching NATS). A healthy relay publishes within milliseconds, and a
// lease hand-over takes seconds.
const OutboxStuckAfter = 2 * time.Minute

// vendorNames lists the configured vendor instances, the bounded set of
// vendor label values.
func vendorNames(env *Env) []string {
	names := make([]string, 0, len(env.Config.Vendors))
	for name := range env.Config.Vendors {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// workerRegistry is the worker's /metrics registry: Go and process metrics,
// the credentials read from the store, the outbox, and asynq's queues. The
// caller registers the metrics of the packages it wires (budget, request
// jobs, webhooks) on it too.
func workerRegistry(env *Env) (*prometheus.Registry, error) {
	reg := metrics.NewRegistry()
	creds, err := metrics.NewCredentials(metrics.CredentialsOptions{Store: env.Store, Vendors: vendorNames(env), Clock: env.Clock,
		PerVendorOnly: env.Config.HTTP.CredentialMetrics == config.CredentialMetricsPerVendor})
	if err != nil {
		return nil, fmt.Errorf("app: metrics: %w", err)
	}
	if err := errors.Join(
		reg.Register(creds),
		reg.Register(metrics.NewOutbox(env.Redis, env.Config.Redis.Prefix, env.Clock)),
		reg.Register(asynqmetrics.NewQueueMetricsCollector(asynq.NewInspectorFromRedisClient(env.Redis))),
	); err != nil {
		return nil, fmt.Errorf("app: metrics: %w", err)
	}
	if env.replicaShortfalls != nil {
		if err := reg.Register(env.replicaShortfalls); err != nil {
			return nil, fmt.Errorf("app: metrics: %w", err)
		}
	}
	return reg, nil
}

// newReplicaShortfalls is tokenrelay_store_replica_ack_shortfalls_total:
// the writes that fence vendor calls (store.Replication) that fewer
// replicas than redis.min_replica_acks acknowledged in time, by operation.
// Each is a renewal (or rotation step) put off, never a vendor call made
// on an unsafe claim; a steady rise means a replica is down or far behind.
func newReplicaShortfalls() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metrics.Namespace, Name: "store_replica_ack_shortfalls_total",
		Help: "Writes that fence vendor calls (claim, commit_renewal, rotation steps) acknowledged by fewer replicas than redis.min_replica_acks within redis.replica_ack_timeout; not acted on, tried again later.",
	}, []string{"op"})
}

// readyHandler answers /readyz: 200 when Redis answers, NATS is connected
// and the outbox is not stuck; else 503 naming each problem.
func readyHandler(env *Env) http.Handler {
	outbox := metrics.NewOutbox(env.Redis, env.Config.Redis.Prefix, env.Clock)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		var problems []error
		if err := env.Redis.Ping(ctx).Err(); err != nil {
			problems = append(problems, fmt.Errorf("redis: %w", err))
		} else if err := outbox.Stuck(ctx, OutboxStuckAfter); err != nil {
			problems = append(problems, err)
		}
		if !env.NATS.IsConnected() {
			problems = append(problems, errors.New("nats: not connected"))
		}
		if err := errors.Join(problems...); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
}

func healthHandler(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) }

// schedulerMetrics are the scheduler's metrics: the event counters fed by
// its relay, and the outbox.
func schedulerMetrics(env *Env) (*prometheus.Registry, *metrics.Events) {
	reg := metrics.NewRegistry()
	evm := metrics.NewEvents(metrics.EventsOptions{Vendors: vendorNames(env)})
	reg.MustRegister(evm, metrics.NewOutbox(env.Redis, env.Config.Redis.Prefix, env.Clock))
	return reg, evm
}

// serveSchedulerHTTP serves /metrics, /healthz and /readyz on
// scheduler.metrics_addr until stop is called; with no address it does
// nothing.
func serveSchedulerHTTP(env *Env, reg *prometheus.Registry, log zerolog.Logger) (stop func(), err error) {
	addr := env.Config.Scheduler.MetricsAddr
	if addr == "" {
		return func() {}, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("app: scheduler.metrics_addr: listen on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metricsAuth(env, websession.NewThrottle(websession.ThrottleOptions{Now: env.Clock}), metrics.Handler(reg)))
	mux.HandleFunc("GET /healthz", healthHandler)
	mux.Handle("GET /readyz", readyHandler(env))
	hs := httpserver.New(httpserver.CheckPath(mux), httpserver.Timeouts{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error().Err(err).Msg("scheduler HTTP server stopped")
		}
	}()
	log.Info().Str("http", ln.Addr().String()).Msg("scheduler serves /metrics, /healthz and /readyz")
	return func() {
		shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(shutCtx)
		<-done
	}, nil
}
