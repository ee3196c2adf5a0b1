package app

import (
	"context"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/masterkey"
	"github.com/tokenrelay/tokenrelay/internal/store"
)

// Env is what both roles share: the configuration, the connections and the
// credential store.
type Env struct {
	Config *config.Config
	Logger zerolog.Logger
	Redis  redis.UniversalClient
	NATS   *nats.Conn
	JS     jetstream.JetStream
	Store  *store.Store
	// Clock defaults to time.Now.
	Clock func() time.Time
	// BudgetClock is the rate budgets' clock. Nil, the default, means
	// Redis's own TIME: the one clock every worker on every machine shares,
	// so that a vendor's window is kept exactly however far the workers'
	// own clocks drift apart. Tests inject one to compress time.
	BudgetClock func() time.Time
	// redisConnOpt reaches the same Redis for asynqmon, which opens its own
	// connection (nil in an Env built by hand: no queue dashboard).
	redisConnOpt asynq.RedisConnOpt
	// natsClosed is closed when the NATS connection is (nil in an Env
	// built by hand).
	natsClosed chan struct{}
	// replicaShortfalls counts the store's writes too few replicas
	// acknowledged (redis.min_replica_acks), for the worker's /metrics
	// (nil in an Env built by hand).
	replicaShortfalls *prometheus.CounterVec
}

// Connect opens the connections a process needs. Redis must answer at once
// (nothing works without it); NATS may be down: the connection keeps trying
// in the background and events wait in the outbox meanwhile.
func Connect(ctx context.Context, cfg *config.Config, log zerolog.Logger) (*Env, error) {
	rc, err := redisConnection(cfg.Redis) // Sentinel, Cluster, TLS
	if err != nil {
		return nil, err
	}
	rdb := redis.NewUniversalClient(rc.Universal)
	pingCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := rdb.Ping(pingCtx).Err(); err != nil {
		_ = rdb.Close()
		return nil, fmt.Errorf("app: connect to redis at %s: %w", rc.Where, err)
	}
	natsAuth, err := natsOptions(cfg.NATS) // credentials, NKey, TLS
	if err != nil {
		_ = rdb.Close()
		return nil, err
	}
	natsClosed := make(chan struct{})
	nc, err := nats.Connect(cfg.NATS.URL, append(natsAuth,
		nats.Name("tokenrelay"),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn().Err(err).Msg("disconnected from NATS; events wait in the outbox")
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info().Str("server", c.ConnectedUrlRedacted()).Msg("reconnected to NATS") }),
		// Asynchronous errors (a slow consumer, a write failing) as log
		// lines, not nats.go's default text on stderr.
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			ev := log.Warn().Err(err)
			if sub != nil {
				ev = ev.Str("subject", sub.Subject)
			}
			ev.Msg("NATS connection error")
		}),
		nats.ClosedHandler(func(*nats.Conn) { close(natsClosed) }),
	)...)
	if err != nil {
		_ = rdb.Close()
		return nil, fmt.Errorf("app: connect to nats: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		_ = rdb.Close()
		return nil, fmt.Errorf("app: jetstream: %w", err)
	}
	keyring, err := masterkey.Keyring(ctx, cfg) // current + previous keys, unwrapped by the KMS if so configured
	if err != nil {
		nc.Close()
		_ = rdb.Close()
		return nil, fmt.Errorf("app: master key: %w", err)
	}
	shortfalls := newReplicaShortfalls()
	st, err := store.New(rdb, store.Options{Prefix: cfg.Redis.Prefix, Keyring: keyring, Replication: store.Replication{
		MinAcks: cfg.Redis.MinReplicaAcks, Timeout: time.Duration(cfg.Redis.ReplicaAckTimeout),
		Shortfall: func(op string) { shortfalls.WithLabelValues(op).Inc() },
	}})
	if err != nil {
		nc.Close()
		_ = rdb.Close()
		return nil, fmt.Errorf("app: store: %w", err)
	}
	return &Env{Config: cfg, Logger: log, Redis: rdb, redisConnOpt: rc.Asynq, NATS: nc, natsClosed: natsClosed,
		JS: js, Store: st, Clock: time.Now, replicaShortfalls: shortfalls}, nil
}

// natsDrainWait bounds how long Close waits for the NATS connection to
// drain (messages received are handled, messages sent are flushed).
const natsDrainWait = 5 * time.Second

// Close closes the connections, once the NATS connection has drained (or
// natsDrainWait has passed), so that what was sent reaches the server
// before a process, or an embedded server, goes.
func (e *Env) Close() {
	if e.NATS != nil {
		switch err := e.NATS.Drain(); {
		case err != nil: // closed already, or reconnecting: nothing to drain
			e.NATS.Close()
		case e.natsClosed != nil:
			select {
			case <-e.natsClosed:
			case <-time.After(natsDrainWait):
				e.NATS.Close()
			}
		}
	}
	if e.Redis != nil {
		_ = e.Redis.Close()
	}
}

// streamReplicas is the stream's replica count: nats.stream_replicas, or
// when that is unset, what the stream has already (an operator may have
// made it 3 in a NATS cluster: a process left at the default must not
// scale it down), else 1.
func (e *Env) streamReplicas(ctx context.Context) int {
	if r := e.Config.NATS.StreamReplicas; r > 0 {
		return r
	}
	if s, err := e.JS.Stream(ctx, e.Config.NATS.Stream); err == nil {
		return s.CachedInfo().Config.Replicas
	}
	return 1
}

// ensureStream creates or updates the event stream, retrying until NATS
// answers or ctx ends.
func (e *Env) ensureStream(ctx context.Context) error {
	wait := 250 * time.Millisecond
	for {
		callCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		replicas := e.streamReplicas(callCtx)
		_, err := events.EnsureStream(callCtx, e.JS, events.StreamConfig{
			Name: e.Config.NATS.Stream, SubjectPrefix: e.Config.NATS.SubjectPrefix, Replicas: replicas,
		})
		cancel()
		if err == nil {
			e.Logger.Debug().Str("stream", e.Config.NATS.Stream).Int("replicas", replicas).Msg("event stream ready")
			return nil
		}
		e.Logger.Warn().Err(err).Dur("retry_in", wait).Msg("cannot set up the JetStream stream yet")
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(wait*2, 5*time.Second)
	}
}
