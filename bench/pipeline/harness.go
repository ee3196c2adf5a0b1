package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/app"
	"github.com/tokenrelay/tokenrelay/internal/scheduler"
	"github.com/tokenrelay/tokenrelay/internal/seal"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/jobs"
	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/vendors/sandbox"
)

// benchVendor is the vendor instance every benchmark credential belongs to.
const benchVendor = "halaxy-bench"

// benchUserAgent is the Halaxy User-Agent of the benchmark.
const benchUserAgent = "tokenrelay bench (bench@tokenrelay.invalid)"

// randomHex returns n random bytes in hex.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func randomSecret() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// names are the Redis prefix, stream and subject prefix of one pipeline
// run, unique so that nothing else on the servers is touched.
type names struct {
	Prefix        string // Redis key prefix
	Stream        string // JetStream stream
	SubjectPrefix string // NATS subject prefix, ends with "."
}

func newNames(tag string) names {
	id := randomHex(4)
	return names{
		Prefix:        "bench-" + tag + "-" + id + ":",
		Stream:        strings.ToUpper("BENCH_" + tag + "_" + id),
		SubjectPrefix: "bench" + tag + id + ".",
	}
}

// benchConfig is the configuration every role of a run shares: one
// Halaxy vendor on the sandbox with lifetime as its max_token_lifetime,
// and no static credentials (the benchmark adds them).
func benchConfig(redisURL, natsURL, sandboxURL string, n names, lifetime time.Duration) (*config.Config, error) {
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	cfg := &config.Config{
		Redis: config.Redis{URL: redisURL, Prefix: n.Prefix},
		NATS:  config.NATS{URL: natsURL, Stream: n.Stream, SubjectPrefix: n.SubjectPrefix},
		HTTP:  config.HTTP{Addr: "127.0.0.1:0"},
		Vendors: map[string]config.Vendor{
			benchVendor: {Kind: config.KindHalaxy, BaseURL: sandboxURL + sandbox.HalaxyPath,
				UserAgent: benchUserAgent, MaxTokenLifetime: config.Duration(lifetime)},
		},
		SecretKey: secret.New(string(key)),
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("benchmark configuration: %w", err)
	}
	return cfg, nil
}

