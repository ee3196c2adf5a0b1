package events

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

func TestStreamIDTime(t *testing.T) {
	t.Parallel()
	require.Equal(t, time.UnixMilli(1700000000123), streamIDTime("1700000000123-7"))
	require.True(t, streamIDTime("nonsense").IsZero())
}

func TestValidEventSubject(t *testing.T) {
	t.Parallel()
	tests := map[string]bool{
		"token.renewed.halaxy-au.clinic-42":   true,
		"token.refresh_failed.v.c":            true,
		"token.expired.v.c":                   true,
		"key.rotated.v.c":                     true,
		"key.revoked.redox-prod.src-1":        true,
		"webhook.halaxy-au.Patient-create":    true,
		"request.completed.v.c":               true,
		"request.failed.v.c":                  true,
		"token.get.v.c":                       false,
		"request.submit":                      false,
		"token.renewed":                       false,
		"token.renewed.":                      false,
		"token.renewed..c":                    false,
		"token.renewed.v c.c":                 false,
		"token.renewed.*.c":                   false,
		"token.renewed.>":                     false,
		"token.renewedx.v.c":                  false,
		"":                                    false,
		"other.thing.v.c":                     false,
		"token.renewed.v.c\r\nPUB evil 0\r\n": false,
	}
	for subject, want := range tests {
		require.Equal(t, want, validEventSubject(subject), "%q", subject)
	}
}

func TestParseEntry(t *testing.T) {
	t.Parallel()
	msg := func(values ...string) redis.XMessage {
		m := redis.XMessage{ID: "1-0", Values: map[string]any{}}
		for i := 0; i+1 < len(values); i += 2 {
			m.Values[values[i]] = values[i+1]
		}
		return m
	}
	tests := []struct {
		name   string
		msg    redis.XMessage
		reason string
	}{
		{"good", msg("id", "e1", "subject", "token.renewed.v.c", "event", `{"id":"e1"}`), ""},
		{"nothing", msg(), "missing field id, subject, event"},
		{"no id", msg("subject", "token.renewed.v.c", "event", `{}`), "missing field id"},
		{"empty subject", msg("id", "e1", "subject", "", "event", `{}`), "missing field subject"},
		{"request subject", msg("id", "e1", "subject", "request.submit", "event", `{}`), "subject is not an event subject"},
		{"not JSON", msg("id", "e1", "subject", "token.renewed.v.c", "event", `{`), "event is not JSON"},
	}
	for _, tt := range tests {
		e, reason := parseEntry(tt.msg, nil)
		require.Equal(t, tt.reason, reason, tt.name)
		if reason == "" {
			require.Equal(t, entry{rid: "1-0", id: "e1", subject: "token.renewed.v.c", event: []byte(`{"id":"e1"}`)}, e)
		}
	}
}
