package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// The benchmark takes a whole Redis database (asynq has no key prefix), as
// the integration tests do, and takes it through the same lease the tests
// use (internal/testenv: a key testenv:db:N in DB 0 that expires by
// itself), so that a `make test` running meanwhile neither flushes it nor
// gets it flushed.
const (
	leaseKeyFormat = "testenv:db:%d"
	leaseTTL       = 15 * time.Minute
	dbCount        = 16
)

var renewLease = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0`)

var releaseLease = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0`)

// dbLease is a leased Redis database.
type dbLease struct {
	DB    int
	lock  *redis.Client
	key   string
	owner string
	stop  chan struct{}
	wg    sync.WaitGroup
}

// leaseDB leases database want, or when want < 0 the highest free one
// (the tests take them from 1 upwards).
func leaseDB(ctx context.Context, addr string, want int) (*dbLease, error) {
	lock := redis.NewClient(&redis.Options{Addr: addr})
	if err := lock.Ping(ctx).Err(); err != nil {
		_ = lock.Close()
		return nil, fmt.Errorf("redis at %s is not reachable (make services starts it): %w", addr, err)
	}
	host, _ := os.Hostname()
	owner := fmt.Sprintf("bench-pipeline/%s/%d/%d", host, os.Getpid(), time.Now().UnixNano())
	candidates := []int{want}
	if want < 0 {
		candidates = nil
		for db := dbCount - 1; db >= 1; db-- {
			candidates = append(candidates, db)
		}
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		for _, db := range candidates {
			key := fmt.Sprintf(leaseKeyFormat, db)
			ok, err := lock.SetNX(ctx, key, owner, leaseTTL).Result()
			if err != nil {
				_ = lock.Close()
				return nil, fmt.Errorf("lease redis db %d: %w", db, err)
			}
			if ok {
				l := &dbLease{DB: db, lock: lock, key: key, owner: owner, stop: make(chan struct{})}
				l.wg.Go(l.keep)
				return l, nil
			}
		}
		if time.Now().After(deadline) {
			_ = lock.Close()
			return nil, fmt.Errorf("no free redis database among %v in 2 minutes (leased by tests?)", candidates)
		}
		select {
		case <-ctx.Done():
			_ = lock.Close()
			return nil, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (l *dbLease) keep() {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = renewLease.Run(ctx, l.lock, []string{l.key}, l.owner, leaseTTL.Milliseconds()).Err()
			cancel()
		}
	}
}

// release ends the lease (only if it is still ours).
func (l *dbLease) release() {
	close(l.stop)
	l.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = releaseLease.Run(ctx, l.lock, []string{l.key}, l.owner).Err()
	_ = l.lock.Close()
}

// redisInfo returns the key: value lines of one INFO section.
func redisInfo(ctx context.Context, rdb redis.UniversalClient, section string) (map[string]string, error) {
	text, err := rdb.Info(ctx, section).Result()
	if err != nil {
		return nil, err
	}
	out := make(map[string]string)
	for line := range strings.SplitSeq(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if k, v, ok := strings.Cut(line, ":"); ok {
			out[k] = v
		}
	}
	return out, nil
}

func usedMemory(ctx context.Context, rdb redis.UniversalClient) (int64, error) {
	info, err := redisInfo(ctx, rdb, "memory")
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(info["used_memory"], 10, 64)
}

// cmdStat is one line of INFO commandstats.
type cmdStat struct {
	Name  string
	Calls int64
	Usec  int64
}

func commandStats(ctx context.Context, rdb redis.UniversalClient) (map[string]cmdStat, error) {
	info, err := redisInfo(ctx, rdb, "commandstats")
	if err != nil {
		return nil, err
	}
	out := make(map[string]cmdStat, len(info))
	for k, v := range info {
		name, ok := strings.CutPrefix(k, "cmdstat_")
		if !ok {
			continue
		}
		s := cmdStat{Name: name}
		for kv := range strings.SplitSeq(v, ",") {
			key, val, _ := strings.Cut(kv, "=")
			switch key {
			case "calls":
				s.Calls, _ = strconv.ParseInt(val, 10, 64)
			case "usec":
				s.Usec, _ = strconv.ParseInt(val, 10, 64)
			}
		}
		out[name] = s
	}
	return out, nil
}

// diffCommandStats is after - before, heaviest (by server time) first.
func diffCommandStats(before, after map[string]cmdStat) []cmdStat {
	var out []cmdStat
	for name, a := range after {
		b := before[name]
		d := cmdStat{Name: name, Calls: a.Calls - b.Calls, Usec: a.Usec - b.Usec}
		if d.Calls > 0 {
			out = append(out, d)
		}
	}
	slices.SortFunc(out, func(x, y cmdStat) int { return cmp.Compare(y.Usec, x.Usec) })
	return out
}

// waitFor polls cond every interval until it is true, ctx ends or timeout
// passes.
func waitFor(ctx context.Context, timeout, interval time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("timed out")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
	}
}
