package scheduler

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
	"github.com/tokenrelay/tokenrelay/internal/testenv/storetest"
	"github.com/tokenrelay/tokenrelay/jobs"
	"github.com/tokenrelay/tokenrelay/secret"
)

type bundle struct {
	st    *store.Store
	rdb   *redis.Client
	clock *testenv.Clock
	q     *asynq.Inspector
	mk    func() *Scheduler
}

func setup(t *testing.T, credentials int) *bundle {
	t.Helper()
	b := &bundle{clock: testenv.NewClock(storetest.T0)}
	b.st, b.rdb = storetest.New(t, b.clock.Now)
	rdb := b.rdb
	for i := range credentials {
		_, err := b.st.Upsert(context.Background(), store.NewCredential{
			ID: "c" + string(rune('a'+i)), Vendor: "v", ClientID: "id", Keys: store.Keys{ClientSecret: secret.New("s")},
		})
		require.NoError(t, err)
	}
	b.q = asynq.NewInspectorFromRedisClient(rdb)
	b.mk = func() *Scheduler {
		s, err := New(Options{Store: b.st, Enqueuer: asynq.NewClientFromRedisClient(rdb), Logger: zerolog.Nop(),
			Clock: b.clock.Now, ClaimLease: 10 * time.Second})
		require.NoError(t, err)
		return s
	}
	return b
}

// pending returns the renewals waiting on the critical queue, as
// "credential:generation", whether in single or batch tasks.
func (b *bundle) pending(t *testing.T) []string {
	t.Helper()
	tasks, err := b.q.ListPendingTasks(jobs.QueueCritical)
	if err != nil {
		return nil // the queue does not exist yet
	}
	var out []string
	for _, task := range tasks {
		var items []jobs.Refresh
		switch task.Type {
		case jobs.TypeTokenRefresh:
			var r jobs.Refresh
			require.NoError(t, json.Unmarshal(task.Payload, &r))
			items = []jobs.Refresh{r}
		case jobs.TypeTokenRefreshBatch:
			var batch jobs.RefreshBatch
			require.NoError(t, json.Unmarshal(task.Payload, &batch))
			items = batch.Items
		default:
			t.Fatalf("unexpected task type %s", task.Type)
		}
		for _, r := range items {
			out = append(out, fmt.Sprintf("%s:%d", r.Credential, r.Generation))
		}
	}
	return out
}

func TestTickEnqueuesEachDueCredentialOnceAcrossReplicas(t *testing.T) {
	t.Parallel()
	b := setup(t, 5)
	replicas := []*Scheduler{b.mk(), b.mk(), b.mk()}
	var wg sync.WaitGroup
	for _, s := range replicas {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 3 {
				_, err := s.Tick(context.Background())
				require.NoError(t, err)
			}
		}()
	}
	wg.Wait()
	require.ElementsMatch(t, []string{"ca:0", "cb:0", "cc:0", "cd:0", "ce:0"}, b.pending(t),
		"each due credential is enqueued once, however many replicas tick")
}

func TestLostTaskComesBackAfterTheLease(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	s := b.mk()
	n, err := s.Tick(context.Background())
	require.NoError(t, err)
	require.Equal(t, 1, n)
	// The task is lost (deleted from the queue, as a flush would).
	require.NoError(t, b.q.DeleteTask(jobs.QueueCritical, leaseTaskID(store.Due{ID: "ca"}, b.clock.Now().Add(10*time.Second))))
	require.Empty(t, b.pending(t))
	n, err = s.Tick(context.Background())
	require.NoError(t, err)
	require.Zero(t, n, "within the lease, nothing is due again")
	b.clock.Advance(11 * time.Second)
	n, err = s.Tick(context.Background())
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.Equal(t, []string{"ca:0"}, b.pending(t))
}

// TestTaskOfDeadWorkerDoesNotBlockTheNextLease: the task of a worker
// killed while it ran keeps its id until asynq recovers it (one to two
// minutes); when the due lease runs out, the credential is enqueued again
// at once, not refused by that id.
func TestTaskOfDeadWorkerDoesNotBlockTheNextLease(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	s := b.mk()
	_, err := s.Tick(context.Background())
	require.NoError(t, err)
	require.Equal(t, []string{"ca:0"}, b.pending(t))
	// The task stays (as a dead worker's stays active): its id is taken.
	b.clock.Advance(11 * time.Second)
	n, err := s.Tick(context.Background())
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.Equal(t, []string{"ca:0", "ca:0"}, b.pending(t), "enqueued again under the new lease")
	n, err = s.Tick(context.Background())
	require.NoError(t, err)
	require.Zero(t, n, "once per lease")
}

