package app

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/tokenrelay/tokenrelay/internal/budget"
	"github.com/tokenrelay/tokenrelay/internal/metrics"
	"github.com/tokenrelay/tokenrelay/internal/reseal"
	"github.com/tokenrelay/tokenrelay/internal/rotation"
	"github.com/tokenrelay/tokenrelay/internal/tokenservice"
	"github.com/tokenrelay/tokenrelay/internal/web/admin"
	"github.com/tokenrelay/tokenrelay/internal/web/dashboard"
	"github.com/tokenrelay/tokenrelay/internal/web/httpserver"
	"github.com/tokenrelay/tokenrelay/internal/web/operator"
	"github.com/tokenrelay/tokenrelay/internal/web/websession"
	"github.com/tokenrelay/tokenrelay/jobs"
	"github.com/tokenrelay/tokenrelay/vendors/redox"
)

// WorkerOptions tune the worker role. Zero values take the defaults given.
type WorkerOptions struct {
	// Concurrency is how many tasks run at once (default 20: the work is
	// mostly waiting on vendors).
	Concurrency int
	// TaskCheckInterval is how often an idle worker looks for new tasks;
	// default 50ms. A sync has one page in flight, so each page waits up
	// to this long for a worker: at asynq's own default (1s) a sync used
	// 22.6% of a 500-per-minute account, at 10ms 99.2% (bench/syncs,
	// BENCHMARKS.md). The cost is an idle worker's polls of Redis.
	TaskCheckInterval time.Duration
	// HTTPClient is used for vendor calls (nil: a default).
	HTTPClient *http.Client
	// OnListen, if set, is told the HTTP server's address once it listens.
	OnListen func(addr net.Addr)
}

