package config

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Duration is a non-negative time.Duration written as Go writes durations
// ("3s", "15m", "1h30m") or with a leading number of days ("90d", "1d12h").
// Convert with time.Duration(d).
type Duration time.Duration

const day = 24 * time.Hour

// The reasons ParseDuration refuses a text. The messages leave the text out,
// so that callers decide whether it may be shown.
var (
	errNotDuration      = errors.New("is not a duration (use e.g. 15m, 1h, 90d)")
	errNegativeDuration = errors.New("is negative (a duration here must be 0 or more)")
)

// ParseDuration parses a Duration, refusing negative ones and garbage.
func ParseDuration(s string) (Duration, error) {
	d, err := parseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q %w", s, err)
	}
	return d, nil
}

func parseDuration(s string) (Duration, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "-") {
		if _, err := parseDuration(s[1:]); err == nil {
			return 0, errNegativeDuration
		}
		return 0, errNotDuration
	}
	s = strings.TrimPrefix(s, "+")
	var days int64
	if i := strings.IndexByte(s, 'd'); i >= 0 {
		n, err := strconv.ParseInt(s[:i], 10, 64)
		if err != nil || n < 0 || n > math.MaxInt64/int64(day) {
			return 0, errNotDuration
		}
		days, s = n, s[i+1:]
		if s == "" {
			return Duration(time.Duration(days) * day), nil
		}
	}
	if s == "" || s[0] == '-' || s[0] == '+' {
		return 0, errNotDuration
	}
	rest, err := time.ParseDuration(s)
	if err != nil {
		return 0, errNotDuration
	}
	total := time.Duration(days) * day
	if rest > math.MaxInt64-total {
		return 0, errNotDuration
	}
	return Duration(total + rest), nil
}

// String writes whole days as "90d" and anything else as time.Duration does.
func (d Duration) String() string {
	td := time.Duration(d)
	if td > 0 && td%day == 0 {
		return strconv.FormatInt(int64(td/day), 10) + "d"
	}
	return td.String()
}

// MarshalText writes d as String does.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText parses text as ParseDuration does, so that a Duration can
// also be read from JSON, flags and other YAML.
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := ParseDuration(string(text))
	if err != nil {
		return err
	}
	*d = v
	return nil
}
