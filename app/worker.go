package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/hibiken/asynq"
	"github.com/rs/zerolog"

	"github.com/tokenrelay/tokenrelay/admin"
	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/jobs"
	"github.com/tokenrelay/tokenrelay/store"
	"github.com/tokenrelay/tokenrelay/tokenservice"
	"github.com/tokenrelay/tokenrelay/vendors/redox"
)

// WorkerOptions tune the worker role. Zero values take the defaults given.
type WorkerOptions struct {
	// Concurrency is how many tasks run at once (default 20: the work is
	// mostly waiting on vendors).
	Concurrency int
	// TaskCheckInterval is how often an idle worker looks for new tasks
	// (asynq's default 1s). Tokens that live seconds, as in the dev mode
	// and tests, want 50ms.
	TaskCheckInterval time.Duration
	// HTTPClient is used for vendor calls (nil: a default).
	HTTPClient *http.Client
	// OnListen, if set, is told the HTTP server's address once it listens.
	OnListen func(addr net.Addr)
}

// RunWorker runs the worker role until ctx ends: the asynq server on the
// critical, default and low queues, the token service on NATS, and the HTTP
// server (health, the JWKS of Redox signing keys, and the admin API when
// http.admin_token is set). On
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
	refresh, err := jobs.NewRefreshHandler(jobs.RefreshDeps{
		Store: env.Store, Logger: log, Clock: env.Clock,
		Vendor:     func(name string) (jobs.Vendor, bool) { v, ok := vends[name]; return v, ok },
		ClaimLease: time.Duration(env.Config.Scheduler.ClaimLease),
	})
	if err != nil {
		return err
	}
	mux := asynq.NewServeMux()
	jobs.Handle(mux, refresh.Handle)
	jobs.Handle(mux, refresh.HandleBatch)

	srv := asynq.NewServerFromRedisClient(env.Redis, asynq.Config{
		Concurrency:       o.Concurrency,
		Queues:            jobs.Queues,
		StrictPriority:    true,
		TaskCheckInterval: o.TaskCheckInterval,
		// Retries of infrastructure failures; vendor failures are scheduled
		// by the store, not retried by asynq.
		DelayedTaskCheckInterval: time.Second,
		ShutdownTimeout:          15 * time.Second,
		Logger:                   asynqLogger{log.With().Str("component", "asynq").Logger()},
		LogLevel:                 asynq.WarnLevel,
	})
	if err := srv.Start(mux); err != nil {
		return fmt.Errorf("app: start asynq server: %w", err)
	}

	tokens, err := tokenservice.New(env.NATS, tokenservice.Options{
		SubjectPrefix: env.Config.NATS.SubjectPrefix, Reader: env.Store, Clock: env.Clock, Logger: log,
	})
	if err != nil {
		srv.Shutdown()
		return fmt.Errorf("app: token service: %w", err)
	}

	ln, err := net.Listen("tcp", env.Config.HTTP.Addr)
	if err != nil {
		_ = tokens.Stop()
		srv.Shutdown()
		return fmt.Errorf("app: listen on %s: %w", env.Config.HTTP.Addr, err)
	}
	if o.OnListen != nil {
		o.OnListen(ln.Addr())
	}
	hs := &http.Server{Handler: httpRoutes(env, log), ReadHeaderTimeout: 10 * time.Second}
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
	srv.Shutdown()
	log.Info().Msg("worker stopped")
	return runErr
}

func httpRoutes(env *Env, log zerolog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/admin/", admin.Handler(admin.Deps{
		Config: env.Config, Store: env.Store, Token: env.Config.HTTP.AdminToken, Clock: env.Clock,
		Logger: log.With().Str("component", "admin").Logger(),
	}))
	mux.Handle("GET /jwks/{vendor}/{credential}", redox.JWKSHandler(func(ctx context.Context, vendor, id string) ([]redox.SigningKey, error) {
		if env.Config.Vendors[vendor].Kind != config.KindRedox {
			return nil, redox.ErrNoSigningKeys
		}
		c, err := env.Store.Get(ctx, id)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return nil, redox.ErrNoSigningKeys
		case err != nil:
			return nil, err
		case c.Vendor != vendor || c.PrivateKey.IsZero():
			return nil, redox.ErrNoSigningKeys
		}
		return []redox.SigningKey{{PrivateKey: c.PrivateKey, KeyID: c.KeyID}}, nil
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		var problems []error
		if err := env.Redis.Ping(ctx).Err(); err != nil {
			problems = append(problems, fmt.Errorf("redis: %w", err))
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
	return mux
}

// asynqLogger sends asynq's log lines to zerolog.
type asynqLogger struct{ l zerolog.Logger }

func (a asynqLogger) Debug(args ...any) { a.l.Debug().Msg(fmt.Sprint(args...)) }
func (a asynqLogger) Info(args ...any)  { a.l.Info().Msg(fmt.Sprint(args...)) }
func (a asynqLogger) Warn(args ...any)  { a.l.Warn().Msg(fmt.Sprint(args...)) }
func (a asynqLogger) Error(args ...any) { a.l.Error().Msg(fmt.Sprint(args...)) }
func (a asynqLogger) Fatal(args ...any) { a.l.Fatal().Msg(fmt.Sprint(args...)) }