// RunWorker runs the worker role until ctx ends: the asynq server on the
// critical, default and low queues, the token service on NATS, and the HTTP
// server (health, the JWKS of Redox signing keys, and the admin API and the
// operator pages under /ui/ when http.admin_token is set). On
// shutdown, tasks in flight finish (a vendor call already made is stored).
func RunWorker(ctx context.Context, env *Env, o WorkerOptions) error {
	log := env.Logger.With().Str("role", "worker").Logger()
	if o.Concurrency <= 0 {
		o.Concurrency = 20
	}
	vends, err := BuildVendors(env.Config, o.HTTPClient)
	if err != nil {
		return err
	}
	// The worker's /metrics; register the metrics of what is wired below on it.
	reg, err := workerRegistry(env)
	if err != nil {
		return err
	}
	refresh, err := newRefreshHandler(env, vends, reg, log)
	if err != nil {
		return err
	}
	mux := asynq.NewServeMux()
	jobs.Handle(mux, refresh.Handle)
	jobs.Handle(mux, refresh.HandleBatch)
	rot, err := newRotator(env, o.HTTPClient, log)
	if err != nil {
		return err
	}
	jobs.Handle(mux, (&jobs.RotateHandler{Rotator: rot, Logger: log}).Handle)
	reqs, err := newRequestJobs(env, refresh, o.HTTPClient, log)
	if err != nil {
		return err
	}
	reqs.register(mux)
	if err := reqs.registerMetrics(reg); err != nil {
		return err
	}
	if err := reqs.syncs.registerMetrics(reg); err != nil {
		return err
	}
	hooks, err := newWebhookRelay(env, reqs.sub, reqs.syncs.runner, log)
	if err != nil {
		return err
	}
	hooks.register(mux)
	if err := hooks.registerMetrics(reg); err != nil {
		return err
	}
	resealMetrics, err := reseal.NewMetrics(reg)
	if err != nil {
		return err
	}

	// Tokens a previous run stopped with before it could store them are
	// stored first: a task taken before would renew them a second time.
	if err := refresh.CommitSpooled(ctx); err != nil {
		if ctx.Err() != nil {
			return nil // stopped while Redis was away: they stay spooled
		}
		return fmt.Errorf("app: commit spooled tokens: %w", err)
	}

	srv := asynq.NewServerFromRedisClient(env.Redis, asynq.Config{
		Concurrency:       o.Concurrency,
		Queues:            jobs.Queues,
		StrictPriority:    true,
		TaskCheckInterval: cmp.Or(o.TaskCheckInterval, 50*time.Millisecond),
		// Retries of infrastructure failures; vendor failures are scheduled
		// by the store, not retried by asynq.
		DelayedTaskCheckInterval: time.Second,
		ShutdownTimeout:          15 * time.Second,
		Logger:                   asynqLogger{log.With().Str("component", "asynq").Logger()},
		LogLevel:                 asynq.WarnLevel,
		// Request jobs waiting for the rate budget or a 429's pause come
		// back when it ends, not counted as failures; other tasks keep
		// asynq's default backoff.
		RetryDelayFunc: jobs.RetryDelay,
		IsFailure:      jobs.IsFailure,
	})
	if err := srv.Start(mux); err != nil {
		return fmt.Errorf("app: start asynq server: %w", err)
	}

	tokens, err := tokenservice.New(env.NATS, tokenservice.Options{
		SubjectPrefix: env.Config.NATS.SubjectPrefix, Reader: env.Store, Clock: env.Clock, Logger: log,
		InboxPrefix: env.Config.NATS.InboxPrefix,
		CacheSize:   env.Config.NATS.TokenCacheSize, StallTimeout: time.Duration(env.Config.NATS.TokenStallTimeout),
		Concurrency: env.Config.NATS.TokenConcurrency,
	})
	if err != nil {
		srv.Shutdown()
		return fmt.Errorf("app: token service: %w", err)
	}
	// The stream is set up by the worker as well as by the scheduler: a
	// worker that starts first, or runs alone in a webhook-only deployment,
	// would otherwise answer every webhook 503 until a scheduler came up.
	go func() { _ = env.ensureStream(ctx) }()
	reseal.Start(ctx, env.Store, log, resealMetrics, reseal.Lease/3) // after a master-key rotation, in the background
	stopRequests, err := reqs.start(ctx)
	if err != nil {
		_ = tokens.Stop()
		srv.Shutdown()
		return err
	}
	defer stopRequests()
	stopSyncs, err := reqs.syncs.start()
	if err != nil {
		_ = tokens.Stop()
		srv.Shutdown()
		return err
	}
	defer stopSyncs()
	defer hooks.start(ctx)()

	ln, err := net.Listen("tcp", env.Config.HTTP.Addr)
	if err != nil {
		_ = tokens.Stop()
		srv.Shutdown()
		return fmt.Errorf("app: listen on %s: %w", env.Config.HTTP.Addr, err)
	}
	if o.OnListen != nil {
		o.OnListen(ln.Addr())
	}
	sessions := newWebSessions(env)
	queues, closeQueues := dashboard.New(dashboard.Options{
		Token: env.Config.HTTP.AdminToken, Sessions: sessions, Redis: env.redisConnOpt,
		PrometheusURL: env.Config.HTTP.PrometheusURL, Logger: env.Logger,
	})
	defer func() { _ = closeQueues() }()
	ops := operations{metrics: metrics.Handler(reg), dashboard: queues, budget: reqs.budget, sessions: sessions}
	// Paths are checked once percent-decoded before any route sees them;
	// the timeouts cut off clients that send slowly or never finish.
	hs := httpserver.New(httpserver.CheckPath(hooks.mount(httpRoutes(env, log, rot, ops, reqs.jobs(), reqs.syncs.admin()))), httpserver.Timeouts{})
	httpErr := make(chan error, 1)
	go func() { httpErr <- hs.Serve(ln) }()
	log.Info().Str("http", ln.Addr().String()).Int("concurrency", o.Concurrency).Msg("worker started")

	var runErr error
	select {
	case <-ctx.Done():
	case err := <-httpErr:
		runErr = fmt.Errorf("app: http server: %w", err)
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = hs.Shutdown(shutCtx)
	_ = tokens.Stop()
	refresh.Stop() // tokens still waiting for Redis go to the spool
	srv.Shutdown()
	log.Info().Msg("worker stopped")
	return runErr
}

// newRefreshHandler builds the refresh handler with its spool and the
// tokenrelay_renewal_answers_abandoned_total counter.
func newRefreshHandler(env *Env, vends map[string]jobs.Vendor, reg prometheus.Registerer, log zerolog.Logger) (*jobs.RefreshHandler, error) {
	dir, err := spoolDir(env.Config.Worker.SpoolDir)
	if err != nil {
		return nil, err
	}
	spool, err := jobs.NewFileSpool(dir, env.Store.Keyring())
	if err != nil {
		return nil, err
	}
	abandoned := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metrics.Namespace, Name: "renewal_answers_abandoned_total",
		Help: "Tokens a vendor issued that were never stored (the renewal is done again, a second token call), by vendor and reason (expired: the token expired while Redis was unreachable; shutdown: the worker stopped and could not spool it).",
	}, []string{"vendor", "reason"})
	if err := reg.Register(abandoned); err != nil {
		return nil, fmt.Errorf("app: metrics: %w", err)
	}
	return jobs.NewRefreshHandler(jobs.RefreshDeps{
		Store: env.Store, Logger: log, Clock: env.Clock,
		Vendor:     func(name string) (jobs.Vendor, bool) { v, ok := vends[name]; return v, ok },
		ClaimLease: time.Duration(env.Config.Scheduler.ClaimLease),
		Spool:      spool,
		Abandoned:  func(vendor, reason string) { abandoned.WithLabelValues(vendor, reason).Inc() },
	})
}

