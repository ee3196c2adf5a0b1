// Command tokenrelay is the operator's command line:
//
//	tokenrelay credentials    add, import, list, rotate, revoke and re-enable credentials
//	                          on a running installation, through its admin API
//	tokenrelay batch          follow (progress bar) or cancel a batch of request jobs
//	tokenrelay keys           master keys: status, re-seal after a rotation, wrap by a KMS
//	tokenrelay version        the version, commit and Go version (also -version)
//
// The dev mode (the whole pipeline in one process) is its own command,
// cmd/tokenrelay-dev (make run).
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/tokenrelay/tokenrelay/internal/buildinfo"
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
		// The dev mode is a command of its own, so that this one links
		// neither miniredis, nor nats-server, nor the sandbox.
		fmt.Fprintln(stderr, "tokenrelay dev moved: run `make run` (go run ./cmd/tokenrelay-dev)")
		return 2
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
	fmt.Fprintln(w, "usage: tokenrelay credentials list|add|import|rotate|revoke|enable ...")
	fmt.Fprintln(w, "       tokenrelay batch status|cancel ID -vendor V -credential C")
	fmt.Fprintln(w, "       tokenrelay sync start|status|cancel ...")
	fmt.Fprintln(w, "       tokenrelay keys status|reseal|wrap ...")
	fmt.Fprintln(w, "       tokenrelay version")
}
