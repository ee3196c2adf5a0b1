// Package lease is the one Redis lease every leader and lock holder uses:
// the outbox relay, the request feeder, the store's re-seal and the
// benchmarks' database lease.
//
// A lease is a Redis string holding its owner's token and expiring after a
// TTL. It is taken only when free (or extended when the owner already holds
// it), renewed only by its holder and released only by its holder, each
// step one Lua script (lua/, each with its contract), so that an owner whose
// lease expired and passed to another can never extend or delete the new
// holder's.
//
// The holder keeps a local bound, Until, counted from before the call that
// took or renewed the lease: until then the lease surely still lives, so a
// holder can stop acting on it in time even when Redis cannot be reached.
package lease

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

var (
	//go:embed lua/acquire.lua
	luaAcquire string
	//go:embed lua/renew.lua
	luaRenew string
	//go:embed lua/release.lua
	luaRelease string

	scriptAcquire = redis.NewScript(luaAcquire)
	scriptRenew   = redis.NewScript(luaRenew)
	scriptRelease = redis.NewScript(luaRelease)
)

// Outcome is what Acquire found.
type Outcome int

// Outcomes of Acquire, as acquire.lua returns them.
const (
	// HeldByOther: another owner holds the lease; it was left alone.
	HeldByOther Outcome = 0
	// Extended: this owner already held the lease; its TTL starts again.
	Extended Outcome = 1
	// Taken: the lease was free and is now this owner's.
	Taken Outcome = 2
)

// Held reports whether the owner holds the lease after Acquire.
func (o Outcome) Held() bool { return o == Taken || o == Extended }

// Sentinel errors of Keep.
var (
	// ErrTaken: another owner holds the lease (this one's had expired).
	ErrTaken = errors.New("lease: taken by another owner")
	// ErrExpired: the lease expired before it could be renewed (Redis
	// could not be reached in time).
	ErrExpired = errors.New("lease: expired before it could be renewed")
)

// Lease is one owner's handle on a lease key. It is safe for concurrent
// use.
type Lease struct {
	rdb   redis.UniversalClient
	key   string
	owner string
	ttl   time.Duration
	until atomic.Int64 // unix ns: the lease surely lives until then
}

// New returns owner's handle on the lease at key, lasting ttl from each
// take or renewal. owner must be unique to the holder (a uuid, or host,
// pid and a random part).
func New(rdb redis.UniversalClient, key, owner string, ttl time.Duration) *Lease {
	return &Lease{rdb: rdb, key: key, owner: owner, ttl: ttl}
}

// Key is the lease's Redis key.
func (l *Lease) Key() string { return l.key }

// Owner is this handle's owner token.
func (l *Lease) Owner() string { return l.owner }

// TTL is how long the lease lives after each take or renewal.
func (l *Lease) TTL() time.Duration { return l.ttl }

// Acquire takes the lease if it is free, or extends it if this owner holds
// it already.
func (l *Lease) Acquire(ctx context.Context) (Outcome, error) {
	start := time.Now()
	n, err := scriptAcquire.Run(ctx, l.rdb, []string{l.key}, l.owner, l.ttl.Milliseconds()).Int()
	if err != nil {
		return HeldByOther, fmt.Errorf("lease: acquire %s: %w", l.key, err)
	}
	o := Outcome(n)
	if o.Held() {
		l.until.Store(start.Add(l.ttl).UnixNano())
	}
	return o, nil
}

// Renew extends the lease if this owner still holds it, and reports
// whether it did.
func (l *Lease) Renew(ctx context.Context) (bool, error) {
	start := time.Now()
	n, err := scriptRenew.Run(ctx, l.rdb, []string{l.key}, l.owner, l.ttl.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("lease: renew %s: %w", l.key, err)
	}
	if n == 1 {
		l.until.Store(start.Add(l.ttl).UnixNano())
	}
	return n == 1, nil
}

// Release ends the lease if this owner still holds it; a lease another
// owner holds is left alone.
func (l *Lease) Release(ctx context.Context) error {
	l.until.Store(0)
	if err := scriptRelease.Run(ctx, l.rdb, []string{l.key}, l.owner).Err(); err != nil {
		return fmt.Errorf("lease: release %s: %w", l.key, err)
	}
	return nil
}

// Until is when the lease surely still lives: the time before the last
// successful take or renewal plus the TTL (zero before any, or after
// Release).
func (l *Lease) Until() time.Time {
	ns := l.until.Load()
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// Valid reports whether the lease surely still lives (now is before Until).
func (l *Lease) Valid() bool { return time.Now().UnixNano() < l.until.Load() }

// Keep renews the lease every TTL/3 until ctx is done (then it returns
// nil) or the lease is lost: ErrTaken when another owner holds it,
// ErrExpired when it expired while Redis could not be reached. A renewal
// that fails is retried every TTL/10 while the lease still lives, each
// failure passed to onError (if not nil) with the lease's Until.
func (l *Lease) Keep(ctx context.Context, onError func(err error, until time.Time)) error {
	timer := time.NewTimer(l.ttl / 3)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
		until := l.Until()
		if !time.Now().Before(until) {
			return ErrExpired
		}
		rctx, cancel := context.WithDeadline(ctx, until)
		ok, err := l.Renew(rctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			if onError != nil {
				onError(err, until)
			}
			timer.Reset(min(l.ttl/10, time.Until(until)))
		case !ok:
			return ErrTaken
		default:
			timer.Reset(l.ttl / 3)
		}
	}
}
