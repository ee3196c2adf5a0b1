package rotation

import (
	"context"

	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/vendors"
	"github.com/tokenrelay/tokenrelay/vendors/healthsync"
)

// HealthSyncKeys manages the API keys of a HealthSync account through the
// adapter's key-management calls: every call is authenticated by the
// credential's API key (the old one until the switch, the new one after).
type HealthSyncKeys struct{ Adapter *healthsync.Adapter }

var _ KeyManager = HealthSyncKeys{}

func hsKey(k healthsync.KeyInfo) Key {
	out := Key{ID: k.ID, Name: k.Name, Secret: k.Key, Scopes: k.Scopes, Revoked: k.Revoked}
	if !k.Key.IsZero() {
		out.Fingerprint = k.Key.Fingerprint()
	}
	return out
}

// Current implements KeyManager: the key cred.APIKey is.
func (h HealthSyncKeys) Current(ctx context.Context, cred vendors.Credential) (Key, error) {
	k, err := h.Adapter.CurrentKey(ctx, cred.APIKey)
	if err != nil {
		return Key{}, err
	}
	out := hsKey(k)
	out.Fingerprint = cred.APIKey.Fingerprint()
	return out, nil
}

// Create implements KeyManager.
func (h HealthSyncKeys) Create(ctx context.Context, cred vendors.Credential, scopes []string, name string) (Key, error) {
	k, err := h.Adapter.CreateKey(ctx, cred, scopes, name)
	if err != nil {
		return Key{}, err
	}
	return hsKey(k), nil
}

// List implements KeyManager.
func (h HealthSyncKeys) List(ctx context.Context, cred vendors.Credential) ([]Key, error) {
	ks, err := h.Adapter.ListKeys(ctx, cred)
	if err != nil {
		return nil, err
	}
	out := make([]Key, len(ks))
	for i, k := range ks {
		out[i] = hsKey(k)
	}
	return out, nil
}

// Verify implements KeyManager with one real read.
func (h HealthSyncKeys) Verify(ctx context.Context, cred vendors.Credential) error {
	return h.Adapter.VerifyKey(ctx, cred.APIKey)
}

// Revoke implements KeyManager.
func (h HealthSyncKeys) Revoke(ctx context.Context, cred vendors.Credential, keyID string) error {
	return h.Adapter.RevokeKey(ctx, cred, keyID)
}

// Use implements KeyManager: the API key is replaced.
func (HealthSyncKeys) Use(keys store.Keys, k Key) store.Keys {
	keys.APIKey = k.Secret
	return keys
}
