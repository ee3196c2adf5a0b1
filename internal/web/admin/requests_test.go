package admin

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/adminclient"
	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/internal/requests"
	"github.com/tokenrelay/tokenrelay/jobs"
	"github.com/tokenrelay/tokenrelay/secret"
)

// fakeRequestJobs answers from Func fields.
type fakeRequestJobs struct {
	submit func(jobs.Request) (jobs.Request, error)
	status func(vendor, credential, id string) (adminclient.BatchStatus, error)
	cancel func(vendor, credential, id string) error
}

func (f fakeRequestJobs) Submit(_ context.Context, r jobs.Request) (jobs.Request, error) {
	return f.submit(r)
}
func (f fakeRequestJobs) BatchStatus(_ context.Context, vendor, credential, id string) (adminclient.BatchStatus, error) {
	return f.status(vendor, credential, id)
}
func (f fakeRequestJobs) CancelBatch(_ context.Context, vendor, credential, id string) error {
	return f.cancel(vendor, credential, id)
}

// batchOf is the fake's one batch: nightly of clinic-1 at v1; the real
// Batches say the same of a missing vendor or credential.
func batchOf(vendor, credential, id string) error {
	switch {
	case vendor == "" || credential == "":
		return requests.ErrBatchCredential
	case vendor != "v1" || credential != "clinic-1" || id != "nightly":
		return requests.ErrBatchNotFound
	}
	return nil
}

func TestRequestRoutes(t *testing.T) {
	t.Parallel()
	var submitted []jobs.Request
	cancelled := map[string]bool{}
	jobsAPI := fakeRequestJobs{
		submit: func(r jobs.Request) (jobs.Request, error) {
			switch r.Credential {
			case "nobody":
				return r, &requests.SubmitError{Code: requests.CodeUnknownCredential, Message: `no credential "nobody"`}
			case "dup":
				return r, &requests.SubmitError{Code: requests.CodeDuplicate, Message: "submitted already"}
			}
			r.ID = "req-1"
			submitted = append(submitted, r)
			return r, nil
		},
		status: func(vendor, credential, id string) (adminclient.BatchStatus, error) {
			if err := batchOf(vendor, credential, id); err != nil {
				return adminclient.BatchStatus{}, err
			}
			return adminclient.BatchStatus{ID: id, Total: 3, Done: 1, Queued: 2, CancelRequested: cancelled[id]}, nil
		},
		cancel: func(vendor, credential, id string) error {
			if err := batchOf(vendor, credential, id); err != nil {
				return err
			}
			cancelled[id] = true
			return nil
		},
	}
	h := Handler(Deps{Config: &config.Config{}, Token: secret.New("tok"), Logger: zerolog.Nop(), Requests: jobsAPI})
	do := func(method, path, body string) (int, map[string]any) {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer tok")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		var out map[string]any
		_ = json.Unmarshal(rec.Body.Bytes(), &out)
		return rec.Code, out
	}

	code, out := do(http.MethodPost, "/admin/requests", `{"credential":"clinic-1","method":"GET","path":"Patient"}`)
	require.Equal(t, http.StatusAccepted, code)
	require.Equal(t, map[string]any{"id": "req-1", "accepted": true}, out)
	require.Len(t, submitted, 1)
	for _, c := range []struct {
		body   string
		status int
		code   string
	}{
		{`{"credential":"nobody","method":"GET","path":"Patient"}`, http.StatusNotFound, requests.CodeUnknownCredential},
		{`{"credential":"dup","method":"GET","path":"Patient"}`, http.StatusConflict, requests.CodeDuplicate},
		{`{"credential":"clinic-1","methd":"GET"}`, http.StatusBadRequest, requests.CodeInvalid},
		{`[1,2]`, http.StatusBadRequest, requests.CodeInvalid},
	} {
		code, out := do(http.MethodPost, "/admin/requests", c.body)
		require.Equal(t, c.status, code, c.body)
		require.Equal(t, c.code, out["error"], c.body)
		require.NotEmpty(t, out["message"], c.body)
	}
	require.Len(t, submitted, 1, "a refused request was submitted")

	code, out = do(http.MethodGet, "/admin/batches/nightly?vendor=v1&credential=clinic-1", "")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, 3.0, out["total"])
	code, _ = do(http.MethodGet, "/admin/batches/other?vendor=v1&credential=clinic-1", "")
	require.Equal(t, http.StatusNotFound, code)
	code, out = do(http.MethodGet, "/admin/batches/nightly", "")
	require.Equal(t, http.StatusBadRequest, code, "a batch is named with its credential")
	require.Contains(t, out["message"], "credential")
	code, _ = do(http.MethodPost, "/admin/batches/nightly/cancel?vendor=v1&credential=clinic-2", "")
	require.Equal(t, http.StatusNotFound, code, "another credential's batch")
	require.False(t, cancelled["nightly"])
	code, out = do(http.MethodPost, "/admin/batches/nightly/cancel?vendor=v1&credential=clinic-1", "")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, true, out["cancel_requested"])

	off := Handler(Deps{Config: &config.Config{}, Token: secret.New("tok"), Logger: zerolog.Nop()})
	req := httptest.NewRequest(http.MethodGet, "/admin/batches/nightly", nil)
	req.Header.Set("Authorization", "Bearer tok")
	rec := httptest.NewRecorder()
	off.ServeHTTP(rec, req)
	require.Equal(t, http.StatusNotFound, rec.Code)
	require.Contains(t, rec.Body.String(), "requests_disabled")

	req = httptest.NewRequest(http.MethodPost, "/admin/requests", strings.NewReader(`{}`))
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	require.Equal(t, http.StatusUnauthorized, rec.Code, "the admin token is required")
}
