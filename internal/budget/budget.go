// Package budget is the shared rate budget of each vendor account, in Redis,
// enforcing the vendor's own window exactly, shared by every worker.
//
// A sliding window (Halaxy: at most 500 requests in any 60 seconds) is kept
// as a log of leases in a sorted set: a worker process takes a block of
// permits at once (one Redis call), records them as used at the latest time
// it may hand them out, and hands them out locally until then; what it has
// not handed out by then it gives back. So no window of the record, and no
// window of the requests really sent, ever holds more than the limit, across
// processes, while a busy process needs one Redis call per block. A fixed
// window (HealthSync: per hour, ending at X-RateLimit-Reset) is a counter
// per window.
//
// The configured limit is where an account starts; the vendor's rate-limit
// headers correct it (Observe): a lower limit or a smaller remaining count
// applies at once, a higher limit is approached a tenth at a time. A 429
// pauses the account for every worker until its retry-after.
//
// Accounts: the budget counts whatever account string it is given. Halaxy
// limits each OAuth client, which in tokenrelay is one credential, so its
// account is Account(vendor, credential); HealthSync limits the plan of the
// whole vendor account, so its account is the vendor instance name (Account
// with an empty credential). PerClient says which kind is which.
//
// The budget keeps an index of the accounts in use (Accounts): written
// with the Redis calls it makes anyway, at most once a second per account
// and process, so that a reader finds the busy and the paused accounts
// without listing every account there could be (see index.go).
//
// Files: budget.go the Budget and its calls; pool.go the process-local
// leases and pauses; protocol.go the Redis scripts' arguments and replies
// and the pause message; keyspace.go the Redis keys; headers.go the
// vendors' rate-limit headers; account.go account names; overview.go what
// operators see; index.go the index of used accounts.
package budget

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// WindowKind is how a vendor counts requests.
type WindowKind int

const (
	// Sliding allows Requests in any window of length Per (Halaxy).
	Sliding WindowKind = iota
	// Fixed allows Requests per window of length Per, the count starting
	// afresh when the window ends: at the vendor's X-RateLimit-Reset once
	// one was seen, else on the clock's multiples of Per (HealthSync,
	// hourly).
	Fixed
)

// String names the kind as configuration does.
func (k WindowKind) String() string {
	if k == Fixed {
		return "fixed"
	}
	return "sliding"
}

// Limit is an account's window, from config.Vendor.RateLimit: Requests per
// Per. A Limit with Requests <= 0 or Per <= 0 means no budget of ours: Take
// always grants (only a 429's pause still holds).
type Limit struct {
	Requests int
	Per      time.Duration
	Kind     WindowKind
	// Slack, when positive, is this account's Options.Slack: how long a
	// request may take to reach the vendor after its permit was handed
	// out (config rate_limit.slack).
	Slack time.Duration
}

func (l Limit) unlimited() bool { return l.Requests <= 0 || l.Per <= 0 }

// Class says whose request a permit is for.
type Class int

const (
	// Bulk is a request job's call. Bulk cannot use the last PriorityReserve
	// of the window, and is handed out from a process's local lease.
	Bulk Class = iota
	// Priority is a token-endpoint call or refresh: it never waits behind
	// bulk requests. It may use the whole limit, including the reserve bulk
	// cannot touch, and goes to Redis directly (no local lease). It is still
	// counted, and a 429's pause holds it too.
	Priority
)

// String names the class for logs and metrics.
func (c Class) String() string {
	if c == Priority {
		return "priority"
	}
	return "bulk"
}

