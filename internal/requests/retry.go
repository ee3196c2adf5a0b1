package requests

import (
	"errors"
	"math/rand/v2"
	"time"

	"github.com/hibiken/asynq"

	"github.com/tokenrelay/tokenrelay/jobs"
)

// RetryAt is the error of a task that must wait and is no failure; see
// jobs.RetryAt.
type RetryAt = jobs.RetryAt

// backoffError is a transient failure (5xx, 408, timeout, reset) to retry
// with exponential backoff, no sooner than After.
type backoffError struct {
	After time.Duration
	Err   error
}

func (e *backoffError) Error() string { return e.Err.Error() }
func (e *backoffError) Unwrap() error { return e.Err }

// Backoff shape of transient failures.
const (
	backoffBase = time.Second
	backoffMax  = 5 * time.Minute
)

// RetryDelay is an asynq.Config.RetryDelayFunc: the wait a *RetryAt carries
// (until its time), exponential backoff with full jitter for the transient
// failures of request tasks (1s, 2s, 4s... up to 5m, or a longer
// Retry-After), none for a key rotation whose worker died (asynq found its
// task's lease expired: the rotation's own hold says when another worker
// may resume it, and the task waits for that as a *RetryAt), and asynq's
// default for every other task.
func RetryDelay(n int, err error, t *asynq.Task) time.Duration {
	var wait *RetryAt
	if errors.As(err, &wait) {
		return max(time.Until(wait.At), 0)
	}
	if t != nil && t.Type() == jobs.TypeKeyRotate && errors.Is(err, asynq.ErrLeaseExpired) {
		return 0
	}
	if t == nil || t.Type() != jobs.TypeVendorRequest {
		return asynq.DefaultRetryDelayFunc(n, err, t)
	}
	d := backoffBase << min(n, 20)
	d = min(d, backoffMax)
	d = d/2 + rand.N(d/2+1) // jitter in [d/2, d]
	var b *backoffError
	if errors.As(err, &b) && b.After > d {
		d = min(b.After, backoffMax)
	}
	return d
}

// IsFailure is an asynq.Config.IsFailure: a *RetryAt is no failure.
func IsFailure(err error) bool {
	var wait *RetryAt
	return !errors.As(err, &wait)
}
