package jobs_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/jobs"
)

// A request is built with NewRequest and its fields; NewRequestTask makes
// the asynq task the feeder releases (services submit through tokenrelay:
// requests.Submitter in Go, request.submit on NATS, or POST /admin/requests).
func ExampleNewRequest() {
	r := jobs.NewRequest("clinic-42", http.MethodGet, "Patient")
	r.ID = "page-1" // default: a fresh UUID
	r.Query = jobs.Query{"_count": {"100"}, "_lastUpdated": {"gt2026-11-01"}}
	r.Batch = "nightly-sync"
	r.IdempotencyKey = "nightly-sync/clinic-42/page-1"

	task, err := jobs.NewRequestTask(r)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(task.Type())
	var back jobs.Request
	_ = json.Unmarshal(task.Payload(), &back)
	fmt.Println(back.Credential, back.Method, back.Path, back.Query["_count"], back.Batch)
	// Output:
	// vendor:request
	// clinic-42 GET Patient [100] nightly-sync
}

func TestRequestBody(t *testing.T) {
	t.Parallel()
	r := jobs.NewRequest("c", http.MethodPost, "Patient")
	require.NotEmpty(t, r.ID)
	b, err := r.BodyBytes()
	require.NoError(t, err)
	require.Nil(t, b, "no body")

	r, err = r.WithJSONBody(map[string]string{"resourceType": "Patient"})
	require.NoError(t, err)
	b, err = r.BodyBytes()
	require.NoError(t, err)
	require.JSONEq(t, `{"resourceType":"Patient"}`, string(b))

	r = r.WithBytesBody([]byte{0, 1, 2, 'x'})
	b, err = r.BodyBytes()
	require.NoError(t, err)
	require.Equal(t, []byte{0, 1, 2, 'x'}, b)

	r.Body = json.RawMessage(`"not base64!"`)
	_, err = r.BodyBytes()
	require.ErrorContains(t, err, "base64")
}

func TestRequestQueryJSON(t *testing.T) {
	t.Parallel()
	var r jobs.Request
	require.NoError(t, json.Unmarshal([]byte(`{"query":{"a":"1","b":["2","3"]}}`), &r))
	require.Equal(t, jobs.Query{"a": {"1"}, "b": {"2", "3"}}, r.Query)
	require.ErrorContains(t, json.Unmarshal([]byte(`{"query":{"a":1}}`), &r), `query "a"`)
}

func TestRequestTaskIsOnTheDefaultQueueWithItsID(t *testing.T) {
	t.Parallel()
	r := jobs.NewRequest("c", http.MethodGet, "Patient")
	task, err := jobs.NewRequestTask(r)
	require.NoError(t, err)
	require.Equal(t, jobs.TypeVendorRequest, task.Type())
	_, err = jobs.NewRequestTask(jobs.Request{})
	require.Error(t, err)
}
