package requests_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/requests"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
	"github.com/tokenrelay/tokenrelay/jobs"
)

// The vendor stops honouring the token mid-batch (the client's keys are
// re-issued, killing its tokens): the 401s bring exactly one token call
// (the fenced refresh), and every request still completes once.
func TestUnauthorizedMidBatchRefreshesOnce(t *testing.T) {
	t.Parallel()
	w := setup(t, setupOptions{sandboxLimit: 25, window: time.Second})
	w.addCredential("clinic-1")
	w.worker(4)
	w.worker(4)
	w.feeder()
	ids := w.submit("clinic-1", "sync", 100)
	w.waitOutcomes(20, 30*time.Second)
	w.sb.DeleteClient("client-clinic-1")
	w.sb.AddClient("client-clinic-1", "secret-clinic-1")

	got := w.waitOutcomes(len(ids), 60*time.Second)
	requireEachCompletedOnce(t, ids, got)
	require.Positive(t, w.rec.count(http.StatusUnauthorized), "the test did not make the vendor refuse the token")
	require.Equal(t, 2, w.sb.TokenCalls("client-clinic-1"), "first token, then one refresh after the 401s")
	c, err := w.store.CurrentToken(context.Background(), "clinic-1")
	require.NoError(t, err)
	require.Equal(t, int64(2), c.Generation)
}

// A worker shut down mid-batch loses no request: its tasks go back to the
// queue and the other worker completes them, each once.
func TestStoppedWorkerLosesNothing(t *testing.T) {
	t.Parallel()
	w := setup(t, setupOptions{sandboxLimit: 40, window: time.Second})
	w.addCredential("clinic-1")
	stop := w.worker(4)
	w.worker(4)
	w.feeder()
	ids := w.submit("clinic-1", "sync", 160)
	w.waitOutcomes(40, 30*time.Second)
	stop()
	got := w.waitOutcomes(len(ids), 60*time.Second)
	requireEachCompletedOnce(t, ids, got)
}

// Requests repeating an idempotency key are sent once; the repeats get the
// first one's outcome, naming it.
func TestIdempotencyKeyRunsOnce(t *testing.T) {
	t.Parallel()
	w := setup(t, setupOptions{})
	w.addCredential("clinic-1")
	var ids []string
	for range 3 {
		r := jobs.NewRequest("clinic-1", http.MethodGet, "Patient")
		r.IdempotencyKey = "sync-2026-11-23"
		acc, err := w.sub.Submit(context.Background(), r)
		require.NoError(t, err)
		ids = append(ids, acc.ID)
	}
	w.worker(4)
	w.feeder()
	got := w.waitOutcomes(3, 30*time.Second)
	requireEachCompletedOnce(t, ids, got)
	require.Len(t, w.rec.snapshot(), 1, "the vendor saw the request once")
	var first string
	for _, o := range got {
		if o.Dup == "" {
			require.Empty(t, first, "two requests ran")
			first = o.ID
		}
	}
	for _, o := range got {
		if o.ID != first {
			require.Equal(t, first, o.Dup)
			require.Equal(t, http.StatusOK, o.Status)
		}
	}
}

// A body above the inline limit is stored in the JetStream object store and
// the event refers to it.
func TestLargeBodyGoesToTheObjectStore(t *testing.T) {
	t.Parallel()
	_, js, _ := testenv.NATS(t)
	bucket := strings.ToLower(testenv.Unique("t-req-"))
	ctx := context.Background()
	objects, err := js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: bucket, Storage: jetstream.MemoryStorage})
	require.NoError(t, err)
	t.Cleanup(func() { _ = js.DeleteObjectStore(context.Background(), bucket) })

	w := setup(t, setupOptions{inline: 100})
	w.objects, w.bucket = objects, bucket
	w.addCredential("clinic-1")
	w.worker(2)
	w.feeder()
	ids := w.submit("clinic-1", "", 1)
	got := w.waitOutcomes(1, 30*time.Second)
	requireEachCompletedOnce(t, ids, got)
	var data events.RequestCompleted
	require.NoError(t, json.Unmarshal(got[0].Raw, &data))
	require.Nil(t, data.Body)
	require.NotNil(t, data.BodyRef)
	require.Equal(t, bucket, data.BodyRef.Bucket)
	require.Greater(t, data.BodySize, 100)
	body, err := objects.GetBytes(ctx, data.BodyRef.Name)
	require.NoError(t, err)
	require.Len(t, body, data.BodySize)
	require.Contains(t, string(body), `"resourceType":"Bundle"`)
}

// A feeder that stopped between taking requests from their queue and
// enqueueing them loses none: the next active feeder enqueues them.
func TestFeederStoppedMidReleaseLosesNothing(t *testing.T) {
	t.Parallel()
	w := setup(t, setupOptions{})
	w.addCredential("clinic-1")
	ids := w.submit("clinic-1", "sync", 3)
	ctx := context.Background()
	// What release.lua does before the feeder enqueues: the requests leave
	// the queue for the releasing hash, under their first release.
	account := vendorName + "/clinic-1"
	queues, err := w.rdb.Keys(ctx, prefix+"req:q:"+account+":*.sync").Result() // the credential's batch
	require.NoError(t, err)
	require.Len(t, queues, 1)
	for range ids {
		item, err := w.rdb.LPop(ctx, queues[0]).Result()
		require.NoError(t, err)
		id, err := requests.EntryID(item)
		require.NoError(t, err)
		require.NoError(t, w.rdb.HIncrBy(ctx, prefix+"req:r:"+id, "releases", 1).Err())
		require.NoError(t, w.rdb.HSet(ctx, prefix+"req:releasing:"+account, id, "1|"+item).Err())
	}
	require.NoError(t, w.rdb.Del(ctx, prefix+"req:ring:"+account, prefix+"req:accounts").Err())
	w.worker(2)
	w.feeder()
	requireEachCompletedOnce(t, ids, w.waitOutcomes(len(ids), 30*time.Second))
}
