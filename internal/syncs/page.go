package syncs

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/jobs"
	"github.com/tokenrelay/tokenrelay/vendors"
)

// Sync states.
const (
	StateRunning   = "running"
	StateCompleted = "completed"
	StateFailed    = "failed"
	StateCancelled = "cancelled"
)

// Failure classes of a sync of its own (a page request's failure keeps the
// request's class).
const (
	ClassCancelled       = "cancelled"
	ClassPageCap         = "page_cap"
	ClassNextLinkRefused = "next_link_refused"
	ClassBadPage         = "bad_page"
	ClassTooLarge        = "too_large"
)

// record is a sync's record in Redis.
type record struct {
	id, vendor, credential, resource, mode, batch, state string
	page, resources, total                               int
	started, updated, ended                              time.Time
	cancel                                               bool
	errorClass                                           string
	sealedSpec, sealedCursor, sealedError                string
}

// errNoSync: no record of the sync (never started, or expired).
var errNoSync = errors.New("syncs: no such sync")

func (r *Runner) load(ctx context.Context, id string) (record, error) {
	m, err := r.d.Redis.HGetAll(ctx, r.keys.sync(id)).Result()
	if err != nil {
		return record{}, fmt.Errorf("syncs: read sync %s: %w", id, err)
	}
	if len(m) == 0 || m["state"] == "" {
		return record{}, errNoSync
	}
	atoi := func(k string) int { n, _ := strconv.Atoi(m[k]); return n }
	ms := func(k string) time.Time {
		n, err := strconv.ParseInt(m[k], 10, 64)
		if err != nil || n == 0 {
			return time.Time{}
		}
		return time.UnixMilli(n).UTC()
	}
	rec := record{id: id, vendor: m["vendor"], credential: m["credential"], resource: m["resource"], mode: m["mode"],
		batch: m["batch"], state: m["state"], page: atoi("page"), resources: atoi("resources"), total: -1,
		started: ms("started"), updated: ms("updated"), ended: ms("ended"), cancel: m["cancel"] == "1",
		errorClass: m["error_class"], sealedSpec: m["spec"], sealedCursor: m["cursor"], sealedError: m["error"]}
	if t, ok := m["total"]; ok {
		rec.total, _ = strconv.Atoi(t)
	}
	return rec, nil
}

func (r *Runner) cursorOf(rec record) (cursor, error) {
	var c cursor
	if rec.sealedCursor == "" {
		return c, nil
	}
	err := r.open(rec.vendor, rec.credential, rec.id, "cursor", rec.sealedCursor, &c)
	return c, err
}

// forPage loads the sync a page request belongs to; ok is false (and the
// answer is dropped) when the request is not a running sync's page of
// the same credential.
func (r *Runner) forPage(ctx context.Context, req jobs.Request) (rec record, n int, ok bool, err error) {
	n, ok = pageOfRequest(req.Sync, req.ID)
	if !ok {
		r.d.Logger.Warn().Str("request", req.ID).Msg("sync page request with a malformed id; dropped")
		return rec, 0, false, nil
	}
	rec, err = r.load(ctx, req.Sync)
	if errors.Is(err, errNoSync) {
		r.d.Logger.Warn().Str("sync", req.Sync).Msg("page of an unknown sync; dropped")
		return rec, 0, false, nil
	}
	if err != nil {
		return rec, 0, false, err
	}
	if rec.vendor != req.Vendor || rec.credential != req.Credential {
		r.d.Logger.Warn().Str("sync", req.Sync).Msg("page request of another credential than its sync's; dropped")
		return rec, 0, false, nil
	}
	return rec, n, rec.state == StateRunning, nil
}

