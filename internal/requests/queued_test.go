package requests_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/requests"
	"github.com/tokenrelay/tokenrelay/jobs"
)

// downEnqueuer is an asynq that is down: the feeder releases requests and
// cannot enqueue them, as a feeder that dies in between.
type downEnqueuer struct {
	mu    sync.Mutex
	tries int
}

func (d *downEnqueuer) EnqueueContext(context.Context, *asynq.Task, ...asynq.Option) (*asynq.TaskInfo, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.tries++
	return nil, errors.New("asynq is down")
}

// feederWith is a feeder of w enqueuing to e, for a test to call Feed.
func (w *world) feederWith(e requests.Enqueuer) *requests.Feeder {
	w.t.Helper()
	f, err := requests.NewFeeder(requests.FeederOptions{Redis: w.rdb, Prefix: prefix, Budget: w.budget(),
		Vendors: w.vendors, Enqueuer: e, Logger: w.log, Keyring: w.kr})
	require.NoError(w.t, err)
	return f
}

// requireDuplicate checks that submitting id again (by its credential) is
// refused as a duplicate.
func (w *world) requireDuplicate(credential, id string) {
	w.t.Helper()
	r := newRequest(credential, "")
	r.ID = id
	_, err := w.sub.Submit(context.Background(), r)
	var se *requests.SubmitError
	require.ErrorAs(w.t, err, &se, "id %s was taken again", id)
	require.Equal(w.t, requests.CodeDuplicate, se.Code)
}

// A million queued requests must fit in Redis: a queued request is its
// entry in its batch's queue and its id in one set, with no key of its
// own (a key costs its name, its slot in the keyspace and one in the
// expiry table). It still counts as queued, its id is still taken, and it
// gets its record, with an expiry, as it is released. A feeder that stops
// between releasing and enqueueing loses none of it.
func TestQueuedRequestHasNoKeyOfItsOwn(t *testing.T) {
	t.Parallel()
	w := setup(t, setupOptions{})
	w.addCredential("clinic-1")
	ctx := context.Background()
	ids := w.submit("clinic-1", "nightly", 3)
	for _, id := range ids {
		own, err := w.rdb.Keys(ctx, prefix+"*"+id+"*").Result()
		require.NoError(t, err)
		require.Empty(t, own, "queued request %s has a key of its own", id)
		w.requireDuplicate("clinic-1", id)
	}
	st, err := w.batches.Status(ctx, vendorName, "clinic-1", "nightly")
	require.NoError(t, err)
	require.Equal(t, int64(3), st.Queued, fmtCounts(st))

	// Released, then the feeder cannot enqueue them (as if it died).
	down := &downEnqueuer{}
	_, err = w.feederWith(down).Feed(ctx)
	require.Error(t, err)
	require.Equal(t, 1, down.tries, "the three released together are one task")
	account := vendorName + "/clinic-1"
	for _, id := range ids {
		ok, err := w.rdb.HExists(ctx, prefix+"req:releasing:"+account, id).Result()
		require.NoError(t, err)
		require.True(t, ok, "released request %s is not remembered as released", id)
		ttl, err := w.rdb.TTL(ctx, prefix+"req:r:"+id).Result()
		require.NoError(t, err)
		require.Greater(t, ttl, 24*time.Hour, "released request %s has no record kept for the TTL", id)
		w.requireDuplicate("clinic-1", id)
	}
	queued, err := w.rdb.SCard(ctx, prefix+"req:queued").Result()
	require.NoError(t, err)
	require.Zero(t, queued, "released requests are still in the queued set")

	// The next feeder enqueues them; each runs once.
	w.worker(2)
	w.feeder()
	requireEachCompletedOnce(t, ids, w.waitOutcomes(len(ids), 30*time.Second))
	require.Eventually(t, func() bool {
		st, err = w.batches.Status(ctx, vendorName, "clinic-1", "nightly")
		return err == nil && st.Done == 3
	}, 10*time.Second, 20*time.Millisecond)
	require.Equal(t, int64(3), st.Total, fmtCounts(st))
	require.Zero(t, st.Queued+st.Waiting+st.Running, fmtCounts(st))
	for _, id := range ids {
		w.requireDuplicate("clinic-1", id)
	}
}

