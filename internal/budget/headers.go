package budget

// Reading the vendors' rate-limit headers.

import (
	"math"
	"net/http"
	"strconv"
	"time"
)

// ParseHeaders reads a response's rate-limit headers (either vendor's
// spelling; http.Header is case-insensitive): limit and remaining (-1 when
// absent or malformed) and the reset time (zero when absent).
func ParseHeaders(h http.Header) (limit, remaining int, reset time.Time) {
	limit, remaining = headerInt(h, "X-Ratelimit-Limit"), headerInt(h, "X-Ratelimit-Remaining")
	if s := h.Get("X-Ratelimit-Reset"); s != "" {
		if sec, err := strconv.ParseInt(s, 10, 64); err == nil && sec > 0 {
			reset = time.Unix(sec, 0)
		}
	}
	return limit, remaining, reset
}

func headerInt(h http.Header, name string) int {
	n, err := strconv.Atoi(h.Get(name))
	if err != nil || n < 0 {
		return -1
	}
	return n
}

// PauseFor is how long a 429 asks to wait: retry-after in seconds or as
// an HTTP date; else until X-RateLimit-Reset; else def; capped at max and
// never negative.
func PauseFor(h http.Header, now time.Time, def, maxPause time.Duration) time.Duration {
	d := def
	if s := h.Get("Retry-After"); s != "" {
		if sec, err := strconv.ParseFloat(s, 64); err == nil && sec >= 0 && !math.IsNaN(sec) {
			d = maxPause
			if sec < maxPause.Seconds() {
				d = time.Duration(sec * float64(time.Second))
			}
		} else if t, err := http.ParseTime(s); err == nil {
			d = t.Sub(now)
		}
	} else if _, _, reset := ParseHeaders(h); !reset.IsZero() && reset.After(now) {
		d = reset.Sub(now)
	}
	return max(0, min(d, maxPause))
}
