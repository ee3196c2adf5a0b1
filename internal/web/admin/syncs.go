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

// SyncJobs is what the admin API needs of syncs (package syncs). Status
// and Cancel answer the sync's status, or a *requests.SubmitError coded
// not_found.
type SyncJobs interface {
	Start(ctx context.Context, s jobs.Sync) (jobs.Sync, error)
	Status(ctx context.Context, vendor, credential, id string) (adminclient.SyncStatus, error)
	Cancel(ctx context.Context, vendor, credential, id string) (adminclient.SyncStatus, error)
	// Decode reads a sync's JSON strictly (syncs.DecodeSync).
	Decode(body []byte) (jobs.Sync, error)
}

// syncRoutes serves syncs. A sync belongs to one (vendor, credential): its
// status and cancel name them in the query, ?vendor=V&credential=C, and
// see or stop only that credential's sync.
func (a *api) syncRoutes(mux *http.ServeMux) {
	mux.Handle("POST /admin/syncs", tracing.Handler("POST /admin/syncs", http.HandlerFunc(a.startSync)))
	mux.HandleFunc("GET /admin/syncs/{id}", withID(a.syncStatus))
	mux.HandleFunc("POST /admin/syncs/{id}/cancel", withID(a.cancelSync))
}

func (a *api) syncJobs(w http.ResponseWriter) bool {
	if a.d.Syncs == nil {
		writeError(w, http.StatusNotFound, "syncs_disabled", "syncs are not enabled on this worker")
		return false
	}
	return true
}

// startSync is POST /admin/syncs: one sync as JSON, answered 202
// {"id","accepted":true} or an error with nothing started.
func (a *api) startSync(w http.ResponseWriter, r *http.Request) {
	if !a.syncJobs(w) {
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, requests.CodeInvalid, "the sync is too large")
		return
	}
	s, err := a.d.Syncs.Decode(body)
	if err == nil {
		s, err = a.d.Syncs.Start(r.Context(), s)
	}
	if err != nil {
		a.syncError(w, err)
		return
	}
	a.d.Logger.Info().Str("sync", s.ID).Str("vendor", s.Vendor).Str("credential", s.Credential).Msg("admin: sync started")
	writeJSON(w, http.StatusAccepted, adminclient.SyncAccepted{ID: s.ID, Accepted: true})
}

// syncStatus is GET /admin/syncs/{id}?vendor=V&credential=C.
func (a *api) syncStatus(w http.ResponseWriter, r *http.Request) {
	if !a.syncJobs(w) {
		return
	}
	vendor, credential := batchOwner(r)
	st, err := a.d.Syncs.Status(r.Context(), vendor, credential, r.PathValue("id"))
	if err != nil {
		a.syncError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// cancelSync is POST /admin/syncs/{id}/cancel?vendor=V&credential=C: the
// sync stops after the page in flight; the answer is its status.
func (a *api) cancelSync(w http.ResponseWriter, r *http.Request) {
	if !a.syncJobs(w) {
		return
	}
	vendor, credential := batchOwner(r)
	st, err := a.d.Syncs.Cancel(r.Context(), vendor, credential, r.PathValue("id"))
	if err != nil {
		a.syncError(w, err)
		return
	}
	a.d.Logger.Info().Str("sync", r.PathValue("id")).Str("vendor", vendor).Str("credential", credential).Msg("admin: sync cancel requested")
	writeJSON(w, http.StatusOK, st)
}

func (a *api) syncError(w http.ResponseWriter, err error) {
	var se *requests.SubmitError
	if !errors.As(err, &se) {
		a.d.Logger.Error().Err(err).Msg("admin: sync lookup failed")
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the sync store is unavailable; try again")
		return
	}
	status := http.StatusBadRequest
	switch se.Code {
	case "not_found", requests.CodeUnknownCredential:
		status = http.StatusNotFound
	case requests.CodeDuplicate:
		status = http.StatusConflict
	case requests.CodeUnavailable:
		status = http.StatusServiceUnavailable
		a.d.Logger.Error().Err(se.Err).Msg("admin: sync start failed")
	}
	writeError(w, status, se.Code, se.Message)
}
