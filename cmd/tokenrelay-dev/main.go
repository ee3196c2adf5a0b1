// Command tokenrelay-dev runs the whole pipeline in one process for a
// newcomer's first five minutes (package devmode): embedded Redis and NATS,
// the vendor sandbox, the scheduler and a worker, and a live view. It is
// `make run`. It is a command of its own, not a subcommand of the
// operator's tokenrelay, so that the operator CLI (and the image) links
// neither miniredis, nor nats-server, nor the sandbox.
//
//	tokenrelay-dev [-credentials N] [-token-lifetime D] [-demo=false] [-log FILE]
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
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	live := false
	if f, ok := stdout.(*os.File); ok {
		if fi, err := f.Stat(); err == nil {
			live = fi.Mode()&os.ModeCharDevice != 0 // a terminal: redraw in place
		}
	}
	err := devmode.Run(ctx, devmode.Options{Credentials: *n, TokenLifetime: *lifetime, Out: stdout, Live: live, LogFile: *logFile, Demo: *demo})
	if err != nil {
		fmt.Fprintf(stderr, "tokenrelay-dev: %v\n", err)
		return 1
	}
	return 0
}
