// Package app builds tokenrelay's processes from a validated configuration:
// the connections (Redis, NATS, the JetStream stream), the credential store,
// the vendor adapters, and the two long-running roles, the scheduler (when)
// and the worker (do), with the worker's HTTP routes. It only wires: what
// the roles do lives in the packages they are built from (the web surfaces
// in internal/web, retry-now in the store, the re-seal in internal/reseal).
// cmd/scheduler, cmd/worker and the dev mode (internal/devmode) are thin
// wrappers around it.
package app
