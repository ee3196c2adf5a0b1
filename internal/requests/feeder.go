package requests

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/budget"
	"github.com/tokenrelay/tokenrelay/internal/lease"
	"github.com/tokenrelay/tokenrelay/internal/seal"
	"github.com/tokenrelay/tokenrelay/jobs"
)

// Enqueuer puts tasks on asynq's queues (*asynq.Client satisfies it).
type Enqueuer interface {
	EnqueueContext(ctx context.Context, task *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error)
}

var _ Enqueuer = (*asynq.Client)(nil)

// Defaults of FeederOptions.
const (
	DefaultMaxInFlight    = 256
	DefaultPendingTimeout = 30 * time.Second
	DefaultFeedInterval   = 10 * time.Millisecond
	DefaultFeederLease    = 5 * time.Second
	DefaultGroupSize      = 64
)

// FeederOptions configure a Feeder. Redis, Budget, Vendors and Enqueuer are
// required.
type FeederOptions struct {
	Redis redis.UniversalClient
	// Prefix is the store's key prefix. Default "tokenrelay:".
	Prefix   string
	Budget   Budget
	Vendors  map[string]config.Vendor
	Enqueuer Enqueuer
	// MaxInFlight bounds, per account, the requests released to asynq that
	// have not yet taken their budget (with a limit, the budget's room
	// bounds them too). Default 256: four full groups of GroupSize waiting
	// for a slot or for their takes (a group past its takes no longer
	// counts, however long its sends take), enough to keep the asynq slots
	// of a few workers busy; a batch submitted later waits behind at most
	// that many.
	MaxInFlight int
	// PendingTimeout is how long a released request counts as not yet past
	// its budget take (a worker that died holding it). Default 30s.
	PendingTimeout time.Duration
	// Interval is how often the feeder looks for work when idle. Default 10ms.
	Interval time.Duration
	// BulkReserve is the fraction of a limit the budget keeps from bulk
	// requests; it must be budget.Options.PriorityReserve. Default 0.01
	// (the budget's default); negative: none.
	BulkReserve float64
	// LeaseTTL is the active feeder's lease (one feeder releases at a
	// time; the others stand by). Default 5s.
	LeaseTTL time.Duration
	// GroupSize is the most requests one task carries (group.go): the
	// requests released in one pass are enqueued in groups of at most this
	// many, in the order of their release. Default 64 (a group's task
	// costs ~11 Redis round trips whatever its size: asynq's enqueue,
	// dequeue and done, the start, the token read, the transitions; with
	// groups of 16 they were ~0.7 per request: BENCHMARKS.md, issue 11,
	// fifth pass); 1: a task per request.
	GroupSize int
	Logger    zerolog.Logger
	// Clock defaults to time.Now.
	Clock func() time.Time
	// Keyring seals the outcome events of the requests of cancelled
	// batches (the feeder passes queued requests on still sealed).
	// Required; the Submitter's.
	Keyring *seal.Keyring
	// TTL is how long a request's record is kept from its release (or,
	// for a request of a cancelled batch, from its end): a queued request
	// has none. The Submitter's TTL; default 7 days.
	TTL time.Duration
}

// Feeder releases queued requests into asynq, round robin across each
// account's batches, at the pace its budget allows (see the package doc).
type Feeder struct {
	o      FeederOptions
	keys   keys
	outbox string
	lease  *lease.Lease
	hold   map[string]time.Time // account -> not before
}

