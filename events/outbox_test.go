package events_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
)

func TestOutboxAppend(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	rdb, prefix := testenv.RedisPrefix(t)
	outbox := events.NewOutbox(rdb, prefix)
	require.Equal(t, prefix+"outbox", outbox.Key())
	require.Equal(t, events.OutboxKey(prefix), outbox.Key())

	a, b := renewal(t, "halaxy-au", "clinic-1", 1), renewal(t, "halaxy-au", "clinic-2", 1)
	require.NoError(t, outbox.Append(ctx, a, b))
	require.NoError(t, outbox.Append(ctx)) // nothing to do

	depth, err := outbox.Depth(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 2, depth)

	entries, err := rdb.XRange(ctx, outbox.Key(), "-", "+").Result()
	require.NoError(t, err)
	require.Len(t, entries, 2)
	for i, want := range []events.Envelope{a, b} {
		require.Len(t, entries[i].Values, 3)
		require.Equal(t, want.ID, entries[i].Values[events.OutboxFieldID])
		require.Equal(t, want.Subject, entries[i].Values[events.OutboxFieldSubject])
		var got events.Envelope
		require.NoError(t, json.Unmarshal([]byte(entries[i].Values[events.OutboxFieldEvent].(string)), &got))
		require.Equal(t, want, got)
	}
}

func TestOutboxAppendRefusesInvalidEvents(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	rdb, prefix := testenv.RedisPrefix(t)
	outbox := events.NewOutbox(rdb, prefix)

	good := renewal(t, "halaxy-au", "clinic-1", 1)
	noID := renewal(t, "halaxy-au", "clinic-1", 2)
	noID.ID = ""
	badSubject := renewal(t, "halaxy-au", "clinic-1", 3)
	badSubject.Subject = "token.renewed.halaxy au.clinic-1"
	requestSubject, err := events.New("token.get", "halaxy-au", "clinic-1", time.Now(), struct{}{})
	require.NoError(t, err)

	for _, bad := range []events.Envelope{noID, badSubject, requestSubject} {
		require.Error(t, outbox.Append(ctx, good, bad))
	}
	depth, err := outbox.Depth(ctx)
	require.NoError(t, err)
	require.Zero(t, depth, "a refused batch must write nothing")
}

func TestNewOutboxDefaultPrefix(t *testing.T) {
	t.Parallel()
	require.Equal(t, "tokenrelay:outbox", events.NewOutbox(nil, "").Key())
}
