package jobs_test

import (
	"context"
	"errors"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/internal/testenv"
	"github.com/tokenrelay/tokenrelay/jobs"
	"github.com/tokenrelay/tokenrelay/rotation"
	"github.com/tokenrelay/tokenrelay/store"
)

type rotatorFunc func(ctx context.Context, id string) (store.Rotation, error)

func (f rotatorFunc) Rotate(ctx context.Context, id string) (store.Rotation, error) {
	return f(ctx, id)
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
		{"not supported", rotation.ErrNotSupported, false},
		{"aborted", rotation.ErrAborted, false},
		{"unknown credential", store.ErrNotFound, false},
		{"revoked credential", store.ErrAlreadyRevoked, false},
		{"held by another worker", &store.BusyError{}, true},
		{"old signing key kept a while", &rotation.WaitError{}, true},
		{"vendor unavailable", errors.New("healthsync: create key: server_error (HTTP 503)"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var got string
			h := &jobs.RotateHandler{Rotator: rotatorFunc(func(_ context.Context, id string) (store.Rotation, error) {
				got = id
				return store.Rotation{}, tc.err
			})}
			err := h.Handle(t.Context(), jobs.Rotate{Credential: "hs-1"})
			require.Equal(t, "hs-1", got)
			if tc.err == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tc.err)
			require.Equal(t, !tc.retry, errors.Is(err, asynq.SkipRetry))
		})
	}
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
