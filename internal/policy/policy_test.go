package policy

import (
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func TestEffectiveLifetime(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name         string
		claimed, max time.Duration
		want         time.Duration
	}{
		{"halaxy claims an hour, honours 15 minutes", time.Hour, 15 * time.Minute, 15 * time.Minute},
		{"claim shorter than cap", 5 * time.Minute, 15 * time.Minute, 5 * time.Minute},
		{"no cap", time.Hour, 0, time.Hour},
		{"no claim", 0, 15 * time.Minute, 15 * time.Minute},
	}
	for _, c := range cases {
		if got := EffectiveLifetime(c.claimed, c.max); got != c.want {
			t.Errorf("%s: EffectiveLifetime(%v, %v) = %v, want %v", c.name, c.claimed, c.max, got, c.want)
		}
	}
}

func TestRenewalTime(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		r        Renewal
		lifetime time.Duration
		rnd      float64
		want     time.Duration // after issue
	}{
		{"default, no jitter drawn", Renewal{}, 15 * time.Minute, 0, 10 * time.Minute},
		{"default, most jitter", Renewal{}, 15 * time.Minute, 0.999999999, 10*time.Minute - 90*time.Second},
		{"half jitter", Renewal{}, 15 * time.Minute, 0.5, 10*time.Minute - 45*time.Second},
		{"jitter off", Renewal{At: 0.5, Jitter: -1}, 10 * time.Minute, 0.9, 5 * time.Minute},
		{"custom", Renewal{At: 0.8, Jitter: 0.2}, 5 * time.Minute, 0.5, 3*time.Minute + 30*time.Second},
		{"out-of-range At falls back", Renewal{At: 1.5, Jitter: -1}, 3 * time.Second, 0, 2 * time.Second},
		{"jitter larger than At is capped", Renewal{At: 0.1, Jitter: 0.5}, 10 * time.Second, 0.999999999, 0},
	}
	for _, c := range cases {
		got := c.r.Time(t0, c.lifetime, c.rnd).Sub(t0)
		if diff := got - c.want; diff < -time.Millisecond || diff > time.Millisecond {
			t.Errorf("%s: renew after %v, want %v", c.name, got, c.want)
		}
	}
}

func TestRenewalAlwaysBeforeExpiry(t *testing.T) {
	t.Parallel()
	for _, lifetime := range []time.Duration{time.Second, 3 * time.Second, 5 * time.Minute, 15 * time.Minute, 24 * time.Hour} {
		for _, rnd := range []float64{0, 0.25, 0.5, 0.75, 0.9999} {
			at := Renewal{}.Time(t0, lifetime, rnd)
			if !at.After(t0) || !at.Before(t0.Add(lifetime)) {
				t.Errorf("lifetime %v rnd %v: renewal at %v not within (issue, expiry)", lifetime, rnd, at.Sub(t0))
			}
		}
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	cases := []struct {
		attempt  int
		rnd      float64
		min, max time.Duration
	}{
		{1, 0, 500 * time.Millisecond, 500 * time.Millisecond},
		{1, 0.999, 500 * time.Millisecond, time.Second},
		{2, 0, time.Second, time.Second},
		{4, 0.5, 4*time.Second + 2*time.Second, 4*time.Second + 2*time.Second},
		{30, 0, DefaultMaxBackoff / 2, DefaultMaxBackoff / 2},
		{30, 0.999, DefaultMaxBackoff / 2, DefaultMaxBackoff},
	}
	for _, c := range cases {
		got := Backoff(c.attempt, time.Second, 0, c.rnd)
		if got < c.min || got > c.max {
			t.Errorf("Backoff(%d, rnd %v) = %v, want in [%v, %v]", c.attempt, c.rnd, got, c.min, c.max)
		}
	}
}

func TestRetryTime(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name                string
		expiresIn           time.Duration
		backoff, retryAfter time.Duration
		want                time.Duration
	}{
		{"backoff fits before expiry", time.Minute, 10 * time.Second, 0, 10 * time.Second},
		{"backoff pulled in to half the time left", 10 * time.Second, time.Minute, 0, 5 * time.Second},
		{"expired token: plain backoff", -time.Second, 8 * time.Second, 0, 8 * time.Second},
		{"retry-after honoured even past expiry", 5 * time.Second, time.Second, 20 * time.Second, 20 * time.Second},
		{"retry-after capped", time.Hour, time.Second, 2 * time.Hour, DefaultMaxRetryAfter},
		{"never sooner than MinRetry", 100 * time.Millisecond, time.Second, 0, MinRetry},
	}
	for _, c := range cases {
		got := RetryTime(t0, t0.Add(c.expiresIn), c.backoff, c.retryAfter, 0).Sub(t0)
		if got != c.want {
			t.Errorf("%s: retry after %v, want %v", c.name, got, c.want)
		}
	}
}

func TestDoubling(t *testing.T) {
	t.Parallel()
	want := []time.Duration{0, 100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond,
		800 * time.Millisecond, 1600 * time.Millisecond, 2 * time.Second, 2 * time.Second}
	for attempt, w := range want {
		if got := Doubling(attempt, 100*time.Millisecond, 2*time.Second); got != w {
			t.Errorf("Doubling(%d) = %v, want %v", attempt, got, w)
		}
	}
	if got := Doubling(1000, 100*time.Millisecond, 2*time.Second); got != 2*time.Second {
		t.Errorf("Doubling(1000) = %v, want the cap", got)
	}
}
