package budget

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// The index of used accounts lets a reader (the operator page) find the
// accounts that are busy or paused without knowing every account there
// could be (Halaxy has one per credential, possibly 100,000).
//
// It is one sorted set, <prefix>budget:accounts: member the account,
// score the last time (ms, on the budget's local or injected clock) a
// process leased permits of it or asked for some in vain, learned from its
// response headers, or, when later, the end of a 429's pause. It is
// written with ZADD GT, so a pause's end is not lowered by the next call.
//
// Cost: it is written only with a call that goes to Redis anyway (a new
// lease, a Priority take, an Observe that runs its script), never per
// permit handed out locally, and at most once per indexEvery per account
// and process (a 429's pause always). The write rides in the same
// pipeline as the account's script: no extra round trip.
//
// Redis Cluster: the account's own keys share the hash tag {account} so
// that its scripts touch one slot. The index is one key for all accounts,
// in a slot of its own, so it is never a key of those scripts (a script
// touching two slots fails on Cluster); it is a separate command in the
// same pipeline, which the cluster client sends to the index's node. The
// two are not atomic together, and need not be: the index only says where
// to look, and a write that fails is best effort (it never fails a Take;
// the next call writes it again).
//
// Growth: entries older than Options.IndexRetention are removed with each
// write and each read, and the whole set expires after it when nothing
// is written.

// indexEvery is how often, at most, a process writes one account's entry.
// An entry's time is so within about that of the last use.
const indexEvery = time.Second

// indexPruneAt is how many throttle entries a process keeps before it
// drops those older than indexEvery (they would write anyway).
const indexPruneAt = 4096

// Activity is one account's entry in the index of used accounts.
type Activity struct {
	Account string
	// Last is the last time a process leased permits of the account (or
	// asked for some in vain), or learned from one of its responses; or,
	// when later, the end of its last 429 pause, so an account still
	// paused has a Last in the future. It lags the last use by up to a
	// second.
	Last time.Time
}

// indexWrite is an index entry to write with a script (zero at: none).
type indexWrite struct {
	at    time.Time // local time of the call
	score int64     // the entry's time, ms
}

func (b *Budget) retention() time.Duration {
	if b.o.IndexRetention > 0 {
		return b.o.IndexRetention
	}
	return 24 * time.Hour
}

// indexDue says whether a call for account at local should write the
// account's index entry: not if this process wrote it less than
// indexEvery ago.
func (b *Budget) indexDue(account string, local time.Time) indexWrite {
	b.mu.Lock()
	last, ok := b.indexed[account]
	b.mu.Unlock()
	if ok && local.Sub(last) < indexEvery && !local.Before(last) {
		return indexWrite{}
	}
	return indexWrite{at: local, score: local.UnixMilli()}
}

// markIndexed notes that account's entry was written at local.
func (b *Budget) markIndexed(account string, local time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.indexed) >= indexPruneAt {
		for a, t := range b.indexed {
			if local.Sub(t) >= indexEvery || local.Before(t) {
				delete(b.indexed, a)
			}
		}
	}
	b.indexed[account] = local
}

// runScript runs s on account's keys, writing account's index entry in
// the same round trip when w says so (see above for why it is a command
// of its own).
func (b *Budget) runScript(ctx context.Context, s *redis.Script, account string, w indexWrite, args ...any) ([]int64, error) {
	keys := b.keys(account)
	if w.at.IsZero() {
		return s.Run(ctx, b.rdb, keys, args...).Int64Slice()
	}
	pipe := b.rdb.Pipeline()
	cmd := s.EvalSha(ctx, pipe, keys, args...)
	key := b.indexKey()
	add := pipe.ZAddArgs(ctx, key, redis.ZAddArgs{GT: true, Members: []redis.Z{{Score: float64(w.score), Member: account}}})
	pipe.ZRemRangeByScore(ctx, key, "-inf", "("+strconv.FormatInt(w.at.Add(-b.retention()).UnixMilli(), 10))
	pipe.PExpire(ctx, key, b.retention())
	_, _ = pipe.Exec(ctx) // each command's error is read below
	if redis.HasErrorPrefix(cmd.Err(), "NOSCRIPT") {
		cmd = s.Eval(ctx, b.rdb, keys, args...)
	}
	if add.Err() == nil {
		b.markIndexed(account, w.at)
	}
	return cmd.Int64Slice()
}

// Accounts returns the accounts active at or after since (their Last, see
// Activity), most recent first, so that accounts still paused come first;
// at most limit of them (none when limit <= 0), and how many there are in
// all. Accounts unused for longer than Options.IndexRetention are gone.
// It costs O(log n + limit) in Redis, n the accounts used within the
// retention, whatever the number of accounts there could be.
func (b *Budget) Accounts(ctx context.Context, since time.Time, limit int) (active []Activity, total int, err error) {
	key := b.indexKey()
	local := b.now()
	from := strconv.FormatInt(since.UnixMilli(), 10)
	pipe := b.rdb.Pipeline()
	pipe.ZRemRangeByScore(ctx, key, "-inf", "("+strconv.FormatInt(local.Add(-b.retention()).UnixMilli(), 10))
	var list *redis.ZSliceCmd
	if limit > 0 {
		list = pipe.ZRevRangeByScoreWithScores(ctx, key, &redis.ZRangeBy{Max: "+inf", Min: from, Count: int64(limit)})
	}
	count := pipe.ZCount(ctx, key, from, "+inf")
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, 0, fmt.Errorf("budget: list accounts: %w", err)
	}
	if list != nil {
		zs := list.Val()
		active = make([]Activity, 0, len(zs))
		for _, z := range zs {
			a, _ := z.Member.(string)
			active = append(active, Activity{Account: a, Last: time.UnixMilli(int64(z.Score)).In(local.Location())})
		}
	}
	return active, int(count.Val()), nil
}
