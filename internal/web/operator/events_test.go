package operator_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
	"github.com/tokenrelay/tokenrelay/internal/web/operator"
)

// The event log reads the latest events of a real JetStream stream, newest
// first, however many there are.
func TestStreamLogReadsTheLatestEvents(t *testing.T) {
	t.Parallel()
	_, js, stream := testenv.NATS(t)
	prefix := testenv.Unique("t") + "."
	ctx := context.Background()
	_, err := events.EnsureStream(ctx, js, events.StreamConfig{Name: stream, SubjectPrefix: prefix, Storage: jetstream.MemoryStorage})
	require.NoError(t, err)
	log := operator.NewStreamLog(js, stream)

	got, err := log.Recent(ctx, 10)
	require.NoError(t, err)
	require.Empty(t, got, "an empty stream has no events")

	at := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	for i := 1; i <= 25; i++ {
		ev, err := events.New(events.TypeTokenRenewed, "halaxy-au", fmt.Sprintf("clinic-%d", i), at, events.TokenRenewed{Generation: int64(i)})
		require.NoError(t, err)
		body, err := json.Marshal(ev)
		require.NoError(t, err)
		_, err = js.Publish(ctx, prefix+ev.Subject, body)
		require.NoError(t, err)
	}
	// Not an envelope: left out.
	_, err = js.Publish(ctx, prefix+"token.renewed.x.y", []byte("not json"))
	require.NoError(t, err)

	got, err = log.Recent(ctx, 6)
	require.NoError(t, err)
	var subjects []string
	for _, e := range got {
		subjects = append(subjects, e.Subject)
	}
	require.Equal(t, []string{"token.renewed.halaxy-au.clinic-25", "token.renewed.halaxy-au.clinic-24",
		"token.renewed.halaxy-au.clinic-23", "token.renewed.halaxy-au.clinic-22", "token.renewed.halaxy-au.clinic-21"}, subjects)

	got, err = log.Recent(ctx, 500)
	require.NoError(t, err)
	require.Len(t, got, 25)
	require.Equal(t, "token.renewed.halaxy-au.clinic-1", got[24].Subject)

	_, err = operator.NewStreamLog(js, stream+"_MISSING").Recent(ctx, 5)
	require.Error(t, err)
}
