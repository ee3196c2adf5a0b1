// Command worker does the work: it runs the asynq jobs (token refreshes,
// key rotations, request jobs, webhook polls), answers token requests and
// request submissions on NATS, and serves HTTP: health, /metrics, the
// webhook receiver, the admin API, the operator pages (/ui/), the queue
// dashboard (/asynqmon/) and the JWKS of signing keys. Run any number of
// replicas.
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