// NewFeeder checks o and returns a feeder to Run.
func NewFeeder(o FeederOptions) (*Feeder, error) {
	if o.Redis == nil || o.Budget == nil || o.Enqueuer == nil || o.Keyring == nil {
		return nil, errors.New("requests: the feeder needs Redis, the budget, an asynq client and the keyring")
	}
	if o.Prefix == "" {
		o.Prefix = events.DefaultPrefix
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = DefaultMaxInFlight
	}
	if o.PendingTimeout <= 0 {
		o.PendingTimeout = DefaultPendingTimeout
	}
	if o.Interval <= 0 {
		o.Interval = DefaultFeedInterval
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = DefaultFeederLease
	}
	if o.GroupSize <= 0 {
		o.GroupSize = DefaultGroupSize
	}
	if o.BulkReserve == 0 {
		o.BulkReserve = 0.01
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.TTL <= 0 {
		o.TTL = DefaultTTL
	}
	k := newKeys(o.Prefix)
	return &Feeder{o: o, keys: k, outbox: events.OutboxKey(o.Prefix),
		lease: lease.New(o.Redis, k.feederLease(), uuid.NewString(), o.LeaseTTL), hold: map[string]time.Time{}}, nil
}

// Run feeds until ctx ends. It returns nil then; other errors are logged
// and retried.
func (f *Feeder) Run(ctx context.Context) error {
	leader := false
	renewAt := time.Time{}
	defer func() {
		if leader {
			c, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			_ = f.lease.Release(c)
			cancel()
		}
	}()
	for ctx.Err() == nil {
		now := time.Now()
		if !now.Before(renewAt) {
			got, err := f.lease.Acquire(ctx)
			switch {
			case err != nil:
				if ctx.Err() == nil {
					f.o.Logger.Warn().Err(err).Msg("feeder: lease")
				}
				leader = false
			case got == lease.Taken:
				leader = true
				f.o.Logger.Info().Msg("feeder: active")
				if err := f.recover(ctx); err != nil {
					f.o.Logger.Warn().Err(err).Msg("feeder: re-enqueue released requests")
				}
			default:
				leader = got == lease.Extended
			}
			renewAt = now.Add(f.o.LeaseTTL / 3)
		}
		wait := f.o.Interval
		if leader {
			busy, err := f.Feed(ctx)
			if err != nil && ctx.Err() == nil {
				f.o.Logger.Warn().Err(err).Msg("feeder: release requests")
			}
			if busy {
				wait = 0
			}
		}
		if wait > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(wait):
			}
		}
	}
	return nil
}

// Feed makes one pass over the accounts with requests waiting: for each, it
// releases as many as its budget and the in-flight bound allow. It reports
// whether it released a full share somewhere (more may be ready at once).
// Run calls it; tests may call it directly.
func (f *Feeder) Feed(ctx context.Context) (bool, error) {
	// The cancelled queues and the accounts with requests waiting, in one
	// round trip.
	p := f.o.Redis.Pipeline()
	cancelled := p.SMembers(ctx, f.keys.cancelling())
	listed := p.HGetAll(ctx, f.keys.accounts())
	if _, err := p.Exec(ctx); err != nil {
		return false, fmt.Errorf("requests: list accounts: %w", err)
	}
	if err := f.drainCancelled(ctx, cancelled.Val()); err != nil {
		return false, err
	}
	accounts := listed.Val()
	busy := false
	var errs []error
	for account, vendor := range accounts {
		full, err := f.feedAccount(ctx, account, vendor)
		busy = busy || full
		errs = append(errs, err)
	}
	return busy, errors.Join(errs...)
}

func (f *Feeder) feedAccount(ctx context.Context, account, vendor string) (bool, error) {
	now := f.o.Clock()
	if until, ok := f.hold[account]; ok && now.Before(until) {
		return false, nil
	}
	delete(f.hold, account)
	pending := f.keys.pending(account)
	cutoff := now.Add(-f.o.PendingTimeout).UnixMilli()
	p := f.o.Redis.Pipeline()
	p.ZRemRangeByScore(ctx, pending, "-inf", fmt.Sprint(cutoff))
	count := p.ZCard(ctx, pending)
	if _, err := p.Exec(ctx); err != nil {
		return false, fmt.Errorf("requests: expire and count pending of %s: %w", account, err)
	}
	inFlight := count.Val()
	room := f.o.MaxInFlight - int(inFlight)
	if v, ok := f.o.Vendors[vendor]; ok {
		avail, next, err := f.room(ctx, account, budget.LimitOf(v))
		if err != nil {
			return false, err
		}
		if !next.IsZero() {
			f.hold[account] = next
		}
		if avail >= 0 {
			// Minus the requests released that have not taken their
			// permit yet. Some of those may be counted already (a worker
			// leases a block of permits and hands them out locally), so
			// this errs on the side of releasing too few for a moment
			// rather than too many; one released beyond the budget comes
			// back to the front of its queue, to go as soon as there is room.
			room = min(room, avail-int(inFlight))
		}
	}
	if room <= 0 {
		return false, nil
	}
	items, err := scriptRelease.Run(ctx, f.o.Redis,
		[]string{f.keys.ring(account), f.keys.accounts(), pending, f.keys.releasing(account), f.keys.cancelling(), f.keys.queued()},
		account, f.keys.queuePrefix(account), f.keys.batchPrefix(), room, now.UnixMilli(), f.keys.requestPrefix(), f.ttl(),
	).StringSlice()
	if err != nil {
		return false, fmt.Errorf("requests: release requests of %s: %w", account, err)
	}
	if err := f.enqueue(ctx, account, items); err != nil {
		return false, err
	}
	return len(items) == room, nil
}

