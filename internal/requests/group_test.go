package requests_test

import (
	"context"
	"io"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/requests"
	"github.com/tokenrelay/tokenrelay/jobs"
)

// enqueueFunc is a requests.Enqueuer that hands the tasks to a function.
type enqueueFunc func(task *asynq.Task) error

func (f enqueueFunc) EnqueueContext(_ context.Context, task *asynq.Task, _ ...asynq.Option) (*asynq.TaskInfo, error) {
	return &asynq.TaskInfo{}, f(task)
}

// Requests released together travel in one task. One of them that must
// wait (a 502: back off) leaves the group for a task of its own while the
// others complete; the group's task run again, as asynq runs it when its
// worker died, sends neither the requests that ended nor the one that
// left (its own task sends it).
func TestGroupRunAgainSendsOnlyWhatIsStillItsOwn(t *testing.T) {
	t.Parallel()
	w := setup(t, setupOptions{})
	w.addCredential("clinic-1")
	var observations atomic.Int32
	w.rec.api = map[string]http.HandlerFunc{
		"/Observation": func(rw http.ResponseWriter, req *http.Request) {
			_, _ = io.Copy(io.Discard, req.Body)
			observations.Add(1)
			rw.WriteHeader(http.StatusBadGateway)
		},
	}
	ctx := context.Background()
	ids := w.submit("clinic-1", "g", 2)
	slow, err := w.sub.Submit(ctx, jobs.NewRequest("clinic-1", http.MethodGet, "Observation"))
	require.NoError(t, err)

	var tasks []*asynq.Task
	f, err := requests.NewFeeder(requests.FeederOptions{Redis: w.rdb, Prefix: prefix, Budget: w.budget(), Vendors: w.vendors,
		Enqueuer: enqueueFunc(func(task *asynq.Task) error { tasks = append(tasks, task); return nil }),
		Logger:   w.log, Keyring: w.kr})
	require.NoError(t, err)
	_, err = f.Feed(ctx)
	require.NoError(t, err)
	require.Len(t, tasks, 1, "the three requests released together are one task")

	h, err := requests.NewHandler(requests.HandlerDeps{Redis: w.rdb, Prefix: prefix, Credentials: w.store,
		Refresh: w.refresh.Handle, Budget: w.budget(), Vendors: w.vendors, Metrics: w.metrics, Logger: w.log, Keyring: w.kr})
	require.NoError(t, err)
	require.NoError(t, h.ProcessTask(ctx, tasks[0]))
	require.Len(t, w.rec.snapshot(), 2)
	require.EqualValues(t, 1, observations.Load())
	got := w.outcomes()
	requireEachCompletedOnce(t, ids, got)
	scheduled, err := w.rdb.ZCard(ctx, "asynq:{default}:scheduled").Result()
	require.NoError(t, err)
	require.EqualValues(t, 1, scheduled, "the 502 went to a task of its own, due after its backoff")

	require.NoError(t, h.ProcessTask(ctx, tasks[0]))
	require.Len(t, w.rec.snapshot(), 2, "the group's task run again sent a completed request again")
	require.EqualValues(t, 1, observations.Load(), "the group's task run again sent the request that left it")
	require.Len(t, w.outcomes(), 2)
	for _, o := range w.outcomes() {
		require.NotEqual(t, slow.ID, o.ID)
		require.Equal(t, events.TypeRequestCompleted, o.Type)
	}
}
