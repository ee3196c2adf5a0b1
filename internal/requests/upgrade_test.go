package requests_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/requests"
	"github.com/tokenrelay/tokenrelay/jobs"
)

// An upgrade finds requests queued in the JSON form (before the binary
// entry) with the request hashes the old submission wrote: they run, once
// each, and those of a batch cancelled meanwhile end as cancelled.
func TestRequestsQueuedBeforeTheBinaryFormStillRun(t *testing.T) {
	t.Parallel()
	w := setup(t, setupOptions{})
	w.addCredential("clinic-1")
	ctx := context.Background()
	account := vendorName + "/clinic-1"
	run := w.submit("clinic-1", "old", 3)
	stopped := w.submit("clinic-1", "old-stopped", 2)
	for batch, ids := range map[string][]string{"old": run, "old-stopped": stopped} {
		queues, err := w.rdb.Keys(ctx, prefix+"req:q:"+account+":*."+batch).Result()
		require.NoError(t, err)
		require.Len(t, queues, 1)
		items, err := w.rdb.LRange(ctx, queues[0], 0, -1).Result()
		require.NoError(t, err)
		require.Len(t, items, len(ids))
		for i, item := range items {
			id, err := requests.EntryID(item)
			require.NoError(t, err)
			r := jobs.NewRequest("clinic-1", http.MethodGet, "Patient")
			r.ID, r.Vendor, r.Batch, r.SubmittedAt = id, vendorName, batch, time.Now().UTC()
			r.Headers = map[string]string{"X-Test-Credential": "clinic-1"}
			old, err := requests.LegacyEntry(w.kr, r)
			if i == 0 { // from before requests were sealed
				old, err = json.Marshal(r)
			}
			require.NoError(t, err)
			require.NoError(t, w.rdb.LSet(ctx, queues[0], int64(i), old).Err())
			require.NoError(t, w.rdb.HSet(ctx, prefix+"req:r:"+id, "batch", batch, "account", account,
				"vendor", vendorName, "credential", "clinic-1").Err())
		}
	}
	require.NoError(t, w.batches.Cancel(ctx, vendorName, "clinic-1", "old-stopped"))
	w.worker(2)
	w.feeder()
	got := w.waitOutcomes(len(run)+len(stopped), 30*time.Second)
	var ran []outcome
	for _, o := range got {
		if o.Batch == "old" {
			ran = append(ran, o)
			continue
		}
		require.Equal(t, events.TypeRequestFailed, o.Type)
		require.Equal(t, "cancelled", o.Class)
	}
	requireEachCompletedOnce(t, run, ran)
	require.Len(t, got, len(run)+len(stopped))
	require.Equal(t, len(run), w.rec.count(http.StatusOK), "each old request reached the vendor once")
	// The scripts found each old entry's id: nothing is left released or
	// pending (which would hold back the account's next releases), and no
	// request hash was made under a wrong id.
	require.Eventually(t, func() bool {
		released, err1 := w.rdb.HLen(ctx, prefix+"req:releasing:"+account).Result()
		pending, err2 := w.rdb.ZCard(ctx, prefix+"req:pending:"+account).Result()
		return err1 == nil && err2 == nil && released == 0 && pending == 0
	}, 10*time.Second, 20*time.Millisecond, "old entries left released or pending")
	hashes, err := w.rdb.Keys(ctx, prefix+"req:r:*").Result()
	require.NoError(t, err)
	require.Len(t, hashes, len(run)+len(stopped))
	queued, err := w.rdb.SCard(ctx, prefix+"req:queued").Result()
	require.NoError(t, err)
	require.Zero(t, queued, "old entries' ids left in the queued set")
}
