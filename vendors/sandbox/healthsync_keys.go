package sandbox

// HealthSync's key management API (create, list, current, revoke) as the
// sandbox serves it, and its store of keys.

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"time"
)

// newKey makes a key. Call with v.mu held.
func (v *healthSyncSandbox) newKey(account, name string, scopes []string, now time.Time) *hsKey {
	v.seq++
	k := &hsKey{
		HealthSyncKey: HealthSyncKey{ID: "key_" + newToken()[:16], Name: name, Account: account,
			Scopes: slices.Clone(scopes), Created: now},
		seq:    v.seq,
		secret: "hs_test_" + newToken(),
	}
	if k.Scopes == nil {
		k.Scopes = []string{}
	}
	v.keys[k.secret] = k
	v.keyIDs[k.ID] = k
	return k
}

// accountKeys returns account's keys in creation order. Call with v.mu held.
func (v *healthSyncSandbox) accountKeys(account string) []*hsKey {
	var ks []*hsKey
	for _, k := range v.keyIDs {
		if k.Account == account {
			ks = append(ks, k)
		}
	}
	slices.SortFunc(ks, func(a, b *hsKey) int { return a.seq - b.seq })
	return ks
}

// revoke revokes an active key, of account unless account is "". Call with
// v.mu held.
func (v *healthSyncSandbox) revoke(keyID, account string, now time.Time) bool {
	k := v.keyIDs[keyID]
	if k == nil || k.Revoked || account != "" && k.Account != account {
		return false
	}
	k.Revoked, k.RevokedAt = true, now
	return true
}

func (k *hsKey) info() HealthSyncKey {
	i := k.HealthSyncKey
	i.Scopes = slices.Clone(i.Scopes)
	return i
}

func toHSKeyJSON(k HealthSyncKey) hsKeyJSON {
	out := hsKeyJSON{ID: k.ID, Name: k.Name, Scopes: k.Scopes, CreatedAt: k.Created.UTC(), Revoked: k.Revoked}
	if !k.LastUsed.IsZero() {
		t := k.LastUsed.UTC()
		out.LastUsedAt = &t
	}
	if k.Revoked {
		t := k.RevokedAt.UTC()
		out.RevokedAt = &t
	}
	return out
}

// createKey is POST keys.
func (v *healthSyncSandbox) createKey(w http.ResponseWriter, r *http.Request, a hsAuth, now time.Time) {
	var in struct {
		Name   string    `json:"name"`
		Scopes *[]string `json:"scopes"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&in); err != nil {
		writeHealthSyncError(w, http.StatusBadRequest, "invalid_request", "the body must be a JSON object")
		return
	}
	scopes := a.scopes
	if in.Scopes != nil {
		scopes = *in.Scopes
	}
	if len(scopes) == 0 {
		writeHealthSyncError(w, http.StatusBadRequest, "invalid_scope", "a key needs at least one scope")
		return
	}
	if len(in.Name) > 100 {
		writeHealthSyncError(w, http.StatusBadRequest, "invalid_request", "name is longer than 100 characters")
		return
	}
	for _, sc := range scopes {
		if !hsValidScope(sc) {
			writeHealthSyncError(w, http.StatusBadRequest, "invalid_scope", "unknown scope "+strconv.Quote(sc))
			return
		}
		if !hsCovers(a.scopes, sc) {
			writeHealthSyncError(w, http.StatusForbidden, "insufficient_scope", "a key cannot grant the scope "+sc+" it lacks")
			return
		}
	}
	v.mu.Lock()
	k := v.newKey(a.account, in.Name, slices.Compact(slices.Sorted(slices.Values(scopes))), now)
	out := toHSKeyJSON(k.info())
	out.Key = k.secret
	v.mu.Unlock()
	v.s.log.Info().Str("account", a.account).Str("key_id", k.ID).Str("by", a.keyID).Str("key", fingerprint(k.secret)).
		Msg("healthsync key created")
	writeJSON(w, http.StatusCreated, "application/json", out)
}

// listKeys is GET keys.
func (v *healthSyncSandbox) listKeys(w http.ResponseWriter, _ *http.Request, a hsAuth, _ time.Time) {
	keys := v.s.HealthSyncKeys(a.account)
	out := make([]hsKeyJSON, 0, len(keys))
	for _, k := range keys {
		out = append(out, toHSKeyJSON(k))
	}
	writeJSON(w, http.StatusOK, "application/json", map[string]any{"keys": out})
}

// currentKey is GET keys/current.
func (v *healthSyncSandbox) currentKey(w http.ResponseWriter, _ *http.Request, a hsAuth, _ time.Time) {
	v.mu.Lock()
	info := v.keyIDs[a.keyID].info()
	v.mu.Unlock()
	writeJSON(w, http.StatusOK, "application/json", toHSKeyJSON(info))
}

// revokeKey is DELETE keys/{id}.
func (v *healthSyncSandbox) revokeKey(w http.ResponseWriter, r *http.Request, a hsAuth, now time.Time) {
	id := r.PathValue("id")
	v.mu.Lock()
	ok := v.revoke(id, a.account, now)
	v.mu.Unlock()
	if !ok {
		writeHealthSyncError(w, http.StatusNotFound, "not_found", "no active key with this id")
		return
	}
	v.s.log.Info().Str("account", a.account).Str("key_id", id).Str("by", a.keyID).Msg("healthsync key revoked")
	w.WriteHeader(http.StatusNoContent)
}
