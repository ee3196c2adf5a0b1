package jobs

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/hibiken/asynq"

	"github.com/tokenrelay/tokenrelay/internal/policy"
)

// Retry decisions are values: a handler returns a *RetryAt (wait, no
// failure), a *Transient (a failure to retry with backoff) or any other
// error, and the worker's asynq server reads them through RetryDelay and
// IsFailure. The arithmetic of the backoff is policy.Backoff's.

// RetryAt is the error of a task that must wait and has not failed: a
// request whose account's budget is spent until At or paused by a 429, a
// token being refreshed, a rotation keeping the old key published until At
// or held by another worker. asynq's server, configured with RetryDelay and
// IsFailure, runs the task again at At without counting a retry, and no
// worker waits meanwhile.
type RetryAt struct {
	At     time.Time
	Reason string // budget, rate_limited, token, duplicate_in_flight, rotation_hold, rotation_busy
}

func (e *RetryAt) Error() string {
	return fmt.Sprintf("waiting (%s) until %s", e.Reason, e.At.UTC().Format(time.RFC3339Nano))
}

// Transient is a transient failure of a request task (5xx, 408, timeout,
// reset), retried with exponential backoff, no sooner than After (a
// vendor's Retry-After; zero: none).
type Transient struct {
	After time.Duration
	Err   error
}

func (e *Transient) Error() string { return e.Err.Error() }
func (e *Transient) Unwrap() error { return e.Err }

// Backoff shape of the transient failures of request tasks.
const (
	requestBackoffBase = time.Second
	requestBackoffMax  = 5 * time.Minute
)

// RetryDelay is an asynq.Config.RetryDelayFunc: the wait a *RetryAt carries
// (until its time), exponential backoff with jitter for the failures of
// request tasks (1s, 2s, 4s... up to 5m, or a longer Transient.After),
// none for a key rotation whose worker died (asynq found its task's lease
// expired: the rotation's own hold says when another worker may resume it,
// and the task waits for that as a *RetryAt), and asynq's default for every
// other task.
func RetryDelay(n int, err error, t *asynq.Task) time.Duration {
	var wait *RetryAt
	if errors.As(err, &wait) {
		return max(time.Until(wait.At), 0)
	}
	if t != nil && t.Type() == TypeKeyRotate && errors.Is(err, asynq.ErrLeaseExpired) {
		return 0
	}
	if t == nil || t.Type() != TypeVendorRequest {
		return asynq.DefaultRetryDelayFunc(n, err, t)
	}
	d := policy.Backoff(n+1, requestBackoffBase, requestBackoffMax, rand.Float64())
	var tr *Transient
	if errors.As(err, &tr) && tr.After > d {
		d = min(tr.After, requestBackoffMax)
	}
	return d
}

// IsFailure is an asynq.Config.IsFailure: a *RetryAt is no failure.
func IsFailure(err error) bool {
	var wait *RetryAt
	return !errors.As(err, &wait)
}
