package vendors_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/vendors"
)

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 3, 4, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		in   string
		want time.Duration
	}{
		{"empty", "", 0},
		{"blank", "   ", 0},
		{"seconds", "7", 7 * time.Second},
		{"seconds with spaces", " 120 ", 2 * time.Minute},
		{"zero", "0", 0},
		{"negative", "-5", 0},
		{"fraction is not allowed", "1.5", 0},
		{"garbage", "soon", 0},
		{"digits then garbage", "7s", 0},
		{"huge", "99999999999999999999", math.MaxInt64},
		{"overflowing duration", "9223372036854775807", math.MaxInt64},
		{"http date", now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{"rfc 850 date", "Tuesday, 04-Mar-25 10:00:30 GMT", 30 * time.Second},
		{"ansi c date", "Tue Mar  4 10:01:00 2025", time.Minute},
		{"date in the past", now.Add(-time.Hour).Format(http.TimeFormat), 0},
		{"date now", now.Format(http.TimeFormat), 0},
		{"bad date", "Tue, 32 Mar 2025 10:00:00 GMT", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, vendors.ParseRetryAfter(tt.in, now))
		})
	}
}

func TestExcerpt(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		in     string
		redact []string
		want   string
	}{
		{"plain", "invalid_client: unknown client", nil, "invalid_client: unknown client"},
		{"white space collapsed", "  a\n\n\tb \r\n c  ", nil, "a b c"},
		{"control characters", "a\x00\x1bb", nil, "a b"},
		{"invalid utf-8 is a space", "a\xffb", nil, "a b"},
		{"no secret joined by what is dropped", "bad s3cr\xff3t", []string{"s3cr3t"}, "bad s3cr 3t"},
		{"redacted", "bad secret s3cr3t for s3cr3t", []string{"s3cr3t", ""}, "bad secret [redacted] for [redacted]"},
		{"cut", strings.Repeat("x", 500), nil, strings.Repeat("x", vendors.MaxExcerpt)},
		{"cut on a rune boundary", strings.Repeat("é", 150), nil, strings.Repeat("é", vendors.MaxExcerpt/2)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sc := secret.NewScrubber()
			for _, r := range tt.redact {
				sc.Add(secret.New(r))
			}
			got := vendors.Excerpt(tt.in, sc)
			require.Equal(t, tt.want, got)
			require.LessOrEqual(t, len(got), vendors.MaxExcerpt)
		})
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

var _ net.Error = timeoutErr{}

func TestNewTransportError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"deadline", fmt.Errorf("post: %w", context.DeadlineExceeded), vendors.ClassTimeout},
		{"net timeout", fmt.Errorf("post: %w", timeoutErr{}), vendors.ClassTimeout},
		{"reset", fmt.Errorf("post: %w", syscall.ECONNRESET), vendors.ClassNetwork},
		{"eof", fmt.Errorf("post: %w", io.EOF), vendors.ClassNetwork},
		{"cancelled", fmt.Errorf("post: %w", context.Canceled), vendors.ClassNetwork},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := vendors.NewTransportError("halaxy", "request token", tt.err)
			require.Equal(t, tt.want, err.Class)
			require.Equal(t, tt.want, vendors.Classify(err))
			require.True(t, errors.Is(err, tt.err))
			require.False(t, vendors.IsRevoked(err))
		})
	}
}
