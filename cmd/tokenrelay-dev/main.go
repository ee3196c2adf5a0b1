// Command tokenrelay-dev runs the whole pipeline in one process for a
// newcomer's first five minutes (package devmode): embedded Redis and NATS,
// the vendor sandbox, the scheduler and a worker, and a live view. It is
// `make run`. It is a command of its own, not a subcommand of the
// operator's tokenrelay, so that the operator CLI (and the image) links
// neither miniredis, nor nats-server, nor the sandbox.
//
// With -traces (make run-traced) it also starts a Jaeger (built from
// tools/jaeger into the user cache the first time, which takes minutes),
// sends every renewal's trace to it and prints its address.
//
//	tokenrelay-dev [-credentials N] [-token-lifetime D] [-demo=false] [-log FILE] [-traces]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tokenrelay/tokenrelay/internal/devmode"
	"github.com/tokenrelay/tokenrelay/internal/jaegerdev"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("tokenrelay-dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	n := fs.Int("credentials", 20, "number of sandbox credentials")
	lifetime := fs.Duration("token-lifetime", 9*time.Second, "how long sandbox tokens really live")
	demo := fs.Bool("demo", true, "inject an outage and a revocation now and then")
	logFile := fs.String("log", "", "log file (default: tokenrelay-dev.log in the temp dir)")
	traces := fs.Bool("traces", false, "start a Jaeger (built from tools/jaeger the first time) and send the pipeline's traces to it")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	tracesURL := ""
	if *traces {
		fmt.Fprintln(stderr, "tokenrelay-dev: starting Jaeger (the first time it is built from tools/jaeger, which takes minutes)")
		j, err := jaegerdev.Start(ctx)
		if err != nil {
			fmt.Fprintf(stderr, "tokenrelay-dev: %v\n", err)
			return 1
		}
		defer j.Stop()
		// The OTLP exporter reads its endpoint from the environment, as
		// a deployed tokenrelay's does.
		os.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", j.OTLPEndpoint)
		os.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
		tracesURL = j.SearchURL()
		fmt.Fprintf(stderr, "tokenrelay-dev: traces at %s\n", tracesURL)
	}
	live := false
	if f, ok := stdout.(*os.File); ok {
		if fi, err := f.Stat(); err == nil {
			live = fi.Mode()&os.ModeCharDevice != 0 // a terminal: redraw in place
		}
	}
	err := devmode.Run(ctx, devmode.Options{Credentials: *n, TokenLifetime: *lifetime, Out: stdout, Live: live, LogFile: *logFile, Demo: *demo, TracesURL: tracesURL})
	if err != nil {
		fmt.Fprintf(stderr, "tokenrelay-dev: %v\n", err)
		return 1
	}
	return 0
}
