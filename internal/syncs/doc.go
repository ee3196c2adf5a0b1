// Package syncs pages a vendor search to its end for other services: a
// sync is (vendor, credential, search, mode full|incremental), started
// from Go (Runner.Start with a jobs.Sync), NATS (sync.start, answered as
// request.submit is), the admin API or the CLI.
//
// # Every page is a request job
//
// A sync fetches nothing itself. Each page is a request job (package
// requests) with jobs.Request.Sync set, queued in the sync's batch: it
// waits its turn in the feeder's round robin, spends the vendor account's
// shared budget, waits out 429s, refreshes on a 401 and retries 5xx as
// any request does. Its outcome comes back here (requests.Pages) instead
// of a request event. Only one page of a sync is in flight at a time.
//
// # Cursor and checkpoint
//
// PageDone reads the page (a FHIR Bundle's entry resources and
// Bundle.link[relation=next], or a JSON list and an RFC 8288 Link header
// rel="next"), and in one Redis step (commit.lua) records the page number,
// the cursor (next link, counts) and appends the sync.page event to the
// outbox; a page already recorded is not recorded again. Only then does it
// queue the next page (request id sync.<id>.<page>, so queueing it twice
// is harmless) and let the request end. A worker killed mid-page leaves
// the page's request unfinished: it runs again elsewhere, fetches that
// page again (at most one page fetched twice) and the sync goes on from
// its cursor. A next link is followed only when it stays on the vendor's
// base URL (same scheme, host and port, under the base path, no dot
// segments); any other ends the sync (next_link_refused). A sync has a
// page cap (Deps.MaxPages, class page_cap).
//
// # Incremental syncs and the mark
//
// Each (vendor, credential, resource, query without paging and filter
// parameters) has a high-water mark: the vendor's clock when the first
// page of a run was served (the Bundle's meta.lastUpdated, else the Date
// header), never a worker's. It is written with the last page's commit,
// so it moves only when a run reaches the end. An incremental run asks
// _lastUpdated=gt<mark - Deps.Overlap> (or its kind's own filter,
// kind.Spec.Since: HealthSync's updated_since), so what changed while the
// previous run paged is fetched again; duplicates carry the resource's
// version (FHIR meta.versionId and lastUpdated) for consumers to drop. With no mark yet, an incremental run is a full one.
//
// # Ending, cancelling, trust
//
// The last page's commit also writes sync.completed; a failure (the page
// request's, a bad page, the cap, a refused link) or a cancel writes
// sync.failed with the cursor, in one step with the state (end.lua).
// Cancel marks the sync; it stops after the page in flight. A sync, its
// status and its cancel belong to its (vendor, credential): another
// credential's caller gets not_found. What a sync keeps in Redis that may
// name patients (its search, cursor and error) is sealed with the master
// key, as are its outbox events.
//
// Redis layout, under P = the store's prefix + "sync:":
//
//	P s:<id>       hash    a sync's state, counts, times, sealed search, cursor and error
//	P all          zset    sync ids by start time (operator pages)
//	P running:<v>  zset    vendor v's running sync ids by last page (the
//	                       tokenrelay_syncs_running gauge, Runner.Running)
//	P mark:<hash>  string  a search's high-water mark (RFC 3339)
package syncs
