package jobs_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/internal/rotation"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
	"github.com/tokenrelay/tokenrelay/jobs"
)

type rotatorFunc func(ctx context.Context, id string, req store.RotationRequest) (store.Rotation, error)

func (f rotatorFunc) RotateFor(ctx context.Context, id string, req store.RotationRequest) (store.Rotation, error) {
	return f(ctx, id, req)
}

// TestRotateHandlerRetries: what cannot succeed by retrying is not retried;
// anything else is, and the retry resumes the rotation.
func TestRotateHandlerRetries(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		err   error
		retry bool
	}{
		{"done", nil, false},
		{"finished already by a resume", store.ErrRotationDone, false},
		{"not supported", rotation.ErrNotSupported, false},
		{"aborted", rotation.ErrAborted, false},
		{"unknown credential", store.ErrNotFound, false},
		{"revoked credential", store.ErrAlreadyRevoked, false},
		{"held by another worker", &store.BusyError{}, true},
		{"taken over by another worker", rotation.ErrHoldLost, false},
		{"old signing key kept a while", &rotation.WaitError{}, true},
		{"vendor unavailable", errors.New("healthsync: create key: server_error (HTTP 503)"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var got string
			h := &jobs.RotateHandler{Rotator: rotatorFunc(func(_ context.Context, id string, _ store.RotationRequest) (store.Rotation, error) {
				got = id
				return store.Rotation{}, tc.err
			})}
			err := h.Handle(t.Context(), jobs.Rotate{Credential: "hs-1"})
			require.Equal(t, "hs-1", got)
			if tc.err == nil || errors.Is(tc.err, store.ErrRotationDone) {
				require.NoError(t, err, "nothing left to do is success")
				return
			}
			require.ErrorIs(t, err, tc.err)
			require.Equal(t, !tc.retry, errors.Is(err, asynq.SkipRetry))
		})
	}
}

// TestResumeRotationTaskOnlyResumes: the task a scheduler queues for a
// rotation whose worker died asks the rotator to resume, never to begin a
// rotation, and its id names the lapse, so that schedulers noticing the
// same one queue it once.
func TestResumeRotationTaskOnlyResumes(t *testing.T) {
	t.Parallel()
	lapsed := time.Now()
	task, err := jobs.NewResumeRotationTask("hs-1", "rot-1", lapsed)
	require.NoError(t, err)
	require.Equal(t, jobs.TypeKeyRotate, task.Type())
	var p jobs.Rotate
	require.NoError(t, json.Unmarshal(task.Payload(), &p))
	require.Equal(t, jobs.Rotate{Credential: "hs-1", Resume: true}, p)
	var got store.RotationRequest
	h := &jobs.RotateHandler{Rotator: rotatorFunc(func(_ context.Context, _ string, req store.RotationRequest) (store.Rotation, error) {
		got = req
		return store.Rotation{}, nil
	})}
	require.NoError(t, h.Handle(t.Context(), p))
	require.True(t, got.ResumeOnly)

	_, rdb := testenv.RedisDB(t)
	client := asynq.NewClientFromRedisClient(rdb)
	_, err = client.EnqueueContext(t.Context(), task)
	require.NoError(t, err)
	again, err := jobs.NewResumeRotationTask("hs-1", "rot-1", lapsed)
	require.NoError(t, err)
	_, err = client.EnqueueContext(t.Context(), again)
	require.ErrorIs(t, err, asynq.ErrTaskIDConflict, "the same lapse is queued once")
	later, err := jobs.NewResumeRotationTask("hs-1", "rot-1", lapsed.Add(30*time.Second))
	require.NoError(t, err)
	_, err = client.EnqueueContext(t.Context(), later)
	require.NoError(t, err, "a later lapse (the resumer died too) is queued anew")
}

// TestRotateWaitsRunAgainOnTime: a rotation keeping the old signing key
// published, or held by another worker, runs again when that ends, not at
// asynq's backoff, and the wait counts as no failure.
func TestRotateWaitsRunAgainOnTime(t *testing.T) {
	t.Parallel()
	for _, cause := range []error{
		&rotation.WaitError{Until: time.Now().Add(7 * time.Minute)},
		&store.BusyError{Until: time.Now().Add(7 * time.Minute)},
	} {
		h := &jobs.RotateHandler{Rotator: rotatorFunc(func(context.Context, string, store.RotationRequest) (store.Rotation, error) {
			return store.Rotation{}, fmt.Errorf("rotation: x: %w", cause)
		})}
		err := h.Handle(t.Context(), jobs.Rotate{Credential: "redox-1"})
		require.ErrorIs(t, err, cause)
		var wait *jobs.RetryAt
		require.ErrorAs(t, err, &wait, "%v", err)
		require.WithinDuration(t, time.Now().Add(7*time.Minute), wait.At, 5*time.Second)
		task, terr := jobs.NewRotateTask("redox-1")
		require.NoError(t, terr)
		d := jobs.RetryDelay(3, err, task)
		require.InDelta(t, (7 * time.Minute).Seconds(), d.Seconds(), 5, "the retry comes when the hold ends")
		require.False(t, jobs.IsFailure(err), "a hold is no failure")
	}
}

// TestRotateOfDeadWorkerRunsAgainAtOnce: the rotation task of a worker
// that died (asynq recovers it with ErrLeaseExpired) runs again at once,
// not after asynq's backoff: the rotation's hold alone decides when it may
// resume. Other tasks keep the backoff.
func TestRotateOfDeadWorkerRunsAgainAtOnce(t *testing.T) {
	t.Parallel()
	task, err := jobs.NewRotateTask("hs-1")
	require.NoError(t, err)
	require.Zero(t, jobs.RetryDelay(0, asynq.ErrLeaseExpired, task))
	require.Positive(t, jobs.RetryDelay(0, errors.New("vendor unavailable"), task))
	refresh, err := jobs.NewTask(jobs.Refresh{Credential: "hs-1"})
	require.NoError(t, err)
	require.GreaterOrEqual(t, jobs.RetryDelay(0, asynq.ErrLeaseExpired, refresh), 15*time.Second)
}

// TestRotateTaskIsCriticalAndUnique: rotations share the critical queue
// with refreshes, and one credential has at most one rotation queued.
func TestRotateTaskIsCriticalAndUnique(t *testing.T) {
	t.Parallel()
	_, rdb := testenv.RedisDB(t)
	client := asynq.NewClientFromRedisClient(rdb)
	task, err := jobs.NewRotateTask("hs-1")
	require.NoError(t, err)
	require.Equal(t, jobs.TypeKeyRotate, task.Type())
	info, err := client.EnqueueContext(t.Context(), task)
	require.NoError(t, err)
	require.Equal(t, jobs.QueueCritical, info.Queue)
	again, err := jobs.NewRotateTask("hs-1")
	require.NoError(t, err)
	_, err = client.EnqueueContext(t.Context(), again)
	require.ErrorIs(t, err, asynq.ErrDuplicateTask)
	other, err := jobs.NewRotateTask("hs-2")
	require.NoError(t, err)
	_, err = client.EnqueueContext(t.Context(), other)
	require.NoError(t, err)
}