// Status is what operators see of one account's budget.
type Status struct {
	Account string
	Kind    WindowKind
	Per     time.Duration
	// Configured is the limit from configuration; Learned the one learned
	// from the vendor's headers or 429s (0: none); Limit the one in force.
	Configured int
	Learned    int
	Limit      int
	// Used is the permits counted in the current window (including leases
	// not yet handed out); Remaining is Limit-Used, at least 0.
	Used      int
	Remaining int
	// Reserve is the part of Limit that only Priority may use: Bulk has
	// Remaining-Reserve left.
	Reserve int
	// PausedUntil is the end of a 429's pause (zero: not paused).
	PausedUntil time.Time
	// ResetAt is when a fixed window ends (zero for sliding windows).
	ResetAt time.Time
}

// Options tune a Budget. The zero value is usable.
type Options struct {
	// Prefix is put before every Redis key. Default: "tokenrelay:".
	Prefix string
	// Clock is the time of the budget. Default: nil, which uses the Redis
	// server's clock for the windows (so that every machine agrees) and
	// time.Now for local leases. Tests inject a manual clock.
	Clock func() time.Time
	// MaxRetryAfter caps a 429's pause. Default: 5m.
	MaxRetryAfter time.Duration
	// DefaultPause is a 429's pause when the vendor says neither
	// retry-after nor a reset time. Default: 1s.
	DefaultPause time.Duration
	// Jitter lengthens a 429's pause by up to this fraction, at random, so
	// that workers do not all come back at once; never shortens it.
	// Default: 0.1 (at most 1s). Negative: none.
	Jitter float64
	// PriorityReserve is the fraction of the limit that Bulk cannot use,
	// kept for Priority: at least 1 permit when the limit is above 1.
	// Default: 0.01. Negative: no reserve.
	PriorityReserve float64
	// MaxBlock caps how many permits a process leases at once; the block
	// also stays within a twentieth of the limit, and grows from 1 only
	// while the process uses whole blocks in time. Default: 64.
	MaxBlock int
	// Lease is how long a process may hand out a leased block. Default:
	// Per/200, between 5ms and 250ms.
	Lease time.Duration
	// Slack is added to each permit's time in the record, covering the
	// delay between handing a permit out and the vendor seeing the
	// request. Default: Per/100, between 2ms and 500ms.
	Slack time.Duration
	// LearnedTTL is how long a learned limit lasts without the vendor
	// confirming it, after which the configured one is tried again.
	// Default: 1h.
	LearnedTTL time.Duration
	// IndexRetention is how long an account stays in the index of used
	// accounts (Accounts) after its last use. Default: 24h.
	IndexRetention time.Duration
	// Metrics, when not nil, is updated on every Redis call.
	Metrics *Metrics
}

// Budget is the shared rate budget of every account, for one process.
// It is safe for concurrent use. Close hands back unused leases.
type Budget struct {
	rdb  redis.UniversalClient
	o    Options
	proc string // this process's lease id prefix
	seq  atomic.Uint64

	mu    sync.Mutex
	pools map[string]*pool
	// paused holds the local end of each account's 429 pause, learned from
	// Observe here or from another process's Observe (pub/sub), so that
	// local leases stop at once.
	paused map[string]time.Time
	// indexed holds when this process last wrote each account's entry in
	// the index of used accounts (see index.go).
	indexed map[string]time.Time

	// listening starts the pub/sub listener with the first local lease
	// (a Budget used only for Status needs none); sub is nil before.
	listening sync.Once
	sub       *redis.PubSub
	done      chan struct{}
}

// New returns a budget on rdb.
func New(rdb redis.UniversalClient, o Options) *Budget {
	if o.Prefix == "" {
		o.Prefix = "tokenrelay:"
	}
	if o.MaxRetryAfter <= 0 {
		o.MaxRetryAfter = 5 * time.Minute
	}
	if o.DefaultPause <= 0 {
		o.DefaultPause = time.Second
	}
	if o.Jitter == 0 {
		o.Jitter = 0.1
	}
	if o.PriorityReserve == 0 {
		o.PriorityReserve = 0.01
	}
	if o.MaxBlock <= 0 {
		o.MaxBlock = 64
	}
	if o.LearnedTTL <= 0 {
		o.LearnedTTL = time.Hour
	}
	var id [6]byte
	_, _ = rand.Read(id[:])
	b := &Budget{rdb: rdb, o: o, proc: hex.EncodeToString(id[:]), pools: make(map[string]*pool),
		paused: make(map[string]time.Time), indexed: make(map[string]time.Time), done: make(chan struct{})}
	return b
}

