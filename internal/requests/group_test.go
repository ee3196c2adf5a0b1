package requests_test

import (
	"context"
	"io"
	"net/http"
	"sync"
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

// taskIDEnqueuer keeps tasks by their asynq task id, refusing an id it
// already has as asynq does (ErrTaskIDConflict).
type taskIDEnqueuer struct {
	mu    sync.Mutex
	tasks map[string]*asynq.Task
	order []string
	on    func()
}

func (e *taskIDEnqueuer) EnqueueContext(_ context.Context, task *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	id := ""
	for _, o := range opts {
		if o.Type() == asynq.TaskIDOpt {
			id, _ = o.Value().(string)
		}
	}
	if _, ok := e.tasks[id]; ok {
		return nil, asynq.ErrTaskIDConflict
	}
	e.tasks[id] = task
	e.order = append(e.order, id)
	if e.on != nil {
		e.on()
	}
	return &asynq.TaskInfo{ID: id}, nil
}

// A feeder that dies after enqueueing a group's task and before forgetting
// its requests as released: its successor enqueues each of them again.
// While the group's task is sending them, the tasks of the successor send
// none of them again: each request is sent once.
func TestAGroupRecoveredAfterItsFeederDiedIsSentOnce(t *testing.T) {
	t.Parallel()
	w := setup(t, setupOptions{})
	w.addCredential("clinic-1")
	ctx := context.Background()
	ids := w.submit("clinic-1", "g", 3)

	var sends atomic.Int32
	inFlight := make(chan struct{}, 3)
	hold := make(chan struct{})
	w.rec.api = map[string]http.HandlerFunc{
		"/Patient": func(rw http.ResponseWriter, req *http.Request) {
			if sends.Add(1) <= 3 {
				inFlight <- struct{}{}
				<-hold
			}
			rw.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(rw, `{"resourceType":"Patient"}`)
		},
	}

	// The first feeder enqueues one task for the three; its releasing
	// records are taken as they were before it could forget them.
	enq := &taskIDEnqueuer{tasks: map[string]*asynq.Task{}}
	released := map[string]map[string]string{}
	enq.on = func() {
		keys, err := w.rdb.Keys(ctx, prefix+"req:releasing:*").Result()
		require.NoError(t, err)
		for _, k := range keys {
			m, err := w.rdb.HGetAll(ctx, k).Result()
			require.NoError(t, err)
			released[k] = m
		}
	}
	feeder := func() *requests.Feeder {
		f, err := requests.NewFeeder(requests.FeederOptions{Redis: w.rdb, Prefix: prefix, Budget: w.budget(), Vendors: w.vendors,
			Enqueuer: enq, Logger: w.log, Keyring: w.kr})
		require.NoError(t, err)
		return f
	}
	_, err := feeder().Feed(ctx)
	require.NoError(t, err)
	require.Len(t, enq.order, 1, "the three requests released together are one task")
	require.NotEmpty(t, released)
	enq.on = nil
	for k, m := range released {
		require.NoError(t, w.rdb.HSet(ctx, k, m).Err())
	}
	require.NoError(t, feeder().Recover(ctx))
	require.Len(t, enq.order, 3, "the successor enqueues the two requests that are not first in the group (the first's task id is the group's)")

	h, err := requests.NewHandler(requests.HandlerDeps{Redis: w.rdb, Prefix: prefix, Credentials: w.store,
		Refresh: w.refresh.Handle, Budget: w.budget(), Vendors: w.vendors, Metrics: w.metrics, Logger: w.log, Keyring: w.kr})
	require.NoError(t, err)
	groupDone := make(chan error, 1)
	go func() { groupDone <- h.ProcessTask(ctx, enq.tasks[enq.order[0]]) }()
	for range 3 {
		<-inFlight
	}
	for _, id := range enq.order[1:] {
		require.NoError(t, h.ProcessTask(ctx, enq.tasks[id]))
	}
	close(hold)
	require.NoError(t, <-groupDone)
	require.EqualValues(t, 3, sends.Load(), "a request of the group was sent again by its successor's task")
	requireEachCompletedOnce(t, ids, w.outcomes())
}
