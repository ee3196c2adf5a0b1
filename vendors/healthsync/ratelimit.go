package healthsync

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// HealthSync's rate-limit headers.
const (
	HeaderRateLimitLimit     = "X-RateLimit-Limit"
	HeaderRateLimitRemaining = "X-RateLimit-Remaining"
	HeaderRateLimitReset     = "X-RateLimit-Reset"
)

// ParseRateLimit reads HealthSync's rate-limit headers: the plan's hourly
// limit, the requests remaining in the current window, and when the window
// ends (X-RateLimit-Reset, unix seconds). ok is false unless all three are
// present and valid (non-negative integers, a positive reset); then the
// others are zero.
func ParseRateLimit(h http.Header) (limit, remaining int, reset time.Time, ok bool) {
	limit, okLimit := parseCount(h.Get(HeaderRateLimitLimit))
	remaining, okRemaining := parseCount(h.Get(HeaderRateLimitRemaining))
	reset, okReset := parseReset(h.Get(HeaderRateLimitReset))
	if !okLimit || !okRemaining || !okReset {
		return 0, 0, time.Time{}, false
	}
	return limit, remaining, reset, true
}

func parseCount(s string) (int, bool) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	return n, err == nil && n >= 0
}

func parseReset(s string) (time.Time, bool) {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n <= 0 {
		return time.Time{}, false
	}
	return time.Unix(n, 0), true
}
