// Package relay builds the benchmarks' tokenrelay: the sandbox's Halaxy on
// a loopback port with one credential, the store, the refresh handler and
// the request submitter on a Redis database, and on Start the request
// workers (asynq servers) and the feeder. bench/requests and bench/syncs
// share it.
package relay

import (
	"context"
	"fmt"
	"net/http/httptest"
	"runtime"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/tokenrelay/tokenrelay/bench/internal/benchdb"
	"github.com/tokenrelay/tokenrelay/bench/internal/roundtrips"
	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/internal/budget"
	"github.com/tokenrelay/tokenrelay/internal/policy"
	"github.com/tokenrelay/tokenrelay/internal/requests"
	"github.com/tokenrelay/tokenrelay/internal/seal"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/jobs"
	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/vendors/halaxy"
	"github.com/tokenrelay/tokenrelay/vendors/sandbox"
)

// Names the benchmarks use.
const (
	Prefix     = "bench:"
	Vendor     = "halaxy-bench"
	UserAgent  = "tokenrelay bench (bench@tokenrelay.invalid)"
	Credential = "clinic-1"
	// ClientID is the credential's OAuth client at the sandbox (its rate
	// record's account).
	ClientID = "client-1"
)

// Options shape the sandbox and the vendor's configuration.
type Options struct {
	// SandboxLimit per SandboxWindow is the sandbox's true limit
	// (negative: none).
	SandboxLimit  int
	SandboxWindow time.Duration
	// Configured is the vendor's rate_limit.limit per SandboxWindow (0:
	// none configured), with Slack.
	Configured int
	Slack      time.Duration
	// Resources is how many resources the sandbox serves (0: its default).
	Resources int
	// TokenLifetime is the sandbox's token lifetime (0: its default).
	TokenLifetime time.Duration
}

// World is one run's tokenrelay and sandbox. Close it.
type World struct {
	RDB     *redis.Client
	SB      *sandbox.Sandbox
	Srv     *httptest.Server
	Vendors map[string]config.Vendor
	Store   *store.Store
	Refresh *jobs.RefreshHandler
	Sub     *requests.Submitter
}

// New builds a World on rdb with one credential holding a token.
func New(ctx context.Context, rdb *redis.Client, o Options) (*World, error) {
	sb := sandbox.New(sandbox.Options{HalaxyRateLimit: o.SandboxLimit, HalaxyRateWindow: o.SandboxWindow, RealTokenLifetime: o.TokenLifetime})
	if o.Resources > 0 {
		sb.SetFHIRResources(o.Resources)
	}
	srv := httptest.NewServer(sb.Handler())
	w := &World{RDB: rdb, SB: sb, Srv: srv}
	fail := func(err error) (*World, error) { srv.Close(); return nil, err }
	v := config.Vendor{Name: Vendor, Kind: config.KindHalaxy, BaseURL: srv.URL + sandbox.HalaxyPath, UserAgent: UserAgent,
		MaxTokenLifetime: config.Duration(15 * time.Minute)}
	if o.Configured > 0 {
		v.RateLimit = config.RateLimit{Limit: o.Configured, Per: config.Duration(o.SandboxWindow), Slack: config.Duration(o.Slack)}
	}
	kr, err := seal.NewKeyring(make([]byte, seal.KeySize))
	if err != nil {
		return fail(err)
	}
	if w.Store, err = store.New(rdb, store.Options{Prefix: Prefix, Keyring: kr}); err != nil {
		return fail(err)
	}
	adapter, err := halaxy.New(halaxy.Options{BaseURL: v.BaseURL, UserAgent: UserAgent})
	if err != nil {
		return fail(err)
	}
	w.Refresh, err = jobs.NewRefreshHandler(jobs.RefreshDeps{Store: w.Store, Vendor: func(string) (jobs.Vendor, bool) {
		return jobs.Vendor{Tokens: adapter, MaxLifetime: 15 * time.Minute, Renewal: policy.Renewal{At: 2.0 / 3, Jitter: -1}}, true
	}})
	if err != nil {
		return fail(err)
	}
	w.Vendors = map[string]config.Vendor{Vendor: v}
	w.Sub, err = requests.NewSubmitter(requests.SubmitterOptions{Redis: rdb, Prefix: Prefix, Credentials: w.Store, Vendors: w.Vendors, Keyring: kr})
	if err != nil {
		return fail(err)
	}
	sb.AddClient(ClientID, "secret-1")
	if _, err := w.Store.Upsert(ctx, store.NewCredential{ID: Credential, Vendor: Vendor, ClientID: ClientID,
		Keys: store.Keys{ClientSecret: secret.New("secret-1")}}); err != nil {
		return fail(err)
	}
	if err := w.Refresh.Handle(ctx, jobs.Refresh{Credential: Credential, Generation: 0}); err != nil {
		return fail(err)
	}
	return w, nil
}

