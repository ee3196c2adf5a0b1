// Command fleet is the benchmark of issue 3: importing credentials through
// the admin API as `tokenrelay credentials import` does (time and Redis
// memory), and a mixed fleet of every kind of credential with run-time
// lifetimes from 5 minutes to 24 hours, compressed, renewing for a
// sustained run: renewals per second and the share of renewals that
// happened before their token's two-thirds point.
//
// It runs on the real Redis (a leased database of its own) and NATS, with
// the vendor sandbox in process:
//
//	go run ./bench/fleet [-import 100000] [-fleet 3000] [-speedup 360] [-duration 3m]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tokenrelay/tokenrelay/bench/internal/benchdb"
)

func main() {
	var o options
	flag.StringVar(&o.redisAddr, "redis", envOr("REDIS_ADDR", "127.0.0.1:6379"), "Redis address")
	flag.StringVar(&o.natsURL, "nats", envOr("NATS_URL", "nats://127.0.0.1:4222"), "NATS URL")
	flag.IntVar(&o.importN, "import", 100_000, "credentials to import (0 skips the import)")
	flag.IntVar(&o.chunk, "chunk", 500, "lines per import request (the CLI sends 500)")
	flag.IntVar(&o.fleetN, "fleet", 3000, "credentials in the mixed fleet (0 skips it)")
	flag.Float64Var(&o.speedup, "speedup", 360, "time compression of the token lifetimes (360: 24h lives 4m)")
	flag.DurationVar(&o.warmup, "warmup", 30*time.Second, "run time before the measured window")
	flag.DurationVar(&o.duration, "duration", 3*time.Minute, "measured window of the fleet run")
	flag.IntVar(&o.concurrency, "concurrency", 64, "worker concurrency")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "bench/fleet:", err)
		os.Exit(1)
	}
}

type options struct {
	redisAddr, natsURL     string
	importN, chunk, fleetN int
	speedup                float64
	warmup, duration       time.Duration
	concurrency            int
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func run(ctx context.Context, o options) error {
	lease, err := benchdb.Lease(ctx, o.redisAddr, "bench-fleet", -1)
	if err != nil {
		return err
	}
	defer lease.Release()
	fmt.Printf("# bench/fleet: Redis %s DB %d, NATS %s, %s\n\n", o.redisAddr, lease.Number(), o.natsURL, time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	if o.importN > 0 {
		if err := runImport(ctx, o, lease.Number()); err != nil {
			return fmt.Errorf("import: %w", err)
		}
	}
	if o.fleetN > 0 {
		if err := runFleet(ctx, o, lease.Number()); err != nil {
			return fmt.Errorf("fleet: %w", err)
		}
	}
	return nil
}
