package adminclient_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/adminclient"
)

type otherJob struct{}

func (otherJob) Kind() string { return "token:refresh" }

// TestSubmitRequestSendsOnlyRequestJobs: a job of another kind (whose JSON
// the server would misread) is refused before anything is sent.
func TestSubmitRequestSendsOnlyRequestJobs(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		calls.Add(1)
		w.WriteHeader(http.StatusAccepted)
		_, _ = w.Write([]byte(`{"id":"r-1","accepted":true}`))
	}))
	t.Cleanup(srv.Close)
	c := &adminclient.Client{BaseURL: srv.URL}
	_, err := c.SubmitRequest(context.Background(), otherJob{})
	require.ErrorContains(t, err, "not a request job")
	require.Zero(t, calls.Load())
}
