// Package benchdb leases a whole Redis database for a benchmark program through the same lease key the integration tests use (internal/testenv), and reads the server's memory and command statistics.
//
// A benchmark needs a whole database (asynq has no key prefix), and takes it
// through the tests' lease (a key testenv:db:N in DB 0 that expires by
// itself) so that a `make test` running meanwhile neither flushes it nor
// gets it flushed. The tests take databases from 1 upwards; benchmarks take
// them from the top down.
package benchdb

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokenrelay/tokenrelay/internal/lease"
)

// The lease as internal/testenv takes it (testenv does not export these):
// the key in DB 0 naming database N, and how many databases there are to
// share out (1..dbCount-1; 0 is left to the lock keys and to people).
const (
	leaseKeyFormat = "testenv:db:%d"
	dbCount        = 16
)

const (
	// leaseTTL is how long a lease outlives its holder; the keep-alive
	// renews it well before then.
	leaseTTL = 15 * time.Minute
	// renewEvery is how often the keep-alive renews the lease.
	renewEvery = time.Minute
	// leaseWait is how long Lease waits for a free database.
	leaseWait = 2 * time.Minute
	// leasePoll is how often Lease retries while all are taken.
	leasePoll = 250 * time.Millisecond
)

// DB is a leased Redis database. The lease is renewed in the background
// until Release.
type DB struct {
	number int
	lock   *redis.Client
	lease  *lease.Lease
	stop   chan struct{}
	wg     sync.WaitGroup
	once   sync.Once
}

// Lease leases database want on the Redis at addr, or when want < 0 the
// highest free one, waiting up to 2 minutes for it. program names the
// benchmark (e.g. "bench-fleet") in the lease's owner string. The caller
// flushes the database if it needs it empty, and calls Release when done.
func Lease(ctx context.Context, addr, program string, want int) (*DB, error) {
	lock := redis.NewClient(&redis.Options{Addr: addr})
	if err := lock.Ping(ctx).Err(); err != nil {
		_ = lock.Close()
		return nil, fmt.Errorf("redis at %s is not reachable (make services starts it): %w", addr, err)
	}
	host, _ := os.Hostname()
	owner := fmt.Sprintf("%s/%s/%d/%d", program, host, os.Getpid(), time.Now().UnixNano())
	candidates := []int{want}
	if want < 0 {
		candidates = nil
		for db := dbCount - 1; db >= 1; db-- {
			candidates = append(candidates, db)
		}
	}
	deadline := time.Now().Add(leaseWait)
	for {
		for _, db := range candidates {
			ls := lease.New(lock, fmt.Sprintf(leaseKeyFormat, db), owner, leaseTTL)
			got, err := ls.Acquire(ctx)
			if err != nil {
				_ = lock.Close()
				return nil, fmt.Errorf("lease redis db %d: %w", db, err)
			}
			if got == lease.Taken {
				l := &DB{number: db, lock: lock, lease: ls, stop: make(chan struct{})}
				l.wg.Go(l.keep)
				return l, nil
			}
		}
		if time.Now().After(deadline) {
			_ = lock.Close()
			if want >= 0 {
				return nil, fmt.Errorf("redis database %d not free in 2 minutes (leased by tests?)", want)
			}
			return nil, fmt.Errorf("no free redis database in 2 minutes")
		}
		select {
		case <-ctx.Done():
			_ = lock.Close()
			return nil, ctx.Err()
		case <-time.After(leasePoll):
		}
	}
}

// Number is the leased database's number.
func (l *DB) Number() int { return l.number }

func (l *DB) keep() {
	t := time.NewTicker(renewEvery)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, _ = l.lease.Renew(ctx)
			cancel()
		}
	}
}

// Release stops the keep-alive and ends the lease (only if it is still
// ours). It does not flush the database. Calling it again does nothing.
func (l *DB) Release() {
	l.once.Do(func() {
		close(l.stop)
		l.wg.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = l.lease.Release(ctx)
		_ = l.lock.Close()
	})
}
