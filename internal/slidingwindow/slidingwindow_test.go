package slidingwindow_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/internal/slidingwindow"
)

func TestMaxIn(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	at := func(ms ...int) []time.Time {
		var out []time.Time
		for _, m := range ms {
			out = append(out, t0.Add(time.Duration(m)*time.Millisecond))
		}
		return out
	}
	require.Zero(t, slidingwindow.MaxIn(nil, time.Second))
	require.Equal(t, 1, slidingwindow.MaxIn(at(0, 1000, 2000), time.Second), "a window is half open: [t, t+1s)")
	require.Equal(t, 3, slidingwindow.MaxIn(at(1400, 0, 500, 1000), time.Second), "500, 1000 and 1400, in any order")
	times := at(900, 0, 100)
	slidingwindow.MaxIn(times, time.Second)
	require.Equal(t, at(900, 0, 100), times, "the input is left as it was")
}
