package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/tokenrelay/tokenrelay/adminclient"
	"github.com/tokenrelay/tokenrelay/internal/store"
)

// ErrCannotRotate: the credential's vendor cannot rotate keys (or this
// worker was built without rotations).
var ErrCannotRotate = errors.New("admin: the credential's vendor cannot rotate keys")

// RotateNow queues a rotation of credential id's key now, as POST
// /admin/credentials/{id}/rotate does, for every operator surface to
// share. A rotation queued or running already is not queued twice. Errors:
// store.ErrNotFound, store.ErrAlreadyRevoked, ErrCannotRotate, or the
// store's or queue's. The caller audits.
func RotateNow(ctx context.Context, d Deps, id string) (adminclient.RotateResult, error) {
	c, err := d.Store.Get(ctx, id)
	if err != nil {
		return adminclient.RotateResult{}, err
	}
	if c.State == store.StateRevoked {
		return adminclient.RotateResult{}, store.ErrAlreadyRevoked
	}
	if d.RotateNow == nil {
		return adminclient.RotateResult{}, fmt.Errorf("%w: rotations are not set up in this worker", ErrCannotRotate)
	}
	if err := d.RotateNow(ctx, c); err != nil {
		return adminclient.RotateResult{}, err
	}
	return adminclient.RotateResult{ID: id, Vendor: c.Vendor, Queued: true}, nil
}

// rotate is POST /admin/credentials/{id}/rotate: 202 once the rotation is
// queued.
func (a *api) rotate(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	res, err := RotateNow(r.Context(), a.d, id)
	switch {
	case errors.Is(err, ErrCannotRotate):
		writeError(w, http.StatusUnprocessableEntity, "cannot_rotate", err.Error())
		return
	case err != nil:
		a.storeError(w, r, err)
		return
	}
	a.audit(r, "rotate", id).Str("vendor", res.Vendor).Msg("key rotation asked for by operator")
	writeJSON(w, http.StatusAccepted, res)
}
