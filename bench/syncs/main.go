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
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/tokenrelay/tokenrelay/bench/internal/relay"
	"github.com/tokenrelay/tokenrelay/bench/internal/roundtrips"
	"github.com/tokenrelay/tokenrelay/internal/slidingwindow"
	"github.com/tokenrelay/tokenrelay/internal/syncs"
	"github.com/tokenrelay/tokenrelay/jobs"
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
	trips := roundtrips.New(".")
	rdb, db, done, err := relay.Redis(ctx, o.redisAddr, "bench-syncs", trips)
	if err != nil {
		return err
	}
	defer done()

	var md strings.Builder
	md.WriteString(relay.Machine(o.redisAddr, db))
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
	w, err := relay.New(ctx, rdb, relay.Options{SandboxLimit: o.limit, SandboxWindow: window, Configured: o.limit,
		Slack: o.vendorSlack, Resources: o.resources, TokenLifetime: time.Hour})
	if err != nil {
		return result{}, err
	}
	defer w.Close()
	runner, err := syncs.New(syncs.Deps{Redis: rdb, Prefix: relay.Prefix, Submitter: w.Sub, Credentials: w.Store, Vendors: w.Vendors,
		Keyring: w.Keyring(), Logger: zerolog.Nop()})
	if err != nil {
		return result{}, err
	}
	stop, err := w.Start(ctx, relay.StartOptions{Workers: o.workers, Concurrency: o.concurrency, TaskCheckInterval: o.taskCheck, Pages: runner})
	if err != nil {
		return result{}, err
	}
	defer stop()

	s := jobs.NewSync(relay.Credential, "Patient", jobs.SyncFull)
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
		ss, err := runner.Status(roundtrips.Skip(ctx), relay.Vendor, relay.Credential, s.ID)
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
	acc, refused := w.RateRecord()
	if len(acc) < 2 {
		return result{}, errors.New("the sandbox accepted fewer than 2 requests")
	}
	span := acc[len(acc)-1].Sub(acc[0])
	rate := float64(len(acc)) / (span + window).Seconds()
	return result{pages: status.pages, resources: status.resources, limited: refused, maxWindow: slidingwindow.MaxIn(acc, window),
		wall: wall, share: rate / (float64(o.limit) / window.Seconds()),
		spanShare: float64(len(acc)-1) / span.Seconds() / (float64(o.limit) / window.Seconds())}, nil
}
