// Command tokenrelay is the operator's command line:
//
//	tokenrelay dev            run the whole pipeline in one process (make run)
//	tokenrelay credentials    add, import, list, rotate, revoke and re-enable credentials
//	                          on a running installation, through its admin API
//	tokenrelay batch          follow (progress bar) or cancel a batch of request jobs
//	tokenrelay keys           master keys: status, re-seal after a rotation, wrap by a KMS
//	tokenrelay version        the version, commit and Go version (also -version)
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

	"github.com/tokenrelay/tokenrelay/internal/buildinfo"
	"github.com/tokenrelay/tokenrelay/internal/devmode"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, buildinfo.Read())
		return 0
	case "dev":
		fs := flag.NewFlagSet("tokenrelay dev", flag.ContinueOnError)
		fs.SetOutput(stderr)
		n := fs.Int("credentials", 20, "number of sandbox credentials")
		lifetime := fs.Duration("token-lifetime", 9*time.Second, "how long sandbox tokens really live")
		demo := fs.Bool("demo", true, "inject an outage and a revocation now and then")
		logFile := fs.String("log", "", "log file (default: tokenrelay-dev.log in the temp dir)")
		if err := fs.Parse(args[1:]); err != nil {
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
			fmt.Fprintf(stderr, "tokenrelay dev: %v\n", err)
			return 1
		}
		return 0
	case "credentials":
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return credentials(ctx, args[1:], os.LookupEnv, os.Stdin, stdout, stderr)
	case "batch":
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return batch(ctx, args[1:], os.LookupEnv, stdout, stderr)
	case "sync":
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return syncCmd(ctx, args[1:], os.LookupEnv, stdout, stderr)
	case "keys":
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return keys(ctx, args[1:], os.LookupEnv, os.Stdin, stdout, stderr)
	default:
		usage(stderr)
		return 2
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: tokenrelay dev [-credentials N] [-token-lifetime D] [-demo=false]")
	fmt.Fprintln(w, "       tokenrelay credentials list|add|import|rotate|revoke|enable ...")
	fmt.Fprintln(w, "       tokenrelay batch status|cancel ID -vendor V -credential C")
	fmt.Fprintln(w, "       tokenrelay sync start|status|cancel ...")
	fmt.Fprintln(w, "       tokenrelay keys status|reseal|wrap ...")
	fmt.Fprintln(w, "       tokenrelay version")
}
