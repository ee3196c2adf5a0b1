package healthsync

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/vendors"
)

// KeyInfo is what HealthSync says of an API key.
type KeyInfo struct {
	ID   string
	Name string
	// Key is the key itself, set by CreateKey only: HealthSync shows a key
	// once, when it is created.
	Key       secret.Value
	Scopes    []string
	CreatedAt time.Time
	// LastUsedAt is zero when the key was never used (or HealthSync does
	// not say).
	LastUsedAt time.Time
	Revoked    bool
	RevokedAt  time.Time
}

// keyJSON is a key in the key-management answers.
type keyJSON struct {
	ID         string    `json:"id"`
	Key        string    `json:"key"`
	Name       string    `json:"name"`
	Scopes     []string  `json:"scopes"`
	CreatedAt  time.Time `json:"created_at"`
	LastUsedAt time.Time `json:"last_used_at"`
	Revoked    bool      `json:"revoked"`
	RevokedAt  time.Time `json:"revoked_at"`
}

func (k keyJSON) info() KeyInfo {
	return KeyInfo{ID: k.ID, Name: k.Name, Key: secret.New(k.Key), Scopes: k.Scopes, CreatedAt: k.CreatedAt,
		LastUsedAt: k.LastUsedAt, Revoked: k.Revoked, RevokedAt: k.RevokedAt}
}

// keyCall sends one key-management request authenticated by key and
// decodes a 2xx answer into out (when not nil). It never quotes a 2xx
// answer: it may hold a key.
func (a *Adapter) keyCall(ctx context.Context, op, method, path string, key secret.Value, in, out any) (vendors.Answer, error) {
	if key.IsZero() {
		return vendors.Answer{}, a.missing(op, "api_key")
	}
	req, err := a.apiRequest(ctx, method, path, key, in)
	if err != nil {
		return vendors.Answer{}, err
	}
	ans, verr := a.send(req, op, false, secret.NewScrubber(key))
	if verr != nil {
		return vendors.Answer{}, verr
	}
	if out != nil {
		if err := json.Unmarshal(ans.Body, out); err != nil {
			return vendors.Answer{}, a.malformedAnswer(op, ans, "answer is not the expected JSON")
		}
	}
	return ans, nil
}

func (a *Adapter) malformedAnswer(op string, ans vendors.Answer, why string) *vendors.Error {
	return a.sender.Malformed(op, ans.Status, "%s (%d bytes, Content-Type %q)",
		why, len(ans.Body), vendors.Excerpt(ans.Header.Get("Content-Type"), nil))
}

// CreateKey creates an API key of cred's account (one POST to
// KeyPaths.Create, authenticated by cred.APIKey) named name, with scopes;
// nil scopes leave them to HealthSync (the sandbox copies the
// authenticating key's). A rotation passes the old key's scopes, and checks
// the Scopes of the answer. The KeyInfo holds the new key, shown this once.
//
// When the answer is lost (ClassNetwork, ClassTimeout, ClassMalformed) the
// key may exist all the same: ListKeys, by name, finds it.
func (a *Adapter) CreateKey(ctx context.Context, cred vendors.Credential, scopes []string, name string) (KeyInfo, error) {
	in := struct {
		Name   string   `json:"name,omitempty"`
		Scopes []string `json:"scopes,omitempty"`
	}{Name: name, Scopes: scopes}
	var out keyJSON
	ans, err := a.keyCall(ctx, opCreate, http.MethodPost, a.paths.Create, cred.APIKey, in, &out)
	if err != nil {
		return KeyInfo{}, err
	}
	if out.ID == "" || out.Key == "" {
		return KeyInfo{}, a.malformedAnswer(opCreate, ans, "answer has no key id or no key")
	}
	return out.info(), nil
}

// ListKeys lists the API keys of cred's account, revoked ones included when
// HealthSync lists them (one GET of KeyPaths.List, authenticated by
// cred.APIKey). Their Key is zero.
func (a *Adapter) ListKeys(ctx context.Context, cred vendors.Credential) ([]KeyInfo, error) {
	var out struct {
		Keys []keyJSON `json:"keys"`
	}
	ans, err := a.keyCall(ctx, opList, http.MethodGet, a.paths.List, cred.APIKey, nil, &out)
	if err != nil {
		return nil, err
	}
	if out.Keys == nil {
		return nil, a.malformedAnswer(opList, ans, "answer has no keys")
	}
	keys := make([]KeyInfo, 0, len(out.Keys))
	for _, k := range out.Keys {
		if k.ID == "" {
			return nil, a.malformedAnswer(opList, ans, "a listed key has no id")
		}
		k.Key = ""
		keys = append(keys, k.info())
	}
	return keys, nil
}

// CurrentKey says which key key is (one GET of KeyPaths.Current,
// authenticated by key): its id, to revoke it after a rotation, and its
// scopes, to give its successor. Key is zero.
func (a *Adapter) CurrentKey(ctx context.Context, key secret.Value) (KeyInfo, error) {
	var out keyJSON
	ans, err := a.keyCall(ctx, opCurrent, http.MethodGet, a.paths.Current, key, nil, &out)
	if err != nil {
		return KeyInfo{}, err
	}
	if out.ID == "" {
		return KeyInfo{}, a.malformedAnswer(opCurrent, ans, "answer has no key id")
	}
	out.Key = ""
	return out.info(), nil
}

// VerifyKey checks key with one real read (a GET of KeyPaths.Verify): nil
// when HealthSync answers it with a 2xx JSON answer. A refused key is
// ClassRevoked, a key without the read's scope ClassRejected (403).
func (a *Adapter) VerifyKey(ctx context.Context, key secret.Value) error {
	if key.IsZero() {
		return a.missing(opVerify, "api_key")
	}
	return a.verify(ctx, key)
}

func (a *Adapter) verify(ctx context.Context, key secret.Value) error {
	req, err := a.apiRequest(ctx, http.MethodGet, a.paths.Verify, key, nil)
	if err != nil {
		return err
	}
	ans, verr := a.send(req, opVerify, false, secret.NewScrubber(key))
	if verr != nil {
		return verr
	}
	// A 2xx that is not JSON (a proxy's page) says nothing of the key.
	if ans.Status != http.StatusNoContent && !json.Valid(ans.Body) {
		return a.malformedAnswer(opVerify, ans, "answer is not JSON")
	}
	return nil
}

// RevokeKey revokes the key keyID of cred's account (one DELETE of
// KeyPaths.Revoke, authenticated by cred.APIKey). It is idempotent: a 404
// or 410, a key already revoked or unknown (to HealthSync, a key of another
// account too), is success. Authenticate with the key that stays: a key
// revoked already cannot authenticate (ClassRevoked).
func (a *Adapter) RevokeKey(ctx context.Context, cred vendors.Credential, keyID string) error {
	if keyID == "" {
		return errors.New("healthsync: revoke key: no key id")
	}
	path := strings.ReplaceAll(a.paths.Revoke, "{id}", url.PathEscape(keyID))
	_, err := a.keyCall(ctx, opRevoke, http.MethodDelete, path, cred.APIKey, nil, nil)
	var ve *vendors.Error
	if errors.As(err, &ve) && (ve.Status == http.StatusNotFound || ve.Status == http.StatusGone) {
		return nil
	}
	return err
}
