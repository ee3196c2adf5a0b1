package syncs_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/internal/requests"
	"github.com/tokenrelay/tokenrelay/internal/syncs"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
)

// sync.start answers at once, as request.submit does: accepted with the
// id, or refused with a code and a message; nothing starts when refused.
func TestStartOnNATS(t *testing.T) {
	t.Parallel()
	w := setup(t, syncs.Deps{})
	nc, _, _ := testenv.NATS(t)
	subjects := testenv.Unique("t") + "."
	svc, err := syncs.NewService(nc, w.runner, requests.ServiceOptions{SubjectPrefix: subjects, QueueGroup: subjects + "q", Logger: zerolog.Nop()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = svc.Stop() })
	ask := func(body string) map[string]any {
		msg, err := nc.Request(subjects+"sync.start", []byte(body), 5*time.Second)
		require.NoError(t, err)
		var out map[string]any
		require.NoError(t, json.Unmarshal(msg.Data, &out))
		return out
	}
	require.Equal(t, map[string]any{"id": "over-nats", "accepted": true},
		ask(`{"id":"over-nats","vendor":"`+vendorName+`","credential":"`+credID+`","resource":"Patient","query":{"_count":"50"},"mode":"full"}`))
	st, err := w.runner.Status(t.Context(), vendorName, credID, "over-nats")
	require.NoError(t, err)
	require.Equal(t, "full", st.Mode)

	refused := ask(`{"credential":"` + credID + `","resource":"Patient","cursor":"x"}`)
	require.Equal(t, "invalid", refused["error"])
	require.Contains(t, refused["message"], `unknown field "cursor"`)
	refused = ask(`{"credential":"nobody","resource":"Patient"}`)
	require.Equal(t, "unknown_credential", refused["error"])
	list, err := w.runner.List(t.Context(), 10)
	require.NoError(t, err)
	require.Len(t, list, 1)
}
