package sandbox

import (
	"sync"
	"time"
)

// hsFixedWindow is HealthSync's plan limit: limit requests per account in
// each fixed window aligned on the clock (every hour on the hour), the
// count starting afresh when the window ends. Unlike Halaxy's sliding
// window it lets up to twice the limit through around a window's end, as
// the real one does.
type hsFixedWindow struct {
	window time.Duration
	def    int
	// book records every decision and holds the throttled accounts (nil:
	// neither); set once, before serving.
	book *rateBook

	mu     sync.Mutex
	limits map[string]int // per account; absent: def
	start  time.Time      // the window counted in used
	used   map[string]int
}

var _ limiter = (*hsFixedWindow)(nil)

func newHSFixedWindow(def int, window time.Duration) *hsFixedWindow {
	return &hsFixedWindow{window: window, def: def, limits: make(map[string]int), used: make(map[string]int)}
}

// setLimit sets account's limit: 0 restores the default, negative means
// none.
func (l *hsFixedWindow) setLimit(account string, limit int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if limit == 0 {
		delete(l.limits, account)
		return
	}
	l.limits[account] = limit
}

// resetAt is when the window holding now ends.
func (l *hsFixedWindow) resetAt(now time.Time) time.Time { return now.Truncate(l.window).Add(l.window) }

// take counts one request of account if it fits. An account without a
// limit gets quota.limit -1.
func (l *hsFixedWindow) take(account string, now time.Time) quota {
	q, _ := l.takeWithReset(account, now)
	return q
}

// takeWithReset is take, with when the window ends. Every decision is
// recorded; a throttled account is refused (uncounted) until its end.
func (l *hsFixedWindow) takeWithReset(account string, now time.Time) (quota, time.Time) {
	q, reset := l.judge(account, now)
	l.book.record(account, now, q.allowed)
	return q, reset
}

func (l *hsFixedWindow) judge(account string, now time.Time) (quota, time.Time) {
	reset := l.resetAt(now)
	throttled := l.book.throttledFor(account, now)
	l.mu.Lock()
	defer l.mu.Unlock()
	if start := now.Truncate(l.window); !start.Equal(l.start) {
		// A new window: every account starts afresh (windows are aligned,
		// so one map for all of them is exact).
		l.start = start
		clear(l.used)
	}
	limit, ok := l.limits[account]
	if !ok {
		limit = l.def
	}
	if limit < 0 {
		if throttled > 0 {
			return quota{limit: -1, retryAfter: throttled}, reset
		}
		return quota{allowed: true, limit: -1}, reset
	}
	n := l.used[account]
	if throttled > 0 {
		return quota{limit: limit, remaining: max(0, limit-n), retryAfter: throttled}, reset
	}
	if n >= limit {
		return quota{limit: limit, retryAfter: reset.Sub(now)}, reset
	}
	l.used[account] = n + 1
	return quota{allowed: true, limit: limit, remaining: limit - n - 1}, reset
}