// The queued requests of a cancelled batch end as cancelled, each with a
// record that expires, and their ids leave the queued set (nothing of
// them is left that would grow forever), still taken.
func TestCancelledBatchLeavesTheQueuedSet(t *testing.T) {
	t.Parallel()
	w := setup(t, setupOptions{})
	w.addCredential("clinic-1")
	ctx := context.Background()
	ids := w.submit("clinic-1", "nightly", 5)
	kept := w.submit("clinic-1", "other", 1)
	require.NoError(t, w.batches.Cancel(ctx, vendorName, "clinic-1", "nightly"))

	f := w.feederWith(&downEnqueuer{})
	require.Eventually(t, func() bool {
		_, _ = f.Feed(ctx) // the other batch's request cannot be enqueued
		return len(w.outcomes()) >= len(ids)
	}, 10*time.Second, 20*time.Millisecond)
	got := w.outcomes()
	require.Len(t, got, len(ids))
	for _, o := range got {
		require.Equal(t, events.TypeRequestFailed, o.Type)
		require.Equal(t, "cancelled", o.Class)
	}
	st, err := w.batches.Status(ctx, vendorName, "clinic-1", "nightly")
	require.NoError(t, err)
	require.Equal(t, int64(5), st.Cancelled, fmtCounts(st))
	require.Zero(t, st.Queued, fmtCounts(st))

	queued, err := w.rdb.SMembers(ctx, prefix+"req:queued").Result()
	require.NoError(t, err)
	require.Empty(t, queued, "ended or released ids left in the queued set")
	for _, id := range append(ids, kept...) {
		ttl, err := w.rdb.TTL(ctx, prefix+"req:r:"+id).Result()
		require.NoError(t, err)
		require.Greater(t, ttl, 24*time.Hour, "request %s has no record kept for the TTL", id)
		w.requireDuplicate("clinic-1", id)
	}
	state, err := w.rdb.HGet(ctx, prefix+"req:r:"+ids[0], "state").Result()
	require.NoError(t, err)
	require.Equal(t, "cancelled", state)
}

// A feeder that stops between taking a cancelled batch's queued ids out of
// the queued set and ending their requests leaves each id taken (its hash
// reads queued) and nothing lost: the next pass ends each request once.
func TestFeederStoppedMidCancelLeavesIDsTaken(t *testing.T) {
	t.Parallel()
	w := setup(t, setupOptions{})
	w.addCredential("clinic-1")
	ctx := context.Background()
	ids := w.submit("clinic-1", "nightly", 3)
	require.NoError(t, w.batches.Cancel(ctx, vendorName, "clinic-1", "nightly"))
	rs := make([]jobs.Request, len(ids))
	for i, id := range ids {
		rs[i] = jobs.Request{ID: id, Vendor: vendorName, Credential: "clinic-1", Batch: "nightly"}
	}
	f := w.feederWith(&downEnqueuer{})
	require.NoError(t, f.Unqueue(ctx, rs))
	for _, id := range ids {
		state, err := w.rdb.HGet(ctx, prefix+"req:r:"+id, "state").Result()
		require.NoError(t, err)
		require.Equal(t, "queued", state)
		w.requireDuplicate("clinic-1", id)
	}
	st, err := w.batches.Status(ctx, vendorName, "clinic-1", "nightly")
	require.NoError(t, err)
	require.Equal(t, int64(3), st.Queued, fmtCounts(st))

	require.Eventually(t, func() bool {
		_, _ = f.Feed(ctx)
		return len(w.outcomes()) >= len(ids)
	}, 10*time.Second, 20*time.Millisecond)
	got := w.outcomes()
	require.Len(t, got, len(ids))
	seen := map[string]bool{}
	for _, o := range got {
		require.Equal(t, "cancelled", o.Class)
		seen[o.ID] = true
	}
	require.Len(t, seen, len(ids))
	st, err = w.batches.Status(ctx, vendorName, "clinic-1", "nightly")
	require.NoError(t, err)
	require.Equal(t, int64(3), st.Cancelled, fmtCounts(st))
	require.Zero(t, st.Queued, fmtCounts(st))
	for _, id := range ids {
		ttl, err := w.rdb.TTL(ctx, prefix+"req:r:"+id).Result()
		require.NoError(t, err)
		require.Greater(t, ttl, 24*time.Hour)
	}
}
