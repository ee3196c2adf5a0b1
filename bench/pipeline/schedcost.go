package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokenrelay/tokenrelay/bench/internal/benchdb"
)

// schedCostRow is the cost of finding due work among N credentials.
type schedCostRow struct {
	Credentials int
	Due         int
	Claim       dist          // ClaimDue(now, 1000, lease) with Due entries due, client-side
	ClaimServer time.Duration // mean server time of one claim_due script (INFO commandstats)
	Empty       dist          // ClaimDue when nothing is due
	Reconcile   dist          // Reconcile over every credential (runs every 30 s by default)
}

// runSchedCost measures store.ClaimDue, the scheduler's only look at the
// schedule every poll, at each size, on a fresh prefix of real Redis:
// due credentials are due, the others are due between one and two hours
// from now. Between calls the due ones are re-armed by claiming with a
// 1 ms lease and asking again 2 ms later, so every timed call claims
// exactly due entries.
func runSchedCost(ctx context.Context, admin *redis.Client, redisURL string, sizes []int, due, calls int, progress func(string, ...any)) ([]schedCostRow, error) {
	var rows []schedCostRow
	for _, size := range sizes {
		if err := admin.FlushDB(ctx).Err(); err != nil {
			return nil, err
		}
		row, err := schedCostAt(ctx, admin, redisURL, size, min(due, size), calls, progress)
		if err != nil {
			return nil, err
		}
		rows = append(rows, row)
	}
	if err := admin.FlushDB(ctx).Err(); err != nil {
		return nil, err
	}
	return rows, nil
}

func schedCostAt(ctx context.Context, admin *redis.Client, redisURL string, size, due, calls int, progress func(string, ...any)) (schedCostRow, error) {
	row := schedCostRow{Credentials: size, Due: due}
	n := newNames("s")
	cfg, err := benchConfig(redisURL, "nats://127.0.0.1:4222", "http://127.0.0.1:1", n, 0)
	if err != nil {
		return row, err
	}
	rdb := redis.NewClient(mustParseURL(redisURL))
	defer rdb.Close()
	seedStart := time.Now()
	// Seed: the not-due ones with a clock one to two hours ahead (Upsert
	// schedules a new credential at its clock's now), the due ones with a
	// clock a minute behind.
	future, err := newSeeder(rdb, cfg, nil, func() time.Time {
		return seedStart.Add(time.Hour + time.Duration(rand.Int64N(int64(time.Hour))))
	})
	if err != nil {
		return row, err
	}
	past, err := newSeeder(rdb, cfg, nil, func() time.Time { return seedStart.Add(-time.Minute) })
	if err != nil {
		return row, err
	}
	progress("schedcost: adding %s credentials (%d due)", thousands(int64(size)), due)
	if _, err := future.seed(ctx, 0, size-due, 32, -1, progress); err != nil {
		return row, err
	}
	if _, err := past.seed(ctx, size-due, size, 32, -1, progress); err != nil {
		return row, err
	}
	st := future.st
	if c, err := st.Count(ctx); err != nil || c != int64(size) {
		return row, fmt.Errorf("schedcost: store holds %d credentials, want %d (%v)", c, size, err)
	}

	// Nothing due: what every idle poll costs.
	var empty []time.Duration
	for range calls {
		t := time.Now()
		got, err := st.ClaimDue(ctx, seedStart.Add(-10*time.Minute), 1000, time.Millisecond)
		if err != nil {
			return row, err
		}
		if len(got) != 0 {
			return row, fmt.Errorf("schedcost: claimed %d with nothing due", len(got))
		}
		empty = append(empty, time.Since(t))
	}
	row.Empty = summarise(empty)

	// due entries due at every call.
	const warm = 10
	base := time.Now()
	cmd0, err := benchdb.CommandStats(ctx, admin)
	if err != nil {
		return row, err
	}
	var claims []time.Duration
	for k := range calls + warm {
		now := base.Add(time.Duration(k) * 2 * time.Millisecond)
		t := time.Now()
		got, err := st.ClaimDue(ctx, now, 1000, time.Millisecond)
		if err != nil {
			return row, err
		}
		d := time.Since(t)
		if len(got) != due {
			return row, fmt.Errorf("schedcost: call %d claimed %d, want %d", k, len(got), due)
		}
		if k >= warm {
			claims = append(claims, d)
		}
	}
	cmd1, err := benchdb.CommandStats(ctx, admin)
	if err != nil {
		return row, err
	}
	row.Claim = summarise(claims)
	for _, c := range benchdb.DiffCommandStats(cmd0, cmd1) {
		if c.Name == "evalsha" && c.Calls > 0 {
			row.ClaimServer = time.Duration(c.Usec/c.Calls) * time.Microsecond
		}
	}

	// Reconcile reads every credential: it is the O(N) part of scheduling.
	var rec []time.Duration
	for range 3 {
		t := time.Now()
		fixed, err := st.Reconcile(ctx, base.Add(time.Duration(calls+warm)*2*time.Millisecond))
		if err != nil {
			return row, err
		}
		if fixed != 0 {
			return row, fmt.Errorf("schedcost: reconcile fixed %d credentials, want 0", fixed)
		}
		rec = append(rec, time.Since(t))
	}
	row.Reconcile = summarise(rec)
	progress("schedcost: %s credentials: ClaimDue p50 %s p99 %s (nothing due: p50 %s); Reconcile %s",
		thousands(int64(size)), us(row.Claim.P50), us(row.Claim.P99), us(row.Empty.P50), ms(row.Reconcile.P50))
	return row, nil
}