func (b *Budget) now() time.Time {
	if b.o.Clock != nil {
		return b.o.Clock()
	}
	return time.Now()
}

// nowArg is the script's now: the injected clock, or 0 for Redis TIME.
func (b *Budget) nowArg(local time.Time) int64 {
	if b.o.Clock != nil {
		return local.UnixMilli()
	}
	return 0
}

// toLocal turns a script time (ms) into local time, given the script's
// now and the local time the call started.
func toLocal(ms, serverNow int64, local time.Time) time.Time {
	if ms <= 0 {
		return time.Time{}
	}
	return local.Add(time.Duration(ms-serverNow) * time.Millisecond)
}

func (b *Budget) lease(lim Limit) time.Duration {
	if b.o.Lease > 0 {
		return b.o.Lease
	}
	return min(max(lim.Per/200, 5*time.Millisecond), 250*time.Millisecond)
}

func (b *Budget) slack(lim Limit) time.Duration {
	if lim.Slack > 0 {
		return lim.Slack
	}
	if b.o.Slack > 0 {
		return b.o.Slack
	}
	return min(max(lim.Per/100, 2*time.Millisecond), 500*time.Millisecond)
}

func (b *Budget) nextID() string {
	return b.proc + "." + strconv.FormatUint(b.seq.Add(1), 36)
}

// ErrBadLimit is returned for a limit with a window kind the budget does
// not know.
var ErrBadLimit = errors.New("budget: unknown window kind")

// Take asks for one permit for account now. If granted, ok is true. If
// not, retryAt is the earliest time a permit may be free (the caller
// reschedules its job for then; nothing is held meanwhile). A paused
// account (after a 429) answers not ok with retryAt = the pause's end.
// A Limit without requests (no budget of ours) always grants, unless paused.
func (b *Budget) Take(ctx context.Context, account string, lim Limit, class Class) (ok bool, retryAt time.Time, err error) {
	if lim.unlimited() {
		return b.takeUnlimited(ctx, account)
	}
	if class == Priority {
		local := b.now()
		r, err := b.runTake(ctx, account, lim, local, 1, Priority, b.slack(lim), b.nextID(), release{})
		if err != nil {
			return false, time.Time{}, err
		}
		if r.granted > 0 {
			return true, time.Time{}, nil
		}
		b.o.Metrics.wait(account)
		return false, toLocal(r.retry, r.serverNow, local), nil
	}

	b.listenForPauses()
	p := b.pool(account)
	p.mu.Lock()
	defer p.mu.Unlock()
	local := b.now()
	if until, ok := b.localPause(account, local); ok {
		b.o.Metrics.wait(account)
		return false, until, nil
	}
	if p.left > 0 && local.Before(p.deadline) && p.lim == lim {
		p.left--
		p.lastUse = local
		if p.left == 0 {
			p.full = true
		}
		return true, time.Time{}, nil
	}
	back := p.takeBack()
	// Grow the block while whole blocks are used in time; shrink it when
	// permits came back unused.
	switch {
	case back.unused > 0:
		p.block = max(1, p.block/2)
	case p.full:
		p.block *= 2
	}
	p.block = max(1, min(p.block, b.o.MaxBlock, lim.Requests/20))
	p.full = false
	lease := b.lease(lim)
	id := b.nextID()
	r, err := b.runTake(ctx, account, lim, local, p.block, Bulk, lease+b.slack(lim), id, back)
	if err != nil {
		return false, time.Time{}, err
	}
	p.known, p.knownLimit, p.knownUsed, p.knownReset = true, r.limit, r.used, r.reset
	if r.granted == 0 {
		b.o.Metrics.wait(account)
		return false, toLocal(r.retry, r.serverNow, local), nil
	}
	p.member = id + ":" + strconv.Itoa(r.granted)
	p.left = r.granted - 1
	p.lim = lim
	p.reset = r.reset
	p.deadline = local.Add(lease)
	p.start, p.lastUse, p.dur = local, local, lease
	if lim.Kind == Fixed {
		// A permit must be used in the window that counted it.
		p.deadline = minTime(p.deadline, toLocal(r.reset, r.serverNow, local).Add(-b.slack(lim)))
	}
	if p.left == 0 {
		p.full = true
	} else {
		b.scheduleGiveBack(account, p, p.member, lease)
	}
	return true, time.Time{}, nil
}

