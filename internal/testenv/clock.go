package testenv

import (
	"time"

	"github.com/tokenrelay/tokenrelay/vendors/sandbox"
)

// Clock is a manual clock for the Clock options of the code under test: it
// moves only when told (Advance, Set), so that expiry and leases are tested
// without waiting. It is safe for concurrent use. It is the sandbox's
// ManualClock, so that one clock serves the sandbox and the code it talks to.
type Clock = sandbox.ManualClock

// NewClock returns a clock stopped at t.
func NewClock(t time.Time) *Clock { return sandbox.NewManualClock(t) }
