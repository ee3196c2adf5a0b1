// Command worker does the work: it runs refresh (and later request and poll)
// jobs, answers token requests on NATS, and serves HTTP (health, and later
// webhooks, metrics and the admin API). Run any number of replicas.
//
//	worker -config tokenrelay.yaml
package main

import (
	"context"
	"os"

	"github.com/tokenrelay/tokenrelay/internal/app"
)

func main() {
	os.Exit(app.Main("worker", os.Args[1:], os.Stdout, os.Stderr, func(ctx context.Context, env *app.Env) error {
		return app.RunWorker(ctx, env, app.WorkerOptions{})
	}))
}