func (b *Budget) pool(account string) *pool {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.pools[account]
	if p == nil {
		p = &pool{block: 1}
		b.pools[account] = p
	}
	return p
}

// takeUnlimited grants unless the account is paused.
func (b *Budget) takeUnlimited(ctx context.Context, account string) (bool, time.Time, error) {
	local := b.now()
	ms, err := b.rdb.HGet(ctx, b.keys(account)[2], "paused").Int64()
	if errors.Is(err, redis.Nil) {
		return true, time.Time{}, nil
	}
	if err != nil {
		return false, time.Time{}, fmt.Errorf("budget: take %s: %w", account, err)
	}
	if b.o.Clock == nil {
		t, err := b.rdb.Time(ctx).Result()
		if err != nil {
			return false, time.Time{}, fmt.Errorf("budget: take %s: %w", account, err)
		}
		if t.UnixMilli() < ms {
			return false, toLocal(ms, t.UnixMilli(), local), nil
		}
		return true, time.Time{}, nil
	}
	if local.UnixMilli() < ms {
		b.o.Metrics.wait(account)
		return false, toLocal(ms, local.UnixMilli(), local), nil
	}
	return true, time.Time{}, nil
}

// Close gives back every process-local lease's unused permits and stops
// listening for other processes' pauses. The Budget is not used after.
func (b *Budget) Close(ctx context.Context) error {
	b.listening.Do(func() { close(b.done) }) // never started: nothing to stop
	b.mu.Lock()
	sub := b.sub
	b.mu.Unlock()
	var err error
	if sub != nil {
		err = sub.Close()
	}
	<-b.done
	return errors.Join(err, b.giveBackAll(ctx))
}

