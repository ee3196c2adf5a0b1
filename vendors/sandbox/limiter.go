package sandbox

import (
	"sync"
	"time"
)

// limiter is a vendor's rate limit: whether one more request of an account
// (an OAuth client for Halaxy; a plan for HealthSync) fits, and what the
// vendor's rate-limit headers then say. Another vendor's scheme (a fixed
// hourly window with a reset header) is another implementation.
type limiter interface {
	take(account string, now time.Time) quota
}

// quota is a limiter's answer.
type quota struct {
	allowed    bool
	limit      int // -1: the account has no limit (no headers)
	remaining  int
	retryAfter time.Duration // when denied: until the request would fit
}

// slidingWindow allows limit requests per account in any window (Halaxy:
// 500 in any minute). It keeps the times of the requests allowed in the
// last window, so it is exact: no burst beyond the limit at a window edge.
type slidingWindow struct {
	limit  int
	window time.Duration
	// book records every decision and holds the throttled accounts (nil:
	// neither).
	book *rateBook

	mu     sync.Mutex
	limits map[string]int // per account, told by SetHalaxyRateLimit; absent: limit
	hits   map[string]*hitLog
	// sweepAt is when accounts idle for a whole window are next forgotten.
	sweepAt time.Time
}

// hitLog is a ring of the times of an account's allowed requests.
type hitLog struct {
	times []time.Time // at most limit, times[start:] then times[:start] oldest first
	start int
	n     int
}

func newSlidingWindow(limit int, window time.Duration, book *rateBook) *slidingWindow {
	return &slidingWindow{limit: limit, window: window, book: book, limits: make(map[string]int), hits: make(map[string]*hitLog)}
}

// setLimit sets account's true limit: 0 restores the default, negative
// means none.
func (l *slidingWindow) setLimit(account string, limit int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if limit == 0 {
		delete(l.limits, account)
		return
	}
	l.limits[account] = limit
}

func (l *slidingWindow) take(account string, now time.Time) quota {
	q := l.judge(account, now)
	l.book.record(account, now, q.allowed)
	return q
}

func (l *slidingWindow) judge(account string, now time.Time) quota {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweep(now)
	limit, ok := l.limits[account]
	if !ok {
		limit = l.limit
	}
	if limit < 0 {
		if d := l.book.throttledFor(account, now); d > 0 {
			return quota{limit: -1, retryAfter: d}
		}
		return quota{allowed: true, limit: -1}
	}
	h := l.hits[account]
	if h == nil {
		h = &hitLog{}
		l.hits[account] = h
	}
	h.expire(now.Add(-l.window))
	if d := l.book.throttledFor(account, now); d > 0 {
		return quota{limit: limit, remaining: max(0, limit-h.n), retryAfter: d}
	}
	if h.n >= limit {
		// The (n-limit+1)th oldest leaving the window makes room (more than
		// one when the limit was lowered).
		return quota{limit: limit, retryAfter: h.nth(h.n - limit).Add(l.window).Sub(now)}
	}
	h.push(now, limit)
	return quota{allowed: true, limit: limit, remaining: limit - h.n}
}

// sweep forgets, once a window, the accounts without a request in the last
// window, so that many short-lived clients do not add up.
func (l *slidingWindow) sweep(now time.Time) {
	if now.Before(l.sweepAt) {
		return
	}
	l.sweepAt = now.Add(l.window)
	cutoff := now.Add(-l.window)
	for a, h := range l.hits {
		if h.expire(cutoff); h.n == 0 {
			delete(l.hits, a)
		}
	}
}

// expire drops the times not after cutoff.
func (h *hitLog) expire(cutoff time.Time) {
	for h.n > 0 && !h.oldest().After(cutoff) {
		h.times[h.start] = time.Time{}
		h.start = (h.start + 1) % len(h.times)
		h.n--
	}
}

func (h *hitLog) oldest() time.Time { return h.times[h.start] }

// nth is the i-th oldest time (0: the oldest).
func (h *hitLog) nth(i int) time.Time { return h.times[(h.start+i)%len(h.times)] }

// push appends t; the ring grows up to limit entries.
func (h *hitLog) push(t time.Time, limit int) {
	if h.n == len(h.times) {
		// Full (and below limit): unroll into a bigger slice.
		grown := make([]time.Time, 0, min(max(2*len(h.times), 8), limit))
		for i := range h.n {
			grown = append(grown, h.times[(h.start+i)%len(h.times)])
		}
		h.times = grown[:cap(grown)]
		h.start = 0
	}
	h.times[(h.start+h.n)%len(h.times)] = t
	h.n++
}
