package requests_test

import (
	"errors"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/internal/requests"
	"github.com/tokenrelay/tokenrelay/jobs"
)

func TestRetryDelayAndIsFailure(t *testing.T) {
	t.Parallel()
	task, err := jobs.NewRequestTask(jobs.NewRequest("c", "GET", "Patient"))
	require.NoError(t, err)
	other := asynq.NewTask("token:refresh", nil)

	wait := &requests.RetryAt{At: time.Now().Add(20 * time.Second), Reason: "rate_limited"}
	d := requests.RetryDelay(0, wait, task)
	require.InDelta(t, 20*time.Second, d, float64(time.Second))
	require.False(t, requests.IsFailure(wait), "a wait is no failure")
	require.False(t, requests.IsFailure(errors.Join(errors.New("x"), wait)))
	past := &requests.RetryAt{At: time.Now().Add(-time.Second)}
	require.Zero(t, requests.RetryDelay(3, past, task))

	boom := errors.New("HTTP 503")
	require.True(t, requests.IsFailure(boom))
	for n, want := range map[int]time.Duration{0: time.Second, 3: 8 * time.Second, 30: 5 * time.Minute} {
		for range 20 {
			d := requests.RetryDelay(n, boom, task)
			require.GreaterOrEqual(t, d, want/2, "retry %d", n)
			require.LessOrEqual(t, d, want, "retry %d", n)
		}
	}
	require.Equal(t, asynq.DefaultRetryDelayFunc(0, boom, other) > 0, requests.RetryDelay(0, boom, other) > 0)
}
