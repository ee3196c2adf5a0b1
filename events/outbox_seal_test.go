package events_test

import (
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/seal"
)

// Sealed outbox entries rest sealed in Redis and are published opened.
// Attack: someone with write access to Redis points a sealed entry of one
// credential at another credential's subject; it does not open there and
// goes to the dead letter, still sealed, instead of being published.
func TestRelayOpensSealedEntries(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t)
	kr, err := seal.NewKeyring([]byte(strings.Repeat("k", seal.KeySize)))
	require.NoError(t, err)
	xadd := func(values []any) string {
		id, err := b.rdb.XAdd(ctx, &redis.XAddArgs{Stream: b.outbox.Key(), Values: values}).Result()
		require.NoError(t, err)
		return id
	}
	first, moved, plain := renewal(t, "halaxy-au", "clinic-1", 1), renewal(t, "halaxy-au", "clinic-1", 2), renewal(t, "halaxy-au", "clinic-1", 3)
	values, err := events.SealOutboxEntry(kr, first)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(values[5].(string), "v1."), "the event field is sealed")
	require.NotContains(t, values[5], "clinic-1")
	xadd(values)
	values, err = events.SealOutboxEntry(kr, moved)
	require.NoError(t, err)
	values[3] = "token.renewed.halaxy-au.clinic-2" // another credential's subject
	movedID := xadd(values)
	require.NoError(t, b.outbox.Append(ctx, plain)) // credential events may rest in clear

	opts := b.relayOptions(t)
	opts.Keyring = kr
	startRelay(t, opts)
	requireDelivered(t, b, b.stream, []events.Envelope{first, plain})

	dead, err := b.rdb.XRange(ctx, events.DeadLetterKey(b.prefix), "-", "+").Result()
	require.NoError(t, err)
	require.Len(t, dead, 1)
	require.Equal(t, movedID, dead[0].Values[events.DeadFieldOutboxID])
	require.Contains(t, dead[0].Values[events.DeadFieldReason], "does not open")
	require.True(t, strings.HasPrefix(dead[0].Values[events.OutboxFieldEvent].(string), "v1."), "dead-lettered sealed")

	_, err = events.OpenOutboxEvent(nil, "x", "y", values[5].(string))
	require.ErrorIs(t, err, events.ErrSealedNoKeyring)
}
