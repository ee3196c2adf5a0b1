// Package requests runs vendor API calls for batch data-sync on behalf of
// other services, through the shared rate budget, and publishes their
// results as events.
//
// A request (jobs.Request) is submitted from Go (Submitter.Submit), as JSON on
// the NATS subject request.submit (Service) or to POST /admin/requests. It is
// validated at once (known credential, method, relative path, body size,
// deadline...) and answered {"id","accepted":true} or {"error","message"};
// nothing is queued when it is refused.
//
// # Fairness: queued per batch, released round robin at the budget's pace
//
// asynq's queues are first in, first out: 100,000 runnable tasks of one batch
// would make a 50-request batch submitted after them wait for all of them.
// So an accepted request does not become a task at once. It waits in a
// Redis list of its own batch for its vendor account (q:<account>:<batch>),
// and the Feeder (one active per deployment, elected by a lease) releases
// each account's requests into asynq one batch after another in turn, only
// as many as the account's budget has room for (Budget.Status), minus those
// already released that have not yet taken it, and never more than
// FeederOptions.MaxInFlight at once. A new batch joins the ring and gets
// every other slot from then on; the big one keeps the rest.
//
// # Tasks carry groups
//
// The feeder puts the requests it releases together (of one account, at
// most FeederOptions.GroupSize, 64 by default) into one task of type
// vendor:request on the default queue, so that asynq's enqueue, dequeue and
// done are paid once per group; the handler runs them side by side, starts
// them in one step, reads each credential's token once, and writes the
// outcomes of those that end together in one step. A request that must wait
// leaves its group on its own, and the others go on (group.go). With the
// submission (one step, credential check included) a request costs about
// 1.3 Redis round trips end to end (BENCHMARKS.md, issue 11).
//
// # Running a request
//
// The Handler checks that the request is still wanted (not done already,
// batch not cancelled, deadline not passed, idempotency key not used), reads
// the credential's current token from the store (one close to expiry is
// refreshed first, through the same fenced refresh as the scheduler's), takes
// one unit of the account's budget, and sends the request with the vendor's
// required headers. A request the budget has no permit for goes back to the
// front of its batch's queue, and the feeder releases it again as soon as the
// budget has room (asynq schedules retries to the whole second, too coarse to
// keep a compressed window full). What must wait longer, a 429's pause or a
// token being refreshed, goes back to asynq as a *jobs.RetryAt error
// (jobs.RetryDelay and jobs.IsFailure read it); a request of a group goes to a
// task of its own, due then. Neither is a failure or holds a worker. A 401 brings one
// refresh and one retry; 5xx, 408, timeouts and resets back off exponentially
// with jitter up to jobs.RequestMaxRetry; other 4xx fail at once. The
// outcome event (request.completed/request.failed) is written to the Redis
// outbox in the same step that marks the request final, so a request has
// one outcome event however often its task runs (a worker that dies after
// sending and before that step means the request is sent again). A body above the inline limit
// goes to a JetStream object store bucket and the event refers to it.
//
// # Trust boundary
//
// A request, its batch and its idempotency key belong to one (vendor,
// credential); patient data kept in Redis is sealed (see scope.go): the
// queued request and its task payload (entry.go), the outcome
// under an idempotency key, and the outcome event in the outbox
// (events.SealOutboxEntry, opened by the relay as it publishes). asynq's
// error text of a retried request names its failure class and status, not
// the vendor's words. How long each copy lives: a queued request until it
// is released (then its task until it ends; asynq keeps an archived task,
// sealed, up to 90 days); a b: record SubmitterOptions.TTL (7 days) from
// its last submission, an r: record FeederOptions.TTL (the same) from the
// request's first release (or its end, for a request of a cancelled
// batch); an idempotency outcome HandlerDeps.IdempotencyTTL (24 hours); an
// outbox entry until the relay has published it.
//
// A queued request has no key of its own (a million of them must fit in
// 300 MB, and a key costs its slot in the keyspace and in the expiry table
// besides its name): it is its entry in its batch's queue and its id in the
// queued set, which keeps the id from reuse. Release (or the end of a
// cancelled batch) moves the id from the set to its r: hash in one step;
// the scripts read a missing r: hash as queued.
//
// Redis layout, under the prefix P (the store's prefix followed by "req:");
// <cb> is a credential's batch, the hash of its vendor and credential and
// the batch id (scopedBatch):
//
//	P r:<id>              hash    a released request's state, releases (and, once it runs, attempts...)
//	P queued              set     ids of requests queued and never released (they have no r:)
//	P b:<cb>              hash    a batch's counts, times and cancel flag
//	P q:<account>:<cb>    list    requests waiting to be released (sealed, binary: entry.go)
//	P ring:<account>      list    the account's batches with requests waiting
//	P accounts            hash    accounts with requests waiting -> vendor
//	P pending:<account>   zset    released, budget not yet taken (id -> ms)
//	P releasing:<account> hash    released, not yet enqueued (id -> sealed payload)
//	P cancelling          set     queues of cancelled batches to empty
//	P idem:<hash>         string  SHA-256 of vendor, credential, key -> first request's id, then its sealed outcome
//	P feeder              string  the active feeder's lease
//
// All of these (and the outbox) must live in one Redis Cluster slot: give
// the store a prefix with a hash tag, as the store's doc says.
package requests