// enqueue makes tasks of released payloads, in groups of at most
// GroupSize (one task each; group.go), then forgets them as released. A
// payload (a queued request's entry, entry.go) goes into its task as it
// is: only the worker that runs it opens it.
func (f *Feeder) enqueue(ctx context.Context, account string, items []string) error {
	return f.enqueueGroups(ctx, account, items, f.o.GroupSize, false)
}

// enqueueGroups enqueues items in groups of at most size. A task's id
// names its first request's release, as a task of a single request
// would: the same release enqueued twice (by recover) is one task; a
// release after a hand-back is a new one. Recovered items (recovered) go
// one to a task but as groups, whatever the group they were released in:
// a group's start skips a request another group already runs (start.lua),
// so a request whose first group's task was enqueued before its feeder
// died is sent by one of the two, not both.
func (f *Feeder) enqueueGroups(ctx context.Context, account string, items []string, size int, recovered bool) error {
	if len(items) == 0 {
		return nil
	}
	ids := make([]string, 0, len(items))
	var errs []error
	var group []groupEntry
	var srs []entryHead
	flush := func() {
		if len(group) == 0 {
			return
		}
		first := srs[0]
		var task *asynq.Task
		if len(group) == 1 && !recovered {
			task = jobs.NewRequestTaskPayload(first.ID, group[0].Entry)
		} else {
			payload, err := encodeGroup(group)
			if err != nil {
				errs = append(errs, err)
				group, srs = group[:0], srs[:0]
				return // stays in releasing: recover enqueues it
			}
			task = jobs.NewRequestTaskPayload(first.ID, payload)
		}
		_, err := f.o.Enqueuer.EnqueueContext(ctx, task, asynq.TaskID(jobs.RequestTaskID(first.ID)+":"+group[0].Release))
		if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
			errs = append(errs, fmt.Errorf("requests: enqueue %s and %d more: %w", first.ID, len(group)-1, err))
		} else {
			for i, sr := range srs {
				traceRelease(ctx, sr, group[i].Release)
				ids = append(ids, sr.ID)
			}
		}
		group, srs = group[:0], srs[:0]
	}
	for _, entry := range items {
		release, item, _ := strings.Cut(entry, "|")
		r, err := readEntry([]byte(item))
		if err != nil {
			errs = append(errs, fmt.Errorf("requests: released payload: %w", err))
			continue
		}
		group = append(group, groupEntry{Release: release, Entry: []byte(item)})
		srs = append(srs, r)
		if len(group) >= size {
			flush()
		}
	}
	flush()
	if len(ids) > 0 {
		if err := f.o.Redis.HDel(ctx, f.keys.releasing(account), ids...).Err(); err != nil {
			errs = append(errs, fmt.Errorf("requests: forget released: %w", err))
		}
	}
	return errors.Join(errs...)
}

// recover enqueues what a feeder released and may not have enqueued before
// it stopped, a task per request (the groups it was released in are not
// known). A request enqueued twice runs once when its first task has
// ended: a request that has ended is not run again; the first request of
// a group has the group's task id.
func (f *Feeder) recover(ctx context.Context) error {
	iter := f.o.Redis.Scan(ctx, 0, f.keys.releasingPrefix()+"*", 100).Iterator()
	var errs []error
	for iter.Next(ctx) {
		key := iter.Val()
		m, err := f.o.Redis.HGetAll(ctx, key).Result()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		items := make([]string, 0, len(m))
		for _, item := range m {
			items = append(items, item)
		}
		errs = append(errs, f.enqueueGroups(ctx, strings.TrimPrefix(key, f.keys.releasingPrefix()), items, 1, true))
	}
	errs = append(errs, iter.Err())
	return errors.Join(errs...)
}