// startSandbox serves sb on a loopback port until ctx ends and returns its
// URL.
func startSandbox(ctx context.Context, sb *sandbox.Sandbox) (string, <-chan error, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("sandbox listener: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- sb.ServeListener(ctx, ln) }()
	return "http://" + ln.Addr().String(), done, nil
}

// schedRole is one scheduler replica, built as app.RunScheduler builds it
// (scheduler.New and events.NewRelay on an app.Env of its own), except
// that its relay reports to OnPublished and that the claim loop and the
// relay stop separately, so that the outbox can be drained after the
// last claim.
type schedRole struct {
	env       *app.Env
	stopSched context.CancelFunc
	stopRelay context.CancelFunc
	schedDone chan error
	relayDone chan error
	relay     *events.Relay
}

func startSchedRole(ctx context.Context, cfg *config.Config, log zerolog.Logger, perTask int, onPublished func(events.Envelope, time.Duration)) (*schedRole, error) {
	env, err := app.Connect(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	slog := log.With().Str("role", "scheduler").Logger()
	sc := cfg.Scheduler
	sched, err := scheduler.New(scheduler.Options{
		Store: env.Store, Enqueuer: asynq.NewClientFromRedisClient(env.Redis), Logger: slog, Clock: env.Clock,
		PollInterval:   time.Duration(sc.PollInterval),
		ClaimLease:     time.Duration(sc.ClaimLease),
		ReconcileEvery: time.Duration(sc.ReconcileEvery),
		PerTask:        perTask,
		Backlog:        scheduler.AsynqBacklog(env.Redis, jobs.QueueCritical),
	})
	if err != nil {
		env.Close()
		return nil, err
	}
	relay, err := events.NewRelay(events.RelayOptions{
		Redis: env.Redis, Prefix: cfg.Redis.Prefix, JetStream: env.JS,
		SubjectPrefix: cfg.NATS.SubjectPrefix, Logger: slog, OnPublished: onPublished,
	})
	if err != nil {
		env.Close()
		return nil, err
	}
	r := &schedRole{env: env, schedDone: make(chan error, 1), relayDone: make(chan error, 1), relay: relay}
	sctx, scancel := context.WithCancel(ctx)
	rctx, rcancel := context.WithCancel(ctx)
	r.stopSched, r.stopRelay = scancel, rcancel
	go func() { r.schedDone <- sched.Run(sctx) }()
	go func() { r.relayDone <- relay.Run(rctx) }()
	return r, nil
}

// workerRole is one worker replica: app.RunWorker on an app.Env of its own.
type workerRole struct {
	env  *app.Env
	stop context.CancelFunc
	done chan error
}

func startWorkerRole(ctx context.Context, cfg *config.Config, log zerolog.Logger, o app.WorkerOptions) (*workerRole, error) {
	env, err := app.Connect(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithCancel(ctx)
	w := &workerRole{env: env, stop: cancel, done: make(chan error, 1)}
	listening := make(chan struct{})
	var once sync.Once
	o.OnListen = func(net.Addr) { once.Do(func() { close(listening) }) }
	go func() { w.done <- app.RunWorker(wctx, env, o) }()
	select {
	case <-listening:
		return w, nil
	case err := <-w.done:
		cancel()
		env.Close()
		return nil, fmt.Errorf("worker did not start: %w", err)
	case <-time.After(30 * time.Second):
		cancel()
		return nil, errors.New("worker did not start in 30 s")
	}
}

// roles is a running pipeline: scheduler and worker replicas.
type roles struct {
	scheds  []*schedRole
	workers []*workerRole
}

func startRoles(ctx context.Context, cfg *config.Config, log zerolog.Logger, schedulers, workers, perTask int, wo app.WorkerOptions, onPublished func(events.Envelope, time.Duration)) (*roles, error) {
	r := &roles{}
	for range workers {
		w, err := startWorkerRole(ctx, cfg, log, wo)
		if err != nil {
			r.stopAll()
			return nil, err
		}
		r.workers = append(r.workers, w)
	}
	for range schedulers {
		s, err := startSchedRole(ctx, cfg, log, perTask, onPublished)
		if err != nil {
			r.stopAll()
			return nil, err
		}
		r.scheds = append(r.scheds, s)
	}
	return r, nil
}

// stopClaiming stops every scheduler's claim loop; relays go on.
func (r *roles) stopClaiming() {
	for _, s := range r.scheds {
		s.stopSched()
		<-s.schedDone
		s.stopSched = func() {}
		s.schedDone = closedErrChan()
	}
}

// stopWorkers stops the workers (tasks in flight finish).
func (r *roles) stopWorkers() {
	for _, w := range r.workers {
		w.stop()
	}
	for _, w := range r.workers {
		<-w.done
		w.env.Close()
	}
	r.workers = nil
}

// stopRelays stops the relays and closes the schedulers' connections.
func (r *roles) stopRelays() {
	for _, s := range r.scheds {
		s.stopRelay()
	}
	for _, s := range r.scheds {
		<-s.relayDone
		s.env.Close()
	}
	r.scheds = nil
}

func (r *roles) stopAll() {
	r.stopClaiming()
	r.stopWorkers()
	r.stopRelays()
}

func closedErrChan() chan error {
	c := make(chan error, 1)
	c <- nil
	return c
}

// seeder adds credentials to the store and their clients to the sandbox.
type seeder struct {
	st *store.Store
	sb *sandbox.Sandbox
}

func newSeeder(rdb redis.UniversalClient, cfg *config.Config, sb *sandbox.Sandbox, clock func() time.Time) (*seeder, error) {
	ring, err := seal.NewKeyring([]byte(cfg.SecretKey.Reveal()))
	if err != nil {
		return nil, err
	}
	st, err := store.New(rdb, store.Options{Prefix: cfg.Redis.Prefix, Keyring: ring, Clock: clock})
	if err != nil {
		return nil, err
	}
	return &seeder{st: st, sb: sb}, nil
}

func credentialID(i int) string { return fmt.Sprintf("c%06d", i) }

// add registers credential i with the sandbox and upserts it.
func (s *seeder) add(ctx context.Context, i int) error {
	id := credentialID(i)
	clientID, clientSecret := "cid-"+id, randomSecret()
	if s.sb != nil {
		s.sb.AddClient(clientID, clientSecret)
	}
	res, err := s.st.Upsert(ctx, store.NewCredential{ID: id, Vendor: benchVendor, ClientID: clientID, Keys: store.Keys{ClientSecret: secret.New(clientSecret)}})
	if err != nil {
		return err
	}
	if res != store.Created {
		return fmt.Errorf("upsert %s: %s, want created (is the prefix fresh?)", id, res)
	}
	return nil
}

// seed adds credentials from..to-1 with parallel upserts, paced at
// perSecond (0: as fast as they go). It returns how long it took.
func (s *seeder) seed(ctx context.Context, from, to, parallel int, perSecond float64, progress func(string, ...any)) (time.Duration, error) {
	start := time.Now()
	var next atomic.Int64
	next.Store(int64(from) - 1)
	var firstErr error
	var errOnce sync.Once
	var wg sync.WaitGroup
	var added atomic.Int64
	stopProgress := make(chan struct{})
	go func() {
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-stopProgress:
				return
			case <-t.C:
				progress("seeding: %s of %s credentials added", thousands(added.Load()), thousands(int64(to-from)))
			}
		}
	}()
	for range parallel {
		wg.Go(func() {
			for {
				i := int(next.Add(1))
				if i >= to || ctx.Err() != nil {
					return
				}
				if perSecond > 0 {
					at := start.Add(time.Duration(float64(i-from) / perSecond * float64(time.Second)))
					if d := time.Until(at); d > 0 {
						select {
						case <-ctx.Done():
							return
						case <-time.After(d):
						}
					}
				}
				if err := s.add(ctx, i); err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
				added.Add(1)
			}
		})
	}
	wg.Wait()
	close(stopProgress)
	if firstErr != nil {
		return 0, fmt.Errorf("seeding: %w", firstErr)
	}
	return time.Since(start), ctx.Err()
}
