package app_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/adminclient"
	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/requests"
	"github.com/tokenrelay/tokenrelay/jobs"
	"github.com/tokenrelay/tokenrelay/secret"
)

// A request job submitted on NATS (request.submit) and one through the
// admin API are answered at once, run by the workers with the credential's
// token, and end as request.completed events on JetStream carrying their ids.
func TestRequestJobsThroughNATSAndTheAdminAPI(t *testing.T) {
	t.Parallel()
	p := newPipeline(t, 4, 30*time.Second, "")
	p.cfg.HTTP.AdminToken = secret.New("admin-token-0123456789abcdefghijklmnopq-" + p.cfg.NATS.Stream)
	p.scheduler()
	workers := []*role{p.worker(), p.worker()}
	prefix := p.cfg.NATS.SubjectPrefix
	nc := p.inspect.NATS

	completed := make(chan *nats.Msg, 16)
	sub, err := nc.ChanSubscribe(prefix+events.TypeRequestCompleted+".>", completed)
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Unsubscribe() })

	ask := func(body string) map[string]any {
		t.Helper()
		msg, err := nc.Request(prefix+requests.SubjectSubmit, []byte(body), 5*time.Second)
		require.NoError(t, err)
		var out map[string]any
		require.NoError(t, json.Unmarshal(msg.Data, &out))
		return out
	}
	refused := ask(`{"credential":"nobody","method":"GET","path":"Patient"}`)
	require.Equal(t, requests.CodeUnknownCredential, refused["error"])
	accepted := ask(`{"id":"nats-1","credential":"clinic-01","method":"GET","path":"Patient","query":{"_count":"5"}}`)
	require.Equal(t, map[string]any{"id": "nats-1", "accepted": true}, accepted)

	admin := &adminclient.Client{BaseURL: "http://" + workers[1].addr, Token: p.cfg.HTTP.AdminToken}
	r := jobs.NewRequest("clinic-02", http.MethodGet, "Patient")
	r.Batch = "admin-batch"
	id, err := admin.SubmitRequest(context.Background(), r)
	require.NoError(t, err)
	require.Equal(t, r.ID, id)
	_, err = admin.SubmitRequest(context.Background(), jobs.Request{Credential: "clinic-02", Path: "Patient"})
	var apiErr *adminclient.Error
	require.ErrorAs(t, err, &apiErr)
	require.Equal(t, http.StatusBadRequest, apiErr.Status)
	require.Contains(t, apiErr.Message, "method is required")

	seen := map[string]string{}
	deadline := time.After(30 * time.Second)
	for len(seen) < 2 {
		select {
		case msg := <-completed:
			var env events.Envelope
			require.NoError(t, json.Unmarshal(msg.Data, &env))
			var data events.RequestCompleted
			require.NoError(t, json.Unmarshal(env.Data, &data))
			require.Equal(t, http.StatusOK, data.Status)
			seen[data.ID] = msg.Subject
		case <-deadline:
			t.Fatalf("request.completed events seen: %v", seen)
		}
	}
	require.Equal(t, prefix+"request.completed.halaxy-au.clinic-01", seen["nats-1"])
	require.Equal(t, prefix+"request.completed.halaxy-au.clinic-02", seen[id])
	require.Eventually(t, func() bool {
		st, err := admin.BatchStatus(context.Background(), "halaxy-au", "clinic-02", "admin-batch")
		return err == nil && st.Done == 1 && st.Finished()
	}, 10*time.Second, 50*time.Millisecond)
}
