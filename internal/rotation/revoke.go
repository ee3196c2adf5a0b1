package rotation

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/vendors"
)

// RevokeAtVendor revokes credential c's key at its vendor, for an
// operator's revocation (the caller then revokes the credential in the
// store, with its key.revoked event). A vendor without key management has
// nothing to call: nil. A rotation of c in progress is settled first, so
// that no key of it is left alive: before the switch its new key is
// revoked and the rotation aborted; after the switch it is finished (the
// old key revoked, as it would have been). A key the vendor refuses
// already is revoked already: nil.
func (r *Rotator) RevokeAtVendor(ctx context.Context, c store.Credential) error {
	v, ok := r.o.Vendor(c.Vendor)
	if !ok || v.Keys == nil {
		return nil
	}
	cur, err := r.o.Store.GetRotation(ctx, c.ID)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return fmt.Errorf("rotation: revoke %s at vendor: %w", c.ID, err)
	case !cur.Step.Finished():
		rot, err := r.o.Store.BeginRotationFor(ctx, c.ID, r.o.Owner, r.o.Hold, store.RotationRequest{ResumeOnly: true})
		if errors.Is(err, store.ErrRotationDone) {
			// It finished meanwhile: revoke the key it switched to.
			if c, err = r.o.Store.Get(ctx, c.ID); err != nil {
				return fmt.Errorf("rotation: revoke %s at vendor: %w", c.ID, err)
			}
			break
		}
		if err != nil {
			return fmt.Errorf("rotation: revoke %s at vendor: settle its rotation: %w", c.ID, err)
		}
		u := &run{r: r, v: v, cred: c, rot: rot, log: r.o.Logger.With().Str("credential", c.ID).Str("rotation", rot.ID).Logger()}
		u.v.RevokeOldAfter = 0 // the credential is going: its old key need not be kept
		if rot.Step == store.RotationSwitched {
			err = u.revokeOld(ctx)
		} else {
			err = u.abort(ctx, "the credential is being revoked by an operator", time.Time{})
			if errors.Is(err, ErrAborted) {
				err = nil
			}
		}
		if err != nil {
			if !u.rot.Step.Finished() {
				_ = r.o.Store.AdvanceRotation(context.WithoutCancel(ctx), &u.rot, r.o.Owner, 0, store.RotationChange{})
			}
			return fmt.Errorf("rotation: revoke %s at vendor: settle its rotation: %w", c.ID, err)
		}
		if c, err = r.o.Store.Get(ctx, c.ID); err != nil {
			return fmt.Errorf("rotation: revoke %s at vendor: %w", c.ID, err)
		}
	}
	cred := vendorCred(c.ID, c.ClientID, c.Keys)
	k, err := v.Keys.Current(ctx, cred)
	if vendors.IsRevoked(err) {
		return nil // the vendor refuses it already
	}
	if err != nil {
		return fmt.Errorf("rotation: revoke %s at vendor: describe its key: %w", c.ID, err)
	}
	if err := v.Keys.Revoke(ctx, cred, k.ID); err != nil {
		return fmt.Errorf("rotation: revoke %s at vendor: %w", c.ID, err)
	}
	_ = r.o.Store.UnscheduleRotation(ctx, c.ID)
	r.o.Logger.Info().Str("credential", c.ID).Str("vendor", c.Vendor).Str("key_fingerprint", c.KeyFingerprint()).Msg("key revoked at the vendor")
	return nil
}
