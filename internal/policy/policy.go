// Package policy decides *when*: the effective lifetime of a token, the
// moment to renew it, how long to back off after a failure and how much of
// a vendor's Retry-After to honour. Everything here is a pure function of
// values, a clock reading and a random number, so that it can be
// table-tested; schedulers and handlers only call it.
package policy

import (
	"math"
	"time"
)

// Defaults for renewal timing.
const (
	// DefaultRefreshAt is the fraction of the effective lifetime at which a
	// token is renewed.
	DefaultRefreshAt = 2.0 / 3.0
	// DefaultRefreshJitter is how much earlier, as a fraction of the
	// lifetime, a renewal may be moved at random so that credentials issued
	// together do not all renew in the same instant.
	DefaultRefreshJitter = 0.1
	// MinRetry is the shortest wait before retrying a failed refresh.
	MinRetry = 200 * time.Millisecond
	// DefaultMaxBackoff caps the exponential backoff between failed refreshes.
	DefaultMaxBackoff = 5 * time.Minute
	// DefaultMaxRetryAfter caps how long a vendor's Retry-After is honoured.
	DefaultMaxRetryAfter = 10 * time.Minute
)

// EffectiveLifetime is the shorter of what the vendor claimed and the
// configured cap (Halaxy claims 3600 s and honours 15 minutes). A zero or
// negative cap means no cap; a non-positive claim means the cap alone.
func EffectiveLifetime(claimed, max time.Duration) time.Duration {
	switch {
	case max <= 0:
		return claimed
	case claimed <= 0:
		return max
	default:
		return min(claimed, max)
	}
}

// Renewal says when to renew a token.
type Renewal struct {
	// At is the fraction of the lifetime at which to renew, in (0, 1).
	// Zero means DefaultRefreshAt.
	At float64
	// Jitter is the largest fraction of the lifetime by which the renewal
	// is moved earlier at random, in [0, At). Negative means none; zero
	// means DefaultRefreshJitter.
	Jitter float64
}

// Time returns when to renew a token issued at issued that lives lifetime.
// rnd is a random number in [0, 1): 0 gives the latest renewal time,
// values towards 1 move it up to Jitter*lifetime earlier. The result is
// never before issued.
func (r Renewal) Time(issued time.Time, lifetime time.Duration, rnd float64) time.Time {
	at, jitter := r.At, r.Jitter
	if at <= 0 || at >= 1 {
		at = DefaultRefreshAt
	}
	switch {
	case jitter < 0:
		jitter = 0
	case jitter == 0:
		jitter = DefaultRefreshJitter
	}
	jitter = min(jitter, at)
	frac := at - jitter*clamp01(rnd)
	return issued.Add(time.Duration(frac * float64(lifetime)))
}

// Backoff is the wait before retry number attempt (1 for the first retry):
// exponential from base, capped at max, with its upper half jittered by rnd
// in [0, 1) so that many credentials failing together spread out.
func Backoff(attempt int, base, max time.Duration, rnd float64) time.Duration {
	if base <= 0 {
		base = time.Second
	}
	if max <= 0 {
		max = DefaultMaxBackoff
	}
	if attempt < 1 {
		attempt = 1
	}
	d := Doubling(attempt, base, max)
	return d/2 + time.Duration(clamp01(rnd)*float64(d/2))
}

// Doubling is the wait before retry number attempt without jitter: base,
// then twice as long after each failure, capped at max; zero before the
// first retry (attempt < 1). For a single retrying loop (the outbox relay)
// where no crowd needs spreading out.
func Doubling(attempt int, base, max time.Duration) time.Duration {
	if attempt < 1 || base <= 0 {
		return 0
	}
	d := base
	for i := 1; i < attempt && d < max; i++ {
		d *= 2
	}
	if d > max {
		return max
	}
	return d
}

// RetryTime is when to retry a failed refresh. A vendor's Retry-After
// (capped at maxRetryAfter) is honoured as it is. Otherwise the backoff
// applies, but while the current token is still valid the retry is pulled
// in to halfway between now and its expiry, so that several attempts fit
// before it expires. Never sooner than MinRetry.
func RetryTime(now, expiresAt time.Time, backoff, retryAfter, maxRetryAfter time.Duration) time.Time {
	if retryAfter > 0 {
		if maxRetryAfter <= 0 {
			maxRetryAfter = DefaultMaxRetryAfter
		}
		return now.Add(max(min(retryAfter, maxRetryAfter), MinRetry))
	}
	wait := backoff
	if left := expiresAt.Sub(now); left > 0 && wait > left/2 {
		wait = left / 2
	}
	return now.Add(max(wait, MinRetry))
}

func clamp01(x float64) float64 {
	switch {
	case x < 0 || math.IsNaN(x):
		return 0
	case x >= 1:
		return math.Nextafter(1, 0)
	default:
		return x
	}
}