// spoolDir is worker.spool_dir, or its default under the user's cache
// directory.
func spoolDir(configured string) (string, error) {
	if configured != "" {
		return configured, nil
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("app: no worker.spool_dir set and no user cache directory to default to (%w); set worker.spool_dir", err)
	}
	return filepath.Join(cache, "tokenrelay", "spool"), nil
}

// operations are the worker's operator endpoints, /metrics and asynqmon,
// the rate budget the operator pages show, and the sessions (and sign-in
// throttle) of the pages and the admin API.
type operations struct {
	metrics, dashboard http.Handler
	budget             *budget.Budget
	sessions           *websession.Sessions
}

func httpRoutes(env *Env, log zerolog.Logger, rot *rotation.Rotator, ops operations, reqs admin.RequestJobs, sy admin.SyncJobs) http.Handler {
	mux := http.NewServeMux()
	// Open, as Prometheus expects, unless http.metrics_token is set; holds
	// no secret. Its wrong tokens are counted apart from the admin token's,
	// so that a misconfigured scraper does not lock operators out.
	mux.Handle("GET /metrics", metricsAuth(env, websession.NewThrottle(websession.ThrottleOptions{Now: env.Clock}), ops.metrics))
	mux.Handle(dashboard.Path, ops.dashboard) // asynqmon, behind the admin token
	adminDeps := admin.Deps{
		Config: env.Config, Store: env.Store, Token: env.Config.HTTP.AdminToken, Clock: env.Clock,
		Logger:         log.With().Str("component", "admin").Logger(),
		RevokeAtVendor: rot.RevokeAtVendor, RotateNow: rotateNow(env),
		Requests: reqs, Syncs: sy, Throttle: ops.sessions.Throttle(),
	}
	mux.Handle("/admin/", admin.Handler(adminDeps))
	mux.Handle(operator.Prefix, operatorPages(env, adminDeps, ops.budget, ops.sessions, log))
	// The current signing key, and during a rotation the new or old one.
	mux.Handle("GET /jwks/{vendor}/{credential}", redox.CachedJWKSHandler(redoxSigningKeys(env), redox.JWKSCacheOptions{}))
	mux.HandleFunc("GET /healthz", healthHandler)
	mux.Handle("GET /readyz", readyHandler(env)) // Redis, NATS, outbox not stuck
	return mux
}

// asynqLogger sends asynq's log lines to zerolog.
type asynqLogger struct{ l zerolog.Logger }

func (a asynqLogger) Debug(args ...any) { a.l.Debug().Msg(fmt.Sprint(args...)) }
func (a asynqLogger) Info(args ...any)  { a.l.Info().Msg(fmt.Sprint(args...)) }
func (a asynqLogger) Warn(args ...any)  { a.l.Warn().Msg(fmt.Sprint(args...)) }
func (a asynqLogger) Error(args ...any) { a.l.Error().Msg(fmt.Sprint(args...)) }
func (a asynqLogger) Fatal(args ...any) { a.l.Fatal().Msg(fmt.Sprint(args...)) }
