package jobs_test

import (
	"errors"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/jobs"
)

func TestRetryDelayAndIsFailure(t *testing.T) {
	t.Parallel()
	task, err := jobs.NewRequestTask(jobs.NewRequest("c", "GET", "Patient"))
	require.NoError(t, err)
	other := asynq.NewTask("token:refresh", nil)

	wait := &jobs.RetryAt{At: time.Now().Add(20 * time.Second), Reason: "rate_limited"}
	d := jobs.RetryDelay(0, wait, task)
	require.InDelta(t, 20*time.Second, d, float64(time.Second))
	require.False(t, jobs.IsFailure(wait), "a wait is no failure")
	require.False(t, jobs.IsFailure(errors.Join(errors.New("x"), wait)))
	past := &jobs.RetryAt{At: time.Now().Add(-time.Second)}
	require.Zero(t, jobs.RetryDelay(3, past, task))

	boom := errors.New("HTTP 503")
	require.True(t, jobs.IsFailure(boom))
	for n, want := range map[int]time.Duration{0: time.Second, 3: 8 * time.Second, 30: 5 * time.Minute} {
		for range 20 {
			d := jobs.RetryDelay(n, boom, task)
			require.GreaterOrEqual(t, d, want/2, "retry %d", n)
			require.LessOrEqual(t, d, want, "retry %d", n)
		}
	}
	require.Equal(t, asynq.DefaultRetryDelayFunc(0, boom, other) > 0, jobs.RetryDelay(0, boom, other) > 0)

	// A vendor's Retry-After longer than the backoff is honoured, up to 5m.
	slow := &jobs.Transient{After: time.Minute, Err: boom}
	require.True(t, jobs.IsFailure(slow))
	require.Equal(t, time.Minute, jobs.RetryDelay(0, slow, task))
	require.Equal(t, 5*time.Minute, jobs.RetryDelay(0, &jobs.Transient{After: time.Hour, Err: boom}, task))
}
