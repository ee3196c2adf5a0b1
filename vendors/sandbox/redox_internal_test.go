package sandbox

import (
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestRedoxJTIsAreForgotten(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2025, 3, 4, 10, 0, 0, 0, time.UTC)
	v := New(Options{}).redox
	for i := range 3000 {
		require.True(t, v.useJTI("c", strconv.Itoa(i), t0.Add(time.Minute), t0))
	}
	require.False(t, v.useJTI("c", "0", t0.Add(time.Minute), t0.Add(time.Minute)), "remembered until its time")
	require.True(t, v.useJTI("d", "0", t0.Add(time.Minute), t0), "per client")

	// Past their time, at the next use, they are forgotten and the order compacted.
	require.True(t, v.useJTI("c", "new", t0.Add(3*time.Minute), t0.Add(2*time.Minute)))
	require.Len(t, v.jtis, 1)
	require.Less(t, len(v.jtiOrder)-v.jtiHead, 2)
	require.True(t, v.useJTI("c", "0", t0.Add(3*time.Minute), t0.Add(2*time.Minute)))
}
