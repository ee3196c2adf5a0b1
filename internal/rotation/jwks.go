package rotation

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/vendors/redox"
)

// PublishedKeys are the public JWKs a credential's JWKS holds besides its
// current signing key, as its rotation r stands: the new key from the step
// created on (so that Redox can fetch it before it is used), and the old
// key from the switch until the rotation ends (so that assertions and
// tokens made with it stay good).
func PublishedKeys(r store.Rotation) []json.RawMessage {
	switch r.Step {
	case store.RotationCreated, store.RotationVerified:
		if r.NewPublic != "" {
			return []json.RawMessage{json.RawMessage(r.NewPublic)}
		}
	case store.RotationSwitched:
		if r.OldPublic != "" {
			return []json.RawMessage{json.RawMessage(r.OldPublic)}
		}
	}
	return nil
}

// JWKSStore is what JWKSKeys reads.
type JWKSStore interface {
	Get(ctx context.Context, id string) (store.Credential, error)
	GetRotation(ctx context.Context, id string) (store.Rotation, error)
}

// JWKSKeys is the redox.KeySource of the worker's JWKS route: the current
// signing key of a credential of a redox vendor (isRedox says which vendor
// names are), with the keys its rotation publishes (PublishedKeys). A
// revoked credential publishes nothing: Redox can no longer verify its
// assertions.
func JWKSKeys(st JWKSStore, isRedox func(vendor string) bool) redox.KeySource {
	return func(ctx context.Context, vendor, id string) ([]redox.SigningKey, error) {
		if !isRedox(vendor) {
			return nil, redox.ErrNoSigningKeys
		}
		c, err := st.Get(ctx, id)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return nil, redox.ErrNoSigningKeys
		case err != nil:
			return nil, err
		case c.Vendor != vendor || c.PrivateKey.IsZero() || c.State == store.StateRevoked:
			return nil, redox.ErrNoSigningKeys
		}
		keys := []redox.SigningKey{{PrivateKey: c.PrivateKey, KeyID: c.KeyID}}
		r, err := st.GetRotation(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			return keys, nil
		}
		if err != nil {
			return nil, err
		}
		for _, pub := range PublishedKeys(r) {
			var head struct {
				KID string `json:"kid"`
			}
			if json.Unmarshal(pub, &head) == nil && head.KID == c.KeyID {
				continue // the current key, published already
			}
			keys = append(keys, redox.SigningKey{PublicJWK: pub})
		}
		return keys, nil
	}
}