// drainCancelled ends the queued requests of the cancelled batches'
// queues, a few hundred per pass, each with its request.failed (class
// cancelled) event.
func (f *Feeder) drainCancelled(ctx context.Context, queues []string) error {
	if len(queues) == 0 {
		return nil
	}
	const chunk = 200
	for _, q := range queues {
		items, err := f.o.Redis.LRange(ctx, q, 0, chunk-1).Result()
		if err != nil {
			return fmt.Errorf("requests: read cancelled queue: %w", err)
		}
		// The id, vendor, credential and batch are in clear in the entry
		// (in every form); nothing else is needed.
		var ended []jobs.Request
		for _, item := range items {
			if e, err := readEntry([]byte(item)); err == nil {
				ended = append(ended, jobs.Request{ID: e.ID, Vendor: e.Vendor, Credential: e.Credential, Batch: e.Batch})
			}
		}
		if err := f.unqueue(ctx, ended); err != nil {
			return err
		}
		for _, r := range ended {
			if err := cancelQueued(ctx, f.o.Redis, f.o.Keyring, f.keys, f.outbox, r, f.o.Clock()); err != nil {
				return err
			}
		}
		if err := f.o.Redis.LTrim(ctx, q, int64(len(items)), -1).Err(); err != nil {
			return fmt.Errorf("requests: trim cancelled queue: %w", err)
		}
		if len(items) < chunk {
			if err := f.o.Redis.SRem(ctx, f.keys.cancelling(), q).Err(); err != nil {
				return err
			}
		}
	}
	return nil
}

// unqueue takes the ids of rs, queued requests about to end unreleased,
// out of the queued set, each for a hash of its own (unqueue.lua), which
// keeps the id from reuse once it has ended. Before they end: a feeder
// stopping in between leaves them queued in their hashes, to end on the
// next pass.
func (f *Feeder) unqueue(ctx context.Context, rs []jobs.Request) error {
	if len(rs) == 0 {
		return nil
	}
	ks := make([]string, 0, len(rs)+1)
	args := make([]any, 0, len(rs)+1)
	ks = append(ks, f.keys.queued())
	args = append(args, f.ttl())
	for _, r := range rs {
		ks = append(ks, f.keys.request(r.ID))
		args = append(args, r.ID)
	}
	if err := scriptUnqueue.Run(ctx, f.o.Redis, ks, args...).Err(); err != nil {
		return fmt.Errorf("requests: unqueue %d requests of a cancelled batch: %w", len(rs), err)
	}
	return nil
}

// ttl is FeederOptions.TTL in seconds, as the scripts take it.
func (f *Feeder) ttl() int64 { return int64(f.o.TTL / time.Second) }

// cancelQueued ends a request that never ran as cancelled.
func cancelQueued(ctx context.Context, rdb redis.UniversalClient, kr *seal.Keyring, k keys, outbox string, r jobs.Request, now time.Time) error {
	ev, err := newOutboxEvent(ctx, kr, events.TypeRequestFailed, r, now, events.RequestFailed{
		ID: r.ID, Vendor: r.Vendor, Credential: r.Credential, Batch: r.Batch, Class: "cancelled",
		Message: "the batch was cancelled before the request ran", FailedAt: now.UTC()})
	if err != nil {
		return err
	}
	r.IdempotencyKey = "" // the key is not this request's to settle
	return transition(ctx, rdb, kr, k, outbox, "", r, "cancelled", ev, -1, now, DefaultIdempotencyTTL, false)
}

// room is how many more requests the account's budget has room for now
// (-1: no budget of ours, only the in-flight bound), and, when none, when
// to look again.
func (f *Feeder) room(ctx context.Context, account string, lim budget.Limit) (int, time.Time, error) {
	st, err := f.o.Budget.Status(ctx, account, lim)
	if err != nil {
		return 0, time.Time{}, err
	}
	now := f.o.Clock()
	if st.PausedUntil.After(now) {
		return 0, st.PausedUntil, nil
	}
	if lim.Requests <= 0 || lim.Per <= 0 {
		return -1, time.Time{}, nil
	}
	reserve := 0
	if f.o.BulkReserve > 0 && st.Limit > 1 {
		reserve = max(1, int(float64(st.Limit)*f.o.BulkReserve))
	}
	avail := st.Remaining - reserve
	if avail > 0 {
		return avail, time.Time{}, nil
	}
	if !st.ResetAt.IsZero() && st.ResetAt.After(now) {
		return 0, st.ResetAt, nil
	}
	// A sliding window frees permits as they age out; look again soon.
	return 0, now.Add(min(max(lim.Per/500, f.o.Interval), time.Second)), nil
}
