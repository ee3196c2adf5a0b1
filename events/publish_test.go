package events_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/events"
)

// Publish stores an event once: its id is the Nats-Msg-Id, so publishing
// the same event again (a vendor's redelivery, a worker racing another) is
// acknowledged as a duplicate and not stored twice.
func TestPublishDeduplicatesByEventID(t *testing.T) {
	t.Parallel()
	b := setup(t)
	at := time.Date(2026, 12, 7, 5, 0, 0, 0, time.UTC)
	env, err := events.NewWithID("wh-abc", events.TypeWebhookReceived, "halaxy-au",
		events.WebhookSubject("halaxy-au", "appointment.created"), at,
		events.WebhookReceived{Vendor: "halaxy-au", EventType: "appointment.created", DeliveryID: "d1", ReceivedAt: at})
	require.NoError(t, err)
	require.Equal(t, "webhook.halaxy-au.appointment.created", env.Subject)

	ack, err := events.Publish(t.Context(), b.js, b.subjectPrefix, env)
	require.NoError(t, err)
	require.False(t, ack.Duplicate)
	ack, err = events.Publish(t.Context(), b.js, b.subjectPrefix, env)
	require.NoError(t, err)
	require.True(t, ack.Duplicate, "a re-publish of the same event is dropped")

	info, err := b.stream.Info(t.Context())
	require.NoError(t, err)
	require.EqualValues(t, 1, info.State.Msgs)
	msg, err := b.stream.GetMsg(t.Context(), 1)
	require.NoError(t, err)
	require.Equal(t, b.subjectPrefix+env.Subject, msg.Subject)
	require.Equal(t, "wh-abc", msg.Header.Get(jetstream.MsgIDHeader))
	var got events.Envelope
	require.NoError(t, json.Unmarshal(msg.Data, &got))
	require.Equal(t, env.ID, got.ID)
	require.Equal(t, events.TypeWebhookReceived, got.Type)
	require.Equal(t, "tokenrelay/halaxy-au", got.Source)

	bad := env
	bad.ID = ""
	_, err = events.Publish(t.Context(), b.js, b.subjectPrefix, bad)
	require.ErrorContains(t, err, "lacks id", "an invalid envelope is refused before publishing")
}
