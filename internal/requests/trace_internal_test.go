package requests

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/internal/tracing"
	"github.com/tokenrelay/tokenrelay/internal/tracing/tracingtest"
)

// A take the budget refuses is a span saying how long the request waits
// for the next permit.
func TestBudgetWaitIsASpanWithTheWait(t *testing.T) {
	rec := tracingtest.Record(t)
	now := time.Now()
	endBudget(traceBudget(context.Background(), "halaxy:c1"), false, now.Add(1500*time.Millisecond), now, nil)
	endBudget(traceBudget(context.Background(), "halaxy:c1"), true, time.Time{}, now, nil)
	spans := rec.Ended()
	require.Len(t, spans, 2)
	attrs := func(i int) map[string]any {
		m := map[string]any{}
		for _, a := range spans[i].Attributes() {
			m[string(a.Key)] = a.Value.AsInterface()
		}
		return m
	}
	require.Equal(t, "requests.budget", spans[0].Name())
	require.Equal(t, false, attrs(0)[string(tracing.AttrBudgetGranted)])
	require.Equal(t, int64(1500), attrs(0)[string(tracing.AttrBudgetWait)])
	require.Equal(t, true, attrs(1)[string(tracing.AttrBudgetGranted)])
	require.NotContains(t, attrs(1), string(tracing.AttrBudgetWait))
}
