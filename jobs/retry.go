package jobs

import (
	"fmt"
	"time"
)

// RetryAt is the error of a task that must wait and has not failed: a
// request whose account's budget is spent until At or paused by a 429, a
// token being refreshed, a rotation keeping the old key published until At
// or held by another worker. asynq's server, configured with the worker's
// RetryDelayFunc and IsFailure (requests.RetryDelay, requests.IsFailure),
// runs the task again at At without counting a retry, and no worker waits
// meanwhile.
type RetryAt struct {
	At     time.Time
	Reason string // budget, rate_limited, token, duplicate_in_flight, rotation_hold, rotation_busy
}

func (e *RetryAt) Error() string {
	return fmt.Sprintf("waiting (%s) until %s", e.Reason, e.At.UTC().Format(time.RFC3339Nano))
}
