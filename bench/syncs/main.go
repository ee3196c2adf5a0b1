// Command syncs benchmarks a sync against a rate-limited account (make
// bench-syncs; results in BENCHMARKS.md, "Issue 11: sync performance"). On
// the machine's real Redis (a database it leases) and the sandbox's Halaxy
// on a loopback port serving -resources Patients: one full sync in pages
// of -count, each page a request job (submitter, feeder, asynq worker,
// shared budget, handler, sync runner), the account limited to -limit per
// sliding window, once for each of -windows (a compressed window keeps the
// run short). It reports the share of the limit the sync used, the 429s
// the sandbox answered and the Redis round trips per page, as Markdown.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http/httptest"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
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
	"github.com/tokenrelay/tokenrelay/internal/slidingwindow"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/internal/syncs"
	"github.com/tokenrelay/tokenrelay/jobs"
	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/vendors/halaxy"
	"github.com/tokenrelay/tokenrelay/vendors/sandbox"
)

const (
	prefix    = "bench:"
	vendor    = "halaxy-bench"
	userAgent = "tokenrelay bench (bench@tokenrelay.invalid)"
	cred      = "clinic-1"
)

type options struct {
	resources, count, limit, workers, concurrency int
	windows                                       []time.Duration
	vendorSlack, taskCheck                        time.Duration
	redisAddr, out                                string
}

func main() {
	var o options
	var windows string
	flag.IntVar(&o.resources, "resources", 100000, "Patients the sandbox serves (the sync's size)")
	flag.IntVar(&o.count, "count", 100, "resources per page (_count)")
	flag.IntVar(&o.limit, "limit", 500, "the account's limit per window (configured = the vendor's)")
	flag.StringVar(&windows, "windows", "6s,60s", "the sliding windows to run, comma separated (60s is the real one)")
	flag.IntVar(&o.workers, "workers", 2, "worker processes (asynq servers)")
	flag.IntVar(&o.concurrency, "concurrency", 4, "concurrency of each worker")
	flag.DurationVar(&o.vendorSlack, "vendor-slack", 25*time.Millisecond, "the vendor's rate_limit.slack (the sandbox is on loopback)")
	flag.DurationVar(&o.taskCheck, "task-check-interval", 10*time.Millisecond, "asynq's TaskCheckInterval in the workers (the worker role's default is asynq's 1s)")
	flag.StringVar(&o.redisAddr, "redis", "127.0.0.1:6379", "Redis address")
	flag.StringVar(&o.out, "out", "", "also write the Markdown results to this file")
	flag.Parse()
	for w := range strings.SplitSeq(windows, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(w))
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench/syncs: -windows:", err)
			os.Exit(2)
		}
		o.windows = append(o.windows, d)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "bench/syncs:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	lease, err := benchdb.Lease(ctx, o.redisAddr, "bench-syncs", -1)
	if err != nil {
		return err
	}
	defer lease.Release()
	rdb := redis.NewClient(&redis.Options{Addr: o.redisAddr, DB: lease.Number(), PoolSize: 64})
	defer rdb.Close()
	defer rdb.FlushDB(context.Background())
	trips := roundtrips.New(".")
	rdb.AddHook(trips)

	var md strings.Builder
	fmt.Fprintf(&md, "Machine: %d CPUs (%s), Go %s; Redis %s DB %d; shared with the other engineers' builds and tests.\n\n",
		runtime.NumCPU(), runtime.GOARCH, runtime.Version(), o.redisAddr, lease.Number())
	fmt.Fprintf(&md, "One full sync of %d Patients in pages of %d (%d pages, one in flight at a time) against a sandbox Halaxy account limited to %d per sliding window, the vendor configured with the same limit; %d worker processes × concurrency %d (asynq TaskCheckInterval %s), one feeder. From the sandbox's record of the requests its window judged: share of limit = accepted / (first-to-last span + one window) over limit / window (as bench/requests (b); a run of two windows' worth paced evenly scores at most 2/3 on it); rate over the run = (accepted - 1) / first-to-last span over limit / window; largest window = the most accepted in any sliding window. Round trips: every command or pipeline on the one Redis client all parts share, per page.\n\n",
		o.resources, o.count, (o.resources+o.count-1)/o.count, o.limit, o.workers, o.concurrency, o.taskCheck)
	fmt.Fprintln(&md, "| Window | Pages | Resources | Wall time | Pages/s | Share of limit | Rate over the run | 429s | Largest window | Round trips per page |")
	fmt.Fprintln(&md, "|---|---|---|---|---|---|---|---|---|---|")
	for _, win := range o.windows {
		if err := rdb.FlushDB(ctx).Err(); err != nil {
			return err
		}
		trips.Snapshot()
		r, err := syncRun(ctx, rdb, o, win)
		if err != nil {
			return fmt.Errorf("window %s: %w", win, err)
		}
		t := trips.Snapshot()
		row := fmt.Sprintf("| %d per %s | %d | %d | %s | %.1f | %.1f%% | **%.1f%%** | %d | %d | %.2f |",
			o.limit, win, r.pages, r.resources, r.wall.Round(time.Millisecond), float64(r.pages)/r.wall.Seconds(),
			100*r.share, 100*r.spanShare, r.limited, r.maxWindow, float64(t.Total())/float64(r.pages))
		fmt.Fprintln(&md, row)
		fmt.Fprintln(os.Stderr, row)
		if win == o.windows[len(o.windows)-1] {
			fmt.Fprintf(&md, "\nRound trips of the %s run by kind (per page):\n\n| round trip | count | per page |\n|---|---|---|\n", win)
			for _, row := range t.Rows(r.pages) {
				fmt.Fprintln(&md, row)
			}
		}
	}
	fmt.Print(md.String())
	if o.out != "" {
		return os.WriteFile(o.out, []byte(md.String()), 0o644)
	}
	return nil
}