// PageDone implements requests.Pages: it commits the page (cursor and
// sync.page event in one step, once), then queues the next page, or ends
// the sync: completed at the last page, failed at the page cap or a next
// link off the vendor's base URL, cancelled when asked.
func (r *Runner) PageDone(ctx context.Context, req jobs.Request, ans vendors.Answer) error {
	rec, n, ok, err := r.forPage(ctx, req)
	if err != nil || !ok {
		return err
	}
	var sp spec
	if err := r.open(rec.vendor, rec.credential, rec.id, "spec", rec.sealedSpec, &sp); err != nil {
		return err
	}
	cur, err := r.cursorOf(rec)
	if err != nil {
		return err
	}
	p, perr := parsePage(ans)
	if perr != nil {
		return r.end(ctx, rec, StateFailed, ClassBadPage, fmt.Sprintf("page %d: %v", n, perr), cur)
	}
	nextPath, nextQuery, linkErr := "", jobs.Query(nil), error(nil)
	if p.next != "" {
		var q map[string][]string
		nextPath, q, linkErr = onBase(r.d.Vendors[rec.vendor].BaseURL, p.next)
		nextQuery = jobs.Query(q)
	}
	if n > rec.page {
		next := cursor{SyncCursor: events.SyncCursor{Page: n, Resources: rec.resources + p.count}, Mark: cur.Mark}
		if linkErr == nil {
			next.Next = p.next
		}
		if n == 1 {
			next.Mark = p.served
		}
		res, err := r.commit(ctx, rec, sp, n, p, next)
		if err != nil || res == "ENDED" {
			return err
		}
		if res == "OK" {
			r.d.Metrics.page(rec.vendor, p.count)
		}
		cur = next
		if p.next == "" {
			if res == "OK" {
				r.d.Metrics.ended(rec.vendor, StateCompleted)
				r.d.Logger.Info().Str("sync", rec.id).Str("vendor", rec.vendor).Str("credential", rec.credential).
					Int("pages", n).Int("resources", next.Resources).Msg("sync completed")
			}
			return nil
		}
	} else if p.next == "" {
		return nil // committed as the last page before: the sync has ended
	}
	if linkErr != nil {
		return r.end(ctx, rec, StateFailed, ClassNextLinkRefused, fmt.Sprintf("page %d: %v", n, linkErr), cur)
	}
	cancel, err := r.d.Redis.HGet(ctx, r.keys.sync(rec.id), "cancel").Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("syncs: read sync %s: %w", rec.id, err)
	}
	if cancel == "1" {
		return r.end(ctx, rec, StateCancelled, ClassCancelled, fmt.Sprintf("cancelled after page %d", n), cur)
	}
	if n >= r.d.MaxPages {
		return r.end(ctx, rec, StateFailed, ClassPageCap, fmt.Sprintf("the search has more than %d pages (the page cap)", r.d.MaxPages), cur)
	}
	_, err = r.d.Submitter.Submit(ctx, jobs.Request{ID: pageRequestID(rec.id, n+1), Vendor: rec.vendor, Credential: rec.credential,
		Method: "GET", Path: nextPath, Query: nextQuery, Batch: sp.Batch, Sync: rec.id})
	var se *Error
	switch {
	case err == nil:
		return nil
	case !errors.As(err, &se) || se.Code == CodeUnavailable:
		return fmt.Errorf("syncs: queue page %d of %s: %w", n+1, rec.id, err)
	case isDuplicate(err):
		return nil // queued before this run of the page
	case se.Code == CodeUnknownCredential:
		return r.end(ctx, rec, StateFailed, "credential", se.Message, cur)
	case se.Code == "batch_cancelled":
		return r.end(ctx, rec, StateCancelled, ClassCancelled, "the sync's batch was cancelled", cur)
	default:
		return r.end(ctx, rec, StateFailed, ClassNextLinkRefused, fmt.Sprintf("page %d's next link cannot be requested: %s", n, se.Message), cur)
	}
}

// PageFailed implements requests.Pages: the sync fails (or is cancelled,
// when its batch was) at its cursor.
func (r *Runner) PageFailed(ctx context.Context, req jobs.Request, class, message string) error {
	rec, n, ok, err := r.forPage(ctx, req)
	if err != nil || !ok {
		return err
	}
	cur, err := r.cursorOf(rec)
	if err != nil {
		return err
	}
	state := StateFailed
	if class == ClassCancelled {
		state = StateCancelled
	}
	return r.end(ctx, rec, state, class, fmt.Sprintf("page %d: %s", n, message), cur)
}

