// Package metrics exposes tokenrelay's Prometheus metrics: credential states
// and token times read from the store, renewal/failure/rotation/revocation
// counts derived from events, outbox depth and lag, and asynq's queue
// metrics.
//
// Everything is registered on one registry (NewRegistry) that the app
// serves at /metrics. Store-derived gauges (Credentials, Outbox) are read on
// scrape, the way cert-manager exports certificate expiry: they describe the
// whole installation, so every replica reports the same values (aggregate
// with max, not sum). Event counters (Events) are fed by the outbox relay's
// OnPublished hook, which runs only in the active relay, so each event is
// counted once cluster-wide: sum them over instances.
//
// Labels are bounded: vendor instance names (from the configuration),
// credential ids only on the one-series-per-credential token gauges, and
// fixed enums for states, error classes and revocation reasons. No metric
// carries a secret, a request id, a URL or a path.
package metrics
