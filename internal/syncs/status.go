package syncs

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/tokenrelay/tokenrelay/adminclient"
)

// Status returns the sync id of (vendor, credential); a sync of another
// credential is ErrNotFound, as one that does not exist.
func (r *Runner) Status(ctx context.Context, vendor, credential, id string) (adminclient.SyncStatus, error) {
	rec, err := r.load(ctx, id)
	if errors.Is(err, errNoSync) || err == nil && (rec.vendor != vendor || rec.credential != credential) {
		return adminclient.SyncStatus{}, ErrNotFound
	}
	if err != nil {
		return adminclient.SyncStatus{}, err
	}
	return r.status(ctx, rec)
}

func (r *Runner) status(ctx context.Context, rec record) (adminclient.SyncStatus, error) {
	st := adminclient.SyncStatus{ID: rec.id, Vendor: rec.vendor, Credential: rec.credential, Resource: rec.resource,
		Mode: rec.mode, Batch: rec.batch, State: rec.state, CancelRequested: rec.cancel && rec.state == StateRunning,
		Pages: rec.page, Resources: rec.resources, Total: rec.total, StartedAt: rec.started, UpdatedAt: rec.updated,
		EndedAt: rec.ended, ErrorClass: rec.errorClass}
	if rec.sealedError != "" {
		if err := r.open(rec.vendor, rec.credential, rec.id, "error", rec.sealedError, &st.Message); err != nil {
			return st, err
		}
	}
	if rec.state == StateCompleted {
		cur, err := r.cursorOf(rec)
		if err != nil {
			return st, err
		}
		st.Mark = cur.Mark.UTC()
	}
	return st, nil
}

// Cancel asks the running sync id of (vendor, credential) to stop between
// pages: the page in flight is delivered, then the sync ends with
// sync.failed (class cancelled). It returns the sync's status.
func (r *Runner) Cancel(ctx context.Context, vendor, credential, id string) (adminclient.SyncStatus, error) {
	res, err := scriptCancel.Run(ctx, r.d.Redis, []string{r.keys.sync(id)}, vendor, credential).Text()
	if err != nil {
		return adminclient.SyncStatus{}, fmt.Errorf("syncs: cancel %s: %w", id, err)
	}
	if res == "NOT_FOUND" {
		return adminclient.SyncStatus{}, ErrNotFound
	}
	if res == "OK" {
		r.d.Logger.Info().Str("sync", id).Str("vendor", vendor).Str("credential", credential).Msg("sync cancel requested")
	}
	return r.Status(ctx, vendor, credential, id)
}

// List returns the syncs started most recently, newest first, at most limit
// (for operators: every credential's).
func (r *Runner) List(ctx context.Context, limit int) ([]adminclient.SyncStatus, error) {
	ids, err := r.d.Redis.ZRevRange(ctx, r.keys.all(), 0, int64(limit)-1).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("syncs: list: %w", err)
	}
	out := make([]adminclient.SyncStatus, 0, len(ids))
	var gone []any
	for _, id := range ids {
		rec, err := r.load(ctx, id)
		if errors.Is(err, errNoSync) {
			gone = append(gone, id)
			continue
		}
		if err != nil {
			return nil, err
		}
		st, err := r.status(ctx, rec)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	if len(gone) > 0 {
		_ = r.d.Redis.ZRem(ctx, r.keys.all(), gone...).Err() // expired records
	}
	return out, nil
}

// Running counts the running syncs of each configured vendor (every
// vendor is named, 0 when it has none), for the metrics. A sync whose
// record expired without ending (none of its pages moved for Deps.TTL) is
// no longer counted.
func (r *Runner) Running(ctx context.Context) (map[string]int, error) {
	stale := strconv.FormatInt(r.d.Clock().Add(-r.d.TTL).UnixMilli(), 10)
	p := r.d.Redis.Pipeline()
	counts := make(map[string]*redis.IntCmd, len(r.d.Vendors))
	for name := range r.d.Vendors {
		p.ZRemRangeByScore(ctx, r.keys.running(name), "-inf", "("+stale)
		counts[name] = p.ZCard(ctx, r.keys.running(name))
	}
	if _, err := p.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("syncs: count running syncs: %w", err)
	}
	out := make(map[string]int, len(counts))
	for name, c := range counts {
		out[name] = int(c.Val())
	}
	return out, nil
}
