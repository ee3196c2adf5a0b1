package requests_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/internal/budget"
	"github.com/tokenrelay/tokenrelay/internal/slidingwindow"
	"github.com/tokenrelay/tokenrelay/vendors/sandbox"
)

// 8 worker goroutines in 2 processes spend one account's budget: the
// sandbox never sees more than the limit in any window (it would answer
// 429), and every request completes exactly once.
func TestWindowNeverHoldsMoreThanTheLimit(t *testing.T) {
	t.Parallel()
	const limit, window, n = 40, 2 * time.Second, 200
	w := setup(t, setupOptions{sandboxLimit: limit, window: window})
	w.addCredential("clinic-1")
	w.worker(4)
	w.worker(4)
	w.feeder()

	ids := w.submit("clinic-1", "big", n)
	got := w.waitOutcomes(n, 60*time.Second)
	requireEachCompletedOnce(t, ids, got)
	require.Zero(t, w.rec.count(http.StatusTooManyRequests), "the sandbox refused requests over its limit")
	// The sandbox's own record of the requests its window judged.
	var accepted []time.Time
	for _, h := range w.sb.RateRecord("client-clinic-1") {
		require.True(t, h.Accepted, "the sandbox refused a request at %s", h.At)
		accepted = append(accepted, h.At)
	}
	require.Len(t, accepted, n)
	require.LessOrEqual(t, slidingwindow.MaxIn(accepted, window), limit)
}

// Configured above the vendor's true limit, tokenrelay meets 429s, waits
// them out, learns the true limit, and still completes every request once.
func TestLimitAboveTheTrueOneAdapts(t *testing.T) {
	t.Parallel()
	const trueLimit, window, n = 30, time.Second, 150
	w := setup(t, setupOptions{sandboxLimit: trueLimit, configured: 60, window: window})
	w.addCredential("clinic-1")
	w.worker(4)
	w.worker(4)
	w.feeder()

	ids := w.submit("clinic-1", "big", n)
	got := w.waitOutcomes(n, 90*time.Second)
	requireEachCompletedOnce(t, ids, got)
	st, err := w.budget().Status(context.Background(), budget.Account(vendorName, "clinic-1"), budget.Limit{Requests: 60, Per: window})
	require.NoError(t, err)
	require.Equal(t, trueLimit, st.Learned, "the budget learned the vendor's limit from its headers")
	require.Less(t, w.rec.count(http.StatusTooManyRequests), n/10)
	t.Logf("429s: %d of %d requests", w.rec.count(http.StatusTooManyRequests), n)
}

// A 429 with retry-after: 20 stops every worker's requests to that account
// for 20 seconds; the requests then complete, none counted as failed.
func TestRetryAfterPausesEveryWorker(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out a real 20 s pause")
	}
	t.Parallel()
	w := setup(t, setupOptions{})
	w.addCredential("clinic-1")
	w.addCredential("clinic-2")
	require.NoError(t, w.sb.Inject(sandbox.Fault{ClientID: "client-clinic-1", Endpoint: sandbox.EndpointPatient,
		Kind: sandbox.FaultRateLimited, RetryAfter: 20 * time.Second, Times: 1}))
	w.worker(4)
	w.worker(4)
	w.feeder()

	ids := w.submit("clinic-1", "paused", 20)
	other := w.submit("clinic-2", "other", 20)
	got := w.waitOutcomes(40, 60*time.Second)
	requireEachCompletedOnce(t, append(ids, other...), got)

	var limited time.Time
	var after []time.Time
	for _, h := range w.rec.snapshot() {
		if h.status == http.StatusTooManyRequests {
			limited = h.at
		}
	}
	require.False(t, limited.IsZero())
	for _, h := range w.rec.snapshot() {
		if h.at.After(limited) && h.client == "clinic-1" {
			after = append(after, h.at)
		}
	}
	require.NotEmpty(t, after)
	// Requests already on their way when the 429 was answered may arrive
	// in the moment it takes the worker to record the pause.
	const inFlight = 200 * time.Millisecond
	for _, at := range after {
		if d := at.Sub(limited); d > inFlight {
			require.GreaterOrEqual(t, d, 20*time.Second, "a request of the paused account was sent during the pause")
		}
	}
}