func TestReconcileRestoresLostDueIndex(t *testing.T) {
	t.Parallel()
	b := setup(t, 3)
	require.NoError(t, b.rdb.Del(context.Background(), "t:due").Err())
	s := b.mk()
	n, err := s.Tick(context.Background())
	require.NoError(t, err)
	require.Zero(t, n, "nothing is due while the index is lost")
	s.reconcile(context.Background())
	n, err = s.Tick(context.Background())
	require.NoError(t, err)
	require.Equal(t, 3, n)
}

func TestTickBatchesDueCredentials(t *testing.T) {
	t.Parallel()
	b := setup(t, 20)
	s, err := New(Options{Store: b.st, Enqueuer: asynq.NewClientFromRedisClient(b.rdb), Logger: zerolog.Nop(),
		Clock: b.clock.Now, PerTask: 8})
	require.NoError(t, err)
	n, err := s.Tick(context.Background())
	require.NoError(t, err)
	require.Equal(t, 20, n)
	tasks, err := b.q.ListPendingTasks(jobs.QueueCritical)
	require.NoError(t, err)
	require.Len(t, tasks, 3, "20 renewals at 8 a task")
	require.Len(t, b.pending(t), 20)
}

func TestRunStopsWithContext(t *testing.T) {
	t.Parallel()
	b := setup(t, 2)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.mk().Run(ctx) }()
	require.Eventually(t, func() bool { return len(b.pending(t)) == 2 }, 5*time.Second, 10*time.Millisecond)
	cancel()
	require.NoError(t, <-done)
}

func TestTickLeavesDueWorkInTheIndexWhileTheQueueIsFull(t *testing.T) {
	t.Parallel()
	b := setup(t, 20)
	ctx := context.Background()
	s, err := New(Options{Store: b.st, Enqueuer: asynq.NewClientFromRedisClient(b.rdb), Logger: zerolog.Nop(),
		Clock: b.clock.Now, PerTask: 4, MaxBacklog: 3, Backlog: AsynqBacklog(b.rdb, jobs.QueueCritical)})
	require.NoError(t, err)

	// Room for 3 tasks of 4.
	n, err := s.Tick(ctx)
	require.NoError(t, err)
	require.Equal(t, 12, n)
	waiting, err := AsynqBacklog(b.rdb, jobs.QueueCritical)(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 3, waiting, "AsynqBacklog counts asynq's pending tasks")
	n, err = s.Tick(ctx)
	require.NoError(t, err)
	require.Zero(t, n, "the queue is full: the rest wait in the due index")
	due, err := b.rdb.ZCount(ctx, "t:due", "-inf", fmt.Sprint(b.clock.Now().UnixMilli())).Result()
	require.NoError(t, err)
	require.EqualValues(t, 8, due)

	// A worker takes a task: room for one more.
	tasks, err := b.q.ListPendingTasks(jobs.QueueCritical)
	require.NoError(t, err)
	require.NoError(t, b.q.DeleteTask(jobs.QueueCritical, tasks[0].ID))
	n, err = s.Tick(ctx)
	require.NoError(t, err)
	require.Equal(t, 4, n)
	require.Len(t, b.pending(t), 12)

	failing, err := New(Options{Store: b.st, Enqueuer: asynq.NewClientFromRedisClient(b.rdb), Logger: zerolog.Nop(),
		Backlog: func(context.Context) (int64, error) { return 0, fmt.Errorf("redis down") }})
	require.NoError(t, err)
	_, err = failing.Tick(ctx)
	require.ErrorContains(t, err, "redis down")
}

func TestReconcileRunsOncePerPeriodAcrossReplicas(t *testing.T) {
	t.Parallel()
	b := setup(t, 2)
	ctx := context.Background()
	require.NoError(t, b.rdb.Del(ctx, "t:due").Err())
	first, second := b.mk(), b.mk()
	first.reconcile(ctx)
	require.NoError(t, b.rdb.Del(ctx, "t:due").Err())
	second.reconcile(ctx)
	first.reconcile(ctx)
	n, err := b.rdb.ZCard(ctx, "t:due").Result()
	require.NoError(t, err)
	require.Zero(t, n, "within the period, no replica reconciles again")

	ttl, err := b.rdb.PTTL(ctx, "t:reconcile:turn").Result()
	require.NoError(t, err)
	require.InDelta(t, float64(27*time.Second), float64(ttl), float64(time.Second), "a turn lasts 9/10 of ReconcileEvery (30s)")
	require.NoError(t, b.rdb.Del(ctx, "t:reconcile:turn").Err()) // the turn runs out
	second.reconcile(ctx)
	n, err = b.rdb.ZCard(ctx, "t:due").Result()
	require.NoError(t, err)
	require.EqualValues(t, 2, n, "the next period, a replica does")
}
