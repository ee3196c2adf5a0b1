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
	textForm := renewal(t, "halaxy-au", "clinic-1", 4)
	values, err := events.SealOutboxEntry(kr, first)
	require.NoError(t, err)
	sealed, _ := values[5].([]byte)
	require.Equal(t, byte(seal.BinaryVersion), sealed[0], "the event field is sealed, in the binary form")
	require.NotContains(t, string(sealed), "clinic-1")
	xadd(values)
	values, err = events.SealOutboxEntry(kr, moved)
	require.NoError(t, err)
	values[3] = "token.renewed.halaxy-au.clinic-2" // another credential's subject
	movedID := xadd(values)
	require.NoError(t, b.outbox.Append(ctx, plain)) // credential events may rest in clear
	// An entry sealed in the text form, as before the binary one, still
	// publishes after an upgrade.
	raw, err := events.MarshalEnvelope(textForm)
	require.NoError(t, err)
	text, err := kr.Seal(raw, seal.Bind("outbox", textForm.ID, textForm.Subject))
	require.NoError(t, err)
	xadd([]any{events.OutboxFieldID, textForm.ID, events.OutboxFieldSubject, textForm.Subject, events.OutboxFieldEvent, text})

	opts := b.relayOptions(t)
	opts.Keyring = kr
	startRelay(t, opts)
	requireDelivered(t, b, b.stream, []events.Envelope{first, plain, textForm})

	dead, err := b.rdb.XRange(ctx, events.DeadLetterKey(b.prefix), "-", "+").Result()
	require.NoError(t, err)
	require.Len(t, dead, 1)
	require.Equal(t, movedID, dead[0].Values[events.DeadFieldOutboxID])
	require.Contains(t, dead[0].Values[events.DeadFieldReason], "does not open")
	require.Equal(t, string(values[5].([]byte)), dead[0].Values[events.OutboxFieldEvent], "dead-lettered sealed, as it was")

	_, err = events.OpenOutboxEvent(nil, "x", "y", string(values[5].([]byte)))
	require.ErrorIs(t, err, events.ErrSealedNoKeyring)
	_, err = events.OpenOutboxEvent(nil, "x", "y", text)
	require.ErrorIs(t, err, events.ErrSealedNoKeyring)
}
