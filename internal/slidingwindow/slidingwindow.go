// Package slidingwindow measures a record of event times the way a vendor's
// sliding rate window judges it: the most events any window of a given
// length holds. The tests and benchmarks of the rate budget check with it
// that a limit was never exceeded.
package slidingwindow

import (
	"slices"
	"time"
)

// MaxIn is the most of times that fall in any window [t, t+per). times may
// come in any order; it is not changed.
func MaxIn(times []time.Time, per time.Duration) int {
	sorted := slices.SortedFunc(slices.Values(times), func(a, b time.Time) int { return a.Compare(b) })
	best, j := 0, 0
	for i := range sorted {
		for j < len(sorted) && sorted[j].Sub(sorted[i]) < per {
			j++
		}
		best = max(best, j-i)
	}
	return best
}