// commit runs commit.lua for page n.
func (r *Runner) commit(ctx context.Context, rec record, sp spec, n int, p page, next cursor) (string, error) {
	now := r.d.Clock()
	data := events.SyncPage{SyncID: rec.id, Page: n}
	if len(p.resources) <= r.d.InlineLimit {
		data.Resources = p.resources
	} else {
		if r.d.Objects == nil {
			return "", r.end(ctx, rec, StateFailed, ClassTooLarge,
				fmt.Sprintf("page %d (%d bytes) is over the inline limit and no object store is configured", n, len(p.resources)), next)
		}
		name := rec.vendor + "/" + rec.credential + "/sync/" + rec.id + "/" + strconv.Itoa(n)
		info, err := r.d.Objects.PutBytes(ctx, name, p.resources)
		if err != nil {
			return "", fmt.Errorf("syncs: store page %d of %s: %w", n, rec.id, err)
		}
		data.BodyRef = &events.ObjectRef{Bucket: r.d.Bucket, Name: name, Size: len(p.resources), Digest: info.Digest}
	}
	pageEv, err := r.event(ctx, events.TypeSyncPage, rec, "page-"+strconv.Itoa(n), now, data)
	if err != nil {
		return "", err
	}
	sealedCursor, err := r.seal(rec.vendor, rec.credential, rec.id, "cursor", next)
	if err != nil {
		return "", err
	}
	total := ""
	if p.total >= 0 {
		total = strconv.Itoa(p.total)
	}
	final, doneEv, mark := "0", []any{"", "", ""}, ""
	if p.next == "" {
		final = "1"
		doneEv, err = r.event(ctx, events.TypeSyncCompleted, rec, "completed", now,
			events.SyncCompleted{SyncID: rec.id, Pages: n, Resources: next.Resources, Mark: next.Mark.UTC()})
		if err != nil {
			return "", err
		}
		if !next.Mark.IsZero() {
			mark = next.Mark.UTC().Format(time.RFC3339Nano)
		}
	}
	res, err := scriptCommit.Run(ctx, r.d.Redis, []string{r.keys.sync(rec.id), r.outbox, sp.MarkKey, r.keys.running(rec.vendor)},
		n, sealedCursor, p.count, total, now.UnixMilli(), pageEv[0], pageEv[1], pageEv[2],
		final, doneEv[0], doneEv[1], doneEv[2], mark, int64(r.d.TTL/time.Second), rec.id).Text()
	if err != nil {
		return "", fmt.Errorf("syncs: commit page %d of %s: %w", n, rec.id, err)
	}
	return res, nil
}

// end stops a running sync with its sync.failed event, once.
func (r *Runner) end(ctx context.Context, rec record, state, class, msg string, cur cursor) error {
	now := r.d.Clock()
	ev, err := r.event(ctx, events.TypeSyncFailed, rec, "failed", now,
		events.SyncFailed{SyncID: rec.id, Class: class, Message: msg, Cursor: cur.SyncCursor})
	if err != nil {
		return err
	}
	sealedMsg, err := r.seal(rec.vendor, rec.credential, rec.id, "error", msg)
	if err != nil {
		return err
	}
	res, err := scriptEnd.Run(ctx, r.d.Redis, []string{r.keys.sync(rec.id), r.outbox, r.keys.running(rec.vendor)},
		state, class, sealedMsg, now.UnixMilli(), ev[0], ev[1], ev[2], int64(r.d.TTL/time.Second), rec.id).Text()
	if err != nil {
		return fmt.Errorf("syncs: end %s: %w", rec.id, err)
	}
	if res == "OK" {
		r.d.Metrics.ended(rec.vendor, state)
		r.d.Logger.Info().Str("sync", rec.id).Str("vendor", rec.vendor).Str("credential", rec.credential).
			Str("state", state).Str("error_class", class).Int("pages", cur.Page).Msg("sync ended before its last page")
	}
	return nil
}

// event builds a sync event with an id derived from the sync and what it
// says (a re-publish is deduplicated), sealed for the outbox: id,
// subject, sealed event. It carries ctx's trace context (the page
// request's run), so the relay publishes it under the sync's trace.
func (r *Runner) event(ctx context.Context, typ string, rec record, what string, now time.Time, data any) ([]any, error) {
	env, err := events.New(typ, rec.vendor, rec.credential, now, data)
	if err != nil {
		return nil, err
	}
	env = env.Traced(ctx)
	env.ID = "sync-" + rec.id + "-" + what
	values, err := events.SealOutboxEntry(r.d.Keyring, env)
	if err != nil {
		return nil, fmt.Errorf("syncs: event of %s: %w", rec.id, err)
	}
	return []any{env.ID, env.Subject, values[5]}, nil
}