type result struct {
	pages, resources, limited, maxWindow int
	wall                                 time.Duration
	share, spanShare                     float64
}

func syncRun(ctx context.Context, rdb *redis.Client, o options, window time.Duration) (result, error) {
	sb := sandbox.New(sandbox.Options{HalaxyRateLimit: o.limit, HalaxyRateWindow: window, RealTokenLifetime: time.Hour})
	sb.SetFHIRResources(o.resources)
	srv := httptest.NewServer(sb.Handler())
	defer srv.Close()
	v := config.Vendor{Name: vendor, Kind: config.KindHalaxy, BaseURL: srv.URL + sandbox.HalaxyPath, UserAgent: userAgent,
		MaxTokenLifetime: config.Duration(15 * time.Minute),
		RateLimit:        config.RateLimit{Limit: o.limit, Per: config.Duration(window), Slack: config.Duration(o.vendorSlack)}}
	kr, err := seal.NewKeyring(make([]byte, seal.KeySize))
	if err != nil {
		return result{}, err
	}
	st, err := store.New(rdb, store.Options{Prefix: prefix, Keyring: kr})
	if err != nil {
		return result{}, err
	}
	adapter, err := halaxy.New(halaxy.Options{BaseURL: v.BaseURL, UserAgent: userAgent})
	if err != nil {
		return result{}, err
	}
	refresh, err := jobs.NewRefreshHandler(jobs.RefreshDeps{Store: st, Vendor: func(string) (jobs.Vendor, bool) {
		return jobs.Vendor{Tokens: adapter, MaxLifetime: 15 * time.Minute, Renewal: policy.Renewal{At: 2.0 / 3, Jitter: -1}}, true
	}})
	if err != nil {
		return result{}, err
	}
	vendors := map[string]config.Vendor{vendor: v}
	sub, err := requests.NewSubmitter(requests.SubmitterOptions{Redis: rdb, Prefix: prefix, Credentials: st, Vendors: vendors, Keyring: kr})
	if err != nil {
		return result{}, err
	}
	runner, err := syncs.New(syncs.Deps{Redis: rdb, Prefix: prefix, Submitter: sub, Credentials: st, Vendors: vendors, Keyring: kr,
		Logger: zerolog.Nop()})
	if err != nil {
		return result{}, err
	}
	sb.AddClient("client-1", "secret-1")
	if _, err := st.Upsert(ctx, store.NewCredential{ID: cred, Vendor: vendor, ClientID: "client-1",
		Keys: store.Keys{ClientSecret: secret.New("secret-1")}}); err != nil {
		return result{}, err
	}
	if err := refresh.Handle(ctx, jobs.Refresh{Credential: cred, Generation: 0}); err != nil {
		return result{}, err
	}

	for range o.workers {
		b := budget.New(rdb, budget.Options{Prefix: prefix})
		h, err := requests.NewHandler(requests.HandlerDeps{Redis: rdb, Prefix: prefix, Credentials: st, Refresh: refresh.Handle,
			Budget: b, Vendors: vendors, Logger: zerolog.Nop(), Keyring: kr, Pages: runner})
		if err != nil {
			return result{}, err
		}
		mux := asynq.NewServeMux()
		mux.Handle(jobs.TypeVendorRequest, h)
		srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{
			Concurrency: o.concurrency, Queues: jobs.Queues, StrictPriority: true,
			RetryDelayFunc: requests.RetryDelay, IsFailure: requests.IsFailure,
			TaskCheckInterval: o.taskCheck, DelayedTaskCheckInterval: 250 * time.Millisecond,
			LogLevel: asynq.FatalLevel,
		})
		if err := srv.Start(mux); err != nil {
			return result{}, err
		}
		defer func() { srv.Shutdown(); _ = b.Close(context.Background()) }()
	}
	fb := budget.New(rdb, budget.Options{Prefix: prefix})
	f, err := requests.NewFeeder(requests.FeederOptions{Redis: rdb, Prefix: prefix, Budget: fb, Vendors: vendors,
		Enqueuer: asynq.NewClientFromRedisClient(rdb), Logger: zerolog.Nop(), Keyring: kr})
	if err != nil {
		return result{}, err
	}
	fctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = f.Run(fctx) }()
	defer func() { cancel(); <-done; _ = fb.Close(context.Background()) }()

	s := jobs.NewSync(cred, "Patient", jobs.SyncFull)
	s.ID, s.Query = "bench-sync", jobs.Query{"_count": {fmt.Sprint(o.count)}}
	start := time.Now()
	if _, err := runner.Start(ctx, s); err != nil {
		return result{}, err
	}
	var status struct {
		state             string
		pages, resources  int
		errClass, message string
	}
	for {
		ss, err := runner.Status(roundtrips.Skip(ctx), vendor, cred, s.ID)
		if err != nil {
			return result{}, err
		}
		status.state, status.pages, status.resources, status.errClass, status.message = ss.State, ss.Pages, ss.Resources, ss.ErrorClass, ss.Message
		if ss.State != "running" {
			break
		}
		select {
		case <-ctx.Done():
			return result{}, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	wall := time.Since(start)
	if status.state != "completed" || status.resources != o.resources {
		return result{}, fmt.Errorf("sync %s after %d pages, %d resources: %s %s", status.state, status.pages, status.resources, status.errClass, status.message)
	}
	var acc []time.Time
	refused := 0
	for _, h := range sb.RateRecord("client-1") {
		if h.Accepted {
			acc = append(acc, h.At)
		} else {
			refused++
		}
	}
	if len(acc) < 2 {
		return result{}, errors.New("the sandbox accepted fewer than 2 requests")
	}
	span := acc[len(acc)-1].Sub(acc[0])
	rate := float64(len(acc)) / (span + window).Seconds()
	return result{pages: status.pages, resources: status.resources, limited: refused, maxWindow: slidingwindow.MaxIn(acc, window),
		wall: wall, share: rate / (float64(o.limit) / window.Seconds()),
		spanShare: float64(len(acc)-1) / span.Seconds() / (float64(o.limit) / window.Seconds())}, nil
}
