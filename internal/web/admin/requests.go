package admin

import (
	"context"
	"errors"
	"io"
	"net/http"

	"github.com/tokenrelay/tokenrelay/adminclient"
	"github.com/tokenrelay/tokenrelay/internal/requests"
	"github.com/tokenrelay/tokenrelay/internal/tracing"
	"github.com/tokenrelay/tokenrelay/jobs"
)

// RequestJobs is what the admin API needs of request jobs.
type RequestJobs interface {
	Submit(ctx context.Context, r jobs.Request) (jobs.Request, error)
	BatchStatus(ctx context.Context, vendor, credential, id string) (adminclient.BatchStatus, error)
	CancelBatch(ctx context.Context, vendor, credential, id string) error
}

var _ RequestJobs = requests.Jobs{}

// maxRequestBody bounds a submitted request: the body limit, in base64, and
// the rest of the JSON.
const maxRequestBody = requests.DefaultMaxBody*4/3 + 64<<10

// requestRoutes serves request submission and batches. A batch belongs to
// one (vendor, credential): its status and cancel name them in the query,
// ?vendor=V&credential=C, and see or stop only that credential's batch.
func (a *api) requestRoutes(mux *http.ServeMux) {
	// A request submitted here starts its trace here (or continues the
	// caller's): requests.submit and the job's spans are its children.
	mux.Handle("POST /admin/requests", tracing.Handler("POST /admin/requests", http.HandlerFunc(a.submitRequest)))
	mux.HandleFunc("GET /admin/batches/{id}", withID(a.batchStatus))
	mux.HandleFunc("POST /admin/batches/{id}/cancel", withID(a.cancelBatch))
}

func (a *api) requestJobs(w http.ResponseWriter) bool {
	if a.d.Requests == nil {
		writeError(w, http.StatusNotFound, "requests_disabled", "request jobs are not enabled on this worker")
		return false
	}
	return true
}

// submitRequest is POST /admin/requests: one request job as JSON, answered
// 202 {"id","accepted":true} or an error with nothing queued.
func (a *api) submitRequest(w http.ResponseWriter, r *http.Request) {
	if !a.requestJobs(w) {
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBody))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, requests.CodeInvalid, "the request is too large")
		return
	}
	req, err := requests.DecodeRequest(body)
	if err == nil {
		req, err = a.d.Requests.Submit(r.Context(), req)
	}
	var se *requests.SubmitError
	switch {
	case err == nil:
		a.d.Logger.Info().Str("request", req.ID).Str("credential", req.Credential).Str("batch", req.Batch).Msg("admin: request submitted")
		writeJSON(w, http.StatusAccepted, adminclient.Accepted{ID: req.ID, Accepted: true})
	case errors.As(err, &se):
		status := http.StatusBadRequest
		switch se.Code {
		case requests.CodeUnknownCredential:
			status = http.StatusNotFound
		case requests.CodeDuplicate, requests.CodeBatchCancelled:
			status = http.StatusConflict
		case requests.CodeUnavailable:
			status = http.StatusServiceUnavailable
			a.d.Logger.Error().Err(se.Err).Msg("admin: request submission failed")
		}
		writeError(w, status, se.Code, se.Message)
	default:
		writeError(w, http.StatusBadRequest, requests.CodeInvalid, err.Error())
	}
}

// batchOwner is the (vendor, credential) a batch request names.
func batchOwner(r *http.Request) (vendor, credential string) {
	q := r.URL.Query()
	return q.Get("vendor"), q.Get("credential")
}

// batchStatus is GET /admin/batches/{id}?vendor=V&credential=C.
func (a *api) batchStatus(w http.ResponseWriter, r *http.Request) {
	if !a.requestJobs(w) {
		return
	}
	vendor, credential := batchOwner(r)
	st, err := a.d.Requests.BatchStatus(r.Context(), vendor, credential, r.PathValue("id"))
	if err != nil {
		a.batchError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// cancelBatch is POST /admin/batches/{id}/cancel?vendor=V&credential=C:
// what has not run of that credential's batch is stopped; the answer is the
// batch's status.
func (a *api) cancelBatch(w http.ResponseWriter, r *http.Request) {
	if !a.requestJobs(w) {
		return
	}
	id := r.PathValue("id")
	vendor, credential := batchOwner(r)
	if err := a.d.Requests.CancelBatch(r.Context(), vendor, credential, id); err != nil {
		a.batchError(w, r, err)
		return
	}
	a.d.Logger.Info().Str("batch", id).Str("vendor", vendor).Str("credential", credential).Msg("admin: batch cancelled")
	st, err := a.d.Requests.BatchStatus(r.Context(), vendor, credential, id)
	if err != nil {
		a.batchError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (a *api) batchError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, requests.ErrBatchCredential):
		writeError(w, http.StatusBadRequest, requests.CodeInvalid,
			"name the batch's vendor and credential: ?vendor=V&credential=C (a batch belongs to one credential)")
		return
	case errors.Is(err, requests.ErrBatchNotFound):
		writeError(w, http.StatusNotFound, "not_found", "no batch "+r.PathValue("id")+" of that credential")
		return
	}
	a.d.Logger.Error().Err(err).Str("path", r.URL.Path).Msg("admin: batch lookup failed")
	writeError(w, http.StatusServiceUnavailable, "unavailable", "the request queue is unavailable; try again")
}
