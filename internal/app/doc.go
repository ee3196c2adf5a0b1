// Package app builds tokenrelay's processes from a validated configuration:
// the connections (Redis, NATS, the JetStream stream), the credential store,
// the vendor adapters, and the two long-running roles, the scheduler (when)
// and the worker (do). cmd/scheduler, cmd/worker and the dev mode are thin
// wrappers around it.
package app