// Close stops the sandbox's server.
func (w *World) Close() { w.Srv.Close() }

// Keyring is the master keyring the World's parts share.
func (w *World) Keyring() *seal.Keyring { return w.Store.Keyring() }

// StartOptions shape the workers and the feeder.
type StartOptions struct {
	Workers, Concurrency int
	// TaskCheckInterval is the workers' asynq TaskCheckInterval (default 10ms).
	TaskCheckInterval time.Duration
	// Budget makes each worker's and the feeder's budget (default
	// budget.New with the Prefix).
	Budget func() *budget.Budget
	// BulkReserve is the feeder's.
	BulkReserve float64
	// Pages takes syncs' pages (nil: no syncs).
	Pages requests.Pages
	// GroupSize and MaxInFlight are the feeder's, GroupConcurrency the
	// handlers' (0: their defaults).
	GroupSize, MaxInFlight, GroupConcurrency int
}

// Start runs the workers and the feeder until the returned stop.
func (w *World) Start(ctx context.Context, o StartOptions) (stop func(), err error) {
	if o.TaskCheckInterval <= 0 {
		o.TaskCheckInterval = 10 * time.Millisecond
	}
	if o.Budget == nil {
		o.Budget = func() *budget.Budget { return budget.New(w.RDB, budget.Options{Prefix: Prefix}) }
	}
	var stops []func()
	stop = func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	for range o.Workers {
		b := o.Budget()
		h, err := requests.NewHandler(requests.HandlerDeps{Redis: w.RDB, Prefix: Prefix, Credentials: w.Store,
			Refresh: w.Refresh.Handle, Budget: b, Vendors: w.Vendors, Logger: zerolog.Nop(), Keyring: w.Keyring(), Pages: o.Pages,
			GroupConcurrency: o.GroupConcurrency})
		if err != nil {
			stop()
			return nil, err
		}
		mux := asynq.NewServeMux()
		mux.Handle(jobs.TypeVendorRequest, h)
		srv := asynq.NewServerFromRedisClient(w.RDB, asynq.Config{
			Concurrency: o.Concurrency, Queues: jobs.Queues, StrictPriority: true,
			RetryDelayFunc: jobs.RetryDelay, IsFailure: jobs.IsFailure,
			TaskCheckInterval: o.TaskCheckInterval, DelayedTaskCheckInterval: 250 * time.Millisecond,
			LogLevel: asynq.FatalLevel,
		})
		if err := srv.Start(mux); err != nil {
			stop()
			return nil, err
		}
		stops = append(stops, func() { srv.Shutdown(); _ = b.Close(context.Background()) })
	}
	fb := o.Budget()
	f, err := requests.NewFeeder(requests.FeederOptions{Redis: w.RDB, Prefix: Prefix, Budget: fb, Vendors: w.Vendors,
		Enqueuer: asynq.NewClientFromRedisClient(w.RDB), BulkReserve: o.BulkReserve, Logger: zerolog.Nop(), Keyring: w.Keyring(),
		GroupSize: o.GroupSize, MaxInFlight: o.MaxInFlight})
	if err != nil {
		stop()
		return nil, err
	}
	fctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = f.Run(fctx) }()
	stops = append(stops, func() { cancel(); <-done; _ = fb.Close(context.Background()) })
	return stop, nil
}

// RateRecord returns the sandbox's record of the credential's requests its
// window judged: the accepted ones' times, and how many it answered 429.
func (w *World) RateRecord() (accepted []time.Time, refused int) {
	for _, h := range w.SB.RateRecord(ClientID) {
		if h.Accepted {
			accepted = append(accepted, h.At)
		} else {
			refused++ // answered 429 by the window
		}
	}
	return accepted, refused
}

// Redis leases a database of addr for program (benchdb), connects to it
// with c counting its round trips, and flushes it. done flushes it again,
// closes the client and gives the database back.
func Redis(ctx context.Context, addr, program string, c *roundtrips.Counter) (rdb *redis.Client, db int, done func(), err error) {
	lease, err := benchdb.Lease(ctx, addr, program, -1)
	if err != nil {
		return nil, 0, nil, err
	}
	rdb = redis.NewClient(&redis.Options{Addr: addr, DB: lease.Number(), PoolSize: 64})
	done = func() {
		_ = rdb.FlushDB(context.Background()).Err()
		_ = rdb.Close()
		lease.Release()
	}
	if err := rdb.FlushDB(ctx).Err(); err != nil {
		done()
		return nil, 0, nil, err
	}
	rdb.AddHook(c)
	return rdb, lease.Number(), done, nil
}

// Machine is the results' first line: CPUs, Go, the Redis database.
func Machine(addr string, db int) string {
	return fmt.Sprintf("Machine: %d CPUs (%s), Go %s; Redis %s DB %d; shared with the other engineers' builds and tests.\n\n",
		runtime.NumCPU(), runtime.GOARCH, runtime.Version(), addr, db)
}
