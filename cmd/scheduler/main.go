// Command scheduler decides when: it enqueues token refreshes ahead of
// expiry, reconciles so that no credential is without a pending refresh, and
// relays the event outbox to NATS JetStream. Run any number of replicas.
//
//	scheduler -config tokenrelay.yaml
package main

import (
	"os"

	"github.com/tokenrelay/tokenrelay/internal/app"
)

func main() {
	os.Exit(app.Main("scheduler", os.Args[1:], os.Stdout, os.Stderr, app.RunScheduler))
}
