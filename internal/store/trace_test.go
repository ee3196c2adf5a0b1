package store_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The traceparent of a sampled renewal is kept with the token it committed
// (for token.get to hand out); a later renewal that was not sampled, or
// not traced, takes it away with the token it replaces.
func TestRenewalTraceIsKeptWithItsToken(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.add(t, "clinic-42")
	const (
		sampled   = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
		unsampled = "00-0af7651916cd43dd8448eb211c80319d-b7ad6b7169203332-00"
	)
	for gen, tc := range []struct{ traceparent, kept string }{
		{sampled, sampled},
		{unsampled, ""},
		{sampled, sampled},
		{"", ""},
	} {
		now := b.clock.Now()
		_, err := b.store.Claim(b.ctx, "clinic-42", int64(gen), "w1", lease)
		require.NoError(t, err)
		ev := renewedEvent(t, "clinic-42", int64(gen+1), now)
		ev.TraceParent = tc.traceparent
		require.NoError(t, b.store.CommitRenewal(b.ctx, "clinic-42", "w1", int64(gen), renewal(now, accessToken, refreshToken), ev))
		c, err := b.store.CurrentToken(b.ctx, "clinic-42")
		require.NoError(t, err)
		require.Equal(t, tc.kept, c.RenewalTrace, "renewal %d traced %q", gen+1, tc.traceparent)
		b.clock.Advance(time.Minute)
	}
}