// Observe corrects the account's budget from a vendor response:
// x-ratelimit-limit and x-ratelimit-remaining (Halaxy),
// X-RateLimit-Limit, -Remaining and -Reset (HealthSync, unix seconds). A
// lower limit or remaining count applies at once; a higher limit is
// approached a tenth at a time. On 429 it pauses the account for every
// worker until retry-after (seconds or HTTP-date; else X-RateLimit-Reset;
// else DefaultPause), capped at MaxRetryAfter and lengthened by Jitter,
// and returns the pause's end (zero when status is not 429).
func (b *Budget) Observe(ctx context.Context, account string, lim Limit, status int, h http.Header) (pausedUntil time.Time, err error) {
	local := b.now()
	hl, hr, hreset := ParseHeaders(h)
	pause := int64(-1)
	if status == http.StatusTooManyRequests {
		b.o.Metrics.rateLimited(account)
		d := PauseFor(h, local, b.o.DefaultPause, b.o.MaxRetryAfter)
		d = b.jitter(d)
		pause = d.Milliseconds()
	}
	if lim.Per <= 0 {
		lim.Per = time.Minute
	}
	resetMs := int64(-1)
	if !hreset.IsZero() {
		resetMs = hreset.UnixMilli()
	}
	// What this process leased and has not handed out, the vendor has not
	// seen: a remaining count is compared with the rest.
	unused := 0
	b.mu.Lock()
	p := b.pools[account]
	b.mu.Unlock()
	if p != nil {
		p.mu.Lock()
		unused = p.unused(local)
		if pause < 0 && p.known && p.lim == lim && saysNothingNew(p, hl, hr, resetMs, unused) {
			p.mu.Unlock()
			return time.Time{}, nil
		}
		p.mu.Unlock()
	}
	if hl < 0 && hr < 0 && resetMs < 0 && pause < 0 {
		return time.Time{}, nil
	}
	kind := "sliding"
	if lim.Kind == Fixed {
		kind = "fixed"
	}
	// A response that says something new marks the account used; a 429
	// always does, until the pause's end, so that a paused account is
	// listed while it is paused.
	w := b.indexDue(account, local)
	if pause >= 0 {
		w = indexWrite{at: local, score: local.UnixMilli() + pause}
	}
	r, err := b.runObserve(ctx, account, w, observeArgs{now: b.nowArg(local), kind: kind, limit: max(lim.Requests, 0),
		window: lim.Per.Milliseconds(), headerLimit: hl, headerRemaining: hr, reset: resetMs, pause: pause,
		learnedTTL: b.o.LearnedTTL.Milliseconds(), id: b.nextID(), unused: unused})
	if err != nil {
		return time.Time{}, err
	}
	until := toLocal(r.paused, r.serverNow, local)
	b.o.Metrics.set(account, r.limit, r.used, until)
	if pause < 0 {
		return time.Time{}, nil
	}
	// Stop this process's lease at once, and tell the other processes.
	b.pauseLocally(account, until)
	if err := b.rdb.Publish(ctx, b.pauseChannel(), encodePause(account, r.paused, r.serverNow)).Err(); err != nil {
		return until, fmt.Errorf("budget: announce pause of %s: %w", account, err)
	}
	return until, nil
}

// jitter lengthens d by up to Jitter of it (at most 1s).
func (b *Budget) jitter(d time.Duration) time.Duration {
	if b.o.Jitter <= 0 || d <= 0 {
		return d
	}
	j := min(time.Duration(float64(d)*b.o.Jitter), time.Second)
	if j <= 0 {
		return d
	}
	return d + time.Duration(mrand.Int64N(int64(j)+1))
}

// Status is what operators see: limit (configured and learned), used in
// the current window, remaining, paused until.
func (b *Budget) Status(ctx context.Context, account string, lim Limit) (Status, error) {
	s := Status{Account: account, Kind: lim.Kind, Per: lim.Per, Configured: lim.Requests}
	local := b.now()
	learned, err := b.rdb.Get(ctx, b.keys(account)[3]).Int()
	if err != nil && !errors.Is(err, redis.Nil) {
		return Status{}, fmt.Errorf("budget: status %s: %w", account, err)
	}
	s.Learned = learned
	if lim.unlimited() {
		s.Limit = learned
		ms, err := b.rdb.HGet(ctx, b.keys(account)[2], "paused").Int64()
		if err != nil && !errors.Is(err, redis.Nil) {
			return Status{}, fmt.Errorf("budget: status %s: %w", account, err)
		}
		if ms > local.UnixMilli() {
			s.PausedUntil = toLocal(ms, local.UnixMilli(), local)
		}
		return s, nil
	}
	r, err := b.runTake(ctx, account, lim, local, 0, Bulk, 0, "", release{})
	if err != nil {
		return Status{}, err
	}
	s.Limit, s.Used = r.limit, r.used
	s.Remaining = max(0, r.limit-r.used)
	if b.o.PriorityReserve > 0 && r.limit > 1 {
		s.Reserve = max(1, int(math.Floor(float64(r.limit)*b.o.PriorityReserve)))
	}
	if r.paused > r.serverNow {
		s.PausedUntil = toLocal(r.paused, r.serverNow, local)
	}
	if lim.Kind == Fixed {
		s.ResetAt = toLocal(r.reset, r.serverNow, local)
	}
	return s, nil
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
