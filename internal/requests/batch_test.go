package requests_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/requests"
)

// A small batch submitted after a big one on the same budget is not starved:
// it is released alongside the big one, one for one, and ends long before.
func TestSmallBatchIsNotStarvedByABigOne(t *testing.T) {
	t.Parallel()
	w := setup(t, setupOptions{sandboxLimit: 20, window: time.Second})
	w.addCredential("clinic-1")
	w.worker(4)
	w.worker(4)
	w.feeder()
	big := w.submit("clinic-1", "big", 200)
	w.waitOutcomes(10, 30*time.Second)
	small := w.submit("clinic-1", "small", 10)

	deadline := time.Now().Add(60 * time.Second)
	for {
		st, err := w.batches.Status(context.Background(), vendorName, "clinic-1", "small")
		require.NoError(t, err)
		if st.Finished() {
			break
		}
		require.True(t, time.Now().Before(deadline), "small batch not finished: %s", fmtCounts(st))
		time.Sleep(50 * time.Millisecond)
	}
	bigDone := 0
	for _, o := range w.outcomes() {
		if o.Batch == "big" {
			bigDone++
		}
	}
	// FIFO would have run all 200 first; round robin lets the big batch run
	// about as many as the small one after it arrived (plus what was
	// already released).
	require.Less(t, bigDone, 80, "the big batch ran %d of %d before the small one finished", bigDone, len(big))
	require.Equal(t, 10, len(small))
}

// Batch status counts a batch's requests; cancelling stops those not yet
// run (request.failed, class cancelled) and nothing more reaches the vendor.
func TestBatchStatusAndCancel(t *testing.T) {
	t.Parallel()
	w := setup(t, setupOptions{sandboxLimit: 10, window: time.Second})
	w.addCredential("clinic-1")
	w.worker(4)
	w.feeder()
	ctx := context.Background()
	_, err := w.batches.Status(ctx, vendorName, "clinic-1", "nope")
	require.ErrorIs(t, err, requests.ErrBatchNotFound)
	require.ErrorIs(t, w.batches.Cancel(ctx, vendorName, "clinic-1", "nope"), requests.ErrBatchNotFound)

	ids := w.submit("clinic-1", "slow", 100)
	w.waitOutcomes(10, 30*time.Second)
	st, err := w.batches.Status(ctx, vendorName, "clinic-1", "slow")
	require.NoError(t, err)
	require.Equal(t, int64(100), st.Total)
	require.Equal(t, st.Total, st.Queued+st.Waiting+st.Running+st.Done+st.Failed+st.Cancelled, fmtCounts(st))
	require.Positive(t, st.Rate)
	require.True(t, st.EstimatedFinish.After(time.Now()))

	require.NoError(t, w.batches.Cancel(ctx, vendorName, "clinic-1", "slow"))
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err = w.batches.Status(ctx, vendorName, "clinic-1", "slow")
		require.NoError(t, err)
		if st.Finished() {
			break
		}
		require.True(t, time.Now().Before(deadline), "cancelled batch did not end: %s", fmtCounts(st))
		time.Sleep(50 * time.Millisecond)
	}
	require.True(t, st.CancelRequested)
	require.Greater(t, st.Cancelled, int64(50), fmtCounts(st))
	require.Equal(t, st.Total, st.Done+st.Failed+st.Cancelled, fmtCounts(st))
	sent := len(w.rec.snapshot())
	require.Equal(t, int(st.Done), sent, "requests reached the vendor that were not counted done")

	got := w.outcomes()
	require.Len(t, got, len(ids))
	cancelled := 0
	for _, o := range got {
		if o.Type == events.TypeRequestFailed {
			require.Equal(t, "cancelled", o.Class)
			cancelled++
		}
	}
	require.Equal(t, int(st.Cancelled), cancelled)

	// A request submitted to a cancelled batch is refused.
	_, err = w.sub.Submit(ctx, newRequest("clinic-1", "slow"))
	var se *requests.SubmitError
	require.ErrorAs(t, err, &se)
	require.Equal(t, requests.CodeBatchCancelled, se.Code)
}
