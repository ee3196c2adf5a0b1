package rotation_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/rotation"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
	"github.com/tokenrelay/tokenrelay/internal/testenv/storetest"
	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/vendors"
	"github.com/tokenrelay/tokenrelay/vendors/redox"
	"github.com/tokenrelay/tokenrelay/vendors/sandbox"
)

const (
	redoxVendor = "redox-dev"
	redoxCred   = "src-1"
	redoxClient = "client-1"
	keepOld     = 6 * time.Minute // token lifetime (5m) and a JWKS cache (1m)
)

type redoxBundle struct {
	*bundle
	sbURL   string
	jwksURL string
	adapter *redox.Adapter
	oldKey  secret.Value
}

func ecKey(t *testing.T) secret.Value {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	require.NoError(t, err)
	der, err := x509.MarshalPKCS8PrivateKey(k)
	require.NoError(t, err)
	return secret.New(string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})))
}

// setupRedox is a Redox sandbox, a store holding one credential signing
// with an ES384 key, and the JWKS the worker serves for it, which the
// sandbox has fetched once (as Redox does when the JWKS URL is registered).
func setupRedox(t *testing.T) *redoxBundle {
	t.Helper()
	clock := testenv.NewClock(storetest.T0)
	sb := sandbox.New(sandbox.Options{Clock: clock.Now})
	srv := httptest.NewServer(sb.Handler())
	t.Cleanup(srv.Close)
	st, rdb := storetest.New(t, clock.Now)
	oldKey := ecKey(t)
	_, err := st.Upsert(t.Context(), store.NewCredential{ID: redoxCred, Vendor: redoxVendor, ClientID: redoxClient,
		Keys: store.Keys{PrivateKey: oldKey, KeyID: "kid-old"}})
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.Handle("GET /jwks/{vendor}/{credential}", redox.JWKSHandler(rotation.JWKSKeys(st, func(v string) bool { return v == redoxVendor })))
	jwksSrv := httptest.NewServer(mux)
	t.Cleanup(jwksSrv.Close)
	a, err := redox.New(redox.Options{BaseURL: srv.URL + sandbox.RedoxPath, Clock: clock.Now, HTTPClient: &http.Client{Timeout: 10 * time.Second}})
	require.NoError(t, err)
	b := &redoxBundle{bundle: &bundle{clock: clock, sb: sb, st: st, rdb: rdb}, sbURL: srv.URL,
		jwksURL: jwksSrv.URL + "/jwks/" + redoxVendor + "/" + redoxCred, adapter: a, oldKey: oldKey}
	b.fetchJWKS(t)
	require.Equal(t, []string{"kid-old"}, sb.RedoxKeyIDs(redoxClient))
	return b
}

// fetchJWKS has the sandbox fetch the credential's JWKS, through its
// control route, as Redox does on its own schedule.
func (b *redoxBundle) fetchJWKS(t *testing.T) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"url": b.jwksURL})
	req, err := http.NewRequest(http.MethodPut, b.sbURL+sandbox.ControlPath+"redox/clients/"+redoxClient+"/jwks", bytes.NewReader(body))
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, string(raw))
}

// published is the kids of the JWKS the worker serves.
func (b *redoxBundle) published(t *testing.T) []string {
	t.Helper()
	resp, err := http.Get(b.jwksURL)
	require.NoError(t, err)
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil
	}
	var set struct {
		Keys []struct {
			KID string `json:"kid"`
			D   string `json:"d"`
		} `json:"keys"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&set))
	var kids []string
	for _, k := range set.Keys {
		require.Empty(t, k.D, "never a private key in the JWKS")
		kids = append(kids, k.KID)
	}
	slices.Sort(kids)
	return kids
}

func (b *redoxBundle) rotator(t *testing.T, announce bool) *rotation.Rotator {
	t.Helper()
	keys := rotation.RedoxKeys{Tokens: b.adapter}
	if announce {
		keys.Announce = func(context.Context, vendors.Credential) error { b.fetchJWKS(t); return nil }
	}
	v := rotation.Vendor{Keys: keys, RevokeOldAfter: keepOld, RotateEvery: every}
	r, err := rotation.New(rotation.Options{Store: b.st, Owner: "w", Hold: lease, Clock: b.clock.Now,
		Vendor: func(name string) (rotation.Vendor, bool) { return v, name == redoxVendor }})
	require.NoError(t, err)
	return r
}

func (b *redoxBundle) token(key secret.Value, kid string) error {
	_, err := b.adapter.Token(context.Background(), vendors.Credential{ID: redoxCred, ClientID: redoxClient, PrivateKey: key, KeyID: kid})
	return err
}

// TestRedoxSigningKeyRotationThroughJWKS: the new key is published before it
// is used, the old one stays published until tokens made with it have
// expired, then only the new one is; Redox (the sandbox, fetching the
// JWKS) accepts each key exactly while it is published.
func TestRedoxSigningKeyRotationThroughJWKS(t *testing.T) {
	t.Parallel()
	b := setupRedox(t)
	ctx := t.Context()

	rot, err := b.rotator(t, true).Rotate(ctx, redoxCred)
	var wait *rotation.WaitError
	require.ErrorAs(t, err, &wait, "the old key is kept after the switch")
	require.Equal(t, store.RotationSwitched, rot.Step)
	require.Equal(t, b.clock.Now().Add(keepOld).UnixMilli(), wait.Until.UnixMilli())
	newKID := rot.NewKeyID
	require.Equal(t, []string{"kid-old", newKID}, b.published(t))
	require.Equal(t, []string{"kid-old", newKID}, b.sb.RedoxKeyIDs(redoxClient))

	cred, err := b.st.Get(ctx, redoxCred)
	require.NoError(t, err)
	require.Equal(t, newKID, cred.KeyID, "switched: assertions are signed with the new key")
	require.Equal(t, redoxClient, cred.ClientID)
	require.NoError(t, b.token(cred.PrivateKey, cred.KeyID))
	require.NoError(t, b.token(b.oldKey, "kid-old"), "the old key still works while it is published")

	// Too early: still waiting.
	b.clock.Advance(keepOld - time.Second)
	_, err = b.rotator(t, true).Rotate(ctx, redoxCred)
	require.ErrorAs(t, err, &wait)

	b.clock.Advance(time.Second)
	rot, err = b.rotator(t, true).Rotate(ctx, redoxCred)
	require.NoError(t, err)
	require.Equal(t, store.RotationDone, rot.Step)
	require.Equal(t, []string{newKID}, b.published(t), "the old key is dropped from the JWKS")
	b.fetchJWKS(t)
	require.Equal(t, []string{newKID}, b.sb.RedoxKeyIDs(redoxClient))
	require.True(t, vendors.IsRevoked(b.token(b.oldKey, "kid-old")), "Redox refuses the old key once it is dropped")
	require.NoError(t, b.token(cred.PrivateKey, cred.KeyID))

	evs := b.outbox(t)
	require.Len(t, evs, 2)
	require.Equal(t, events.TypeKeyRotated, evs[0].Type)
	var rotated events.KeyRotated
	require.NoError(t, json.Unmarshal(evs[0].Data, &rotated))
	require.Equal(t, b.oldKey.Fingerprint(), rotated.OldKeyFingerprint)
	require.Equal(t, cred.PrivateKey.Fingerprint(), rotated.NewKeyFingerprint)
	require.Equal(t, events.TypeKeyRevoked, evs[1].Type)
	var revoked events.KeyRevoked
	require.NoError(t, json.Unmarshal(evs[1].Data, &revoked))
	require.Equal(t, events.ReasonRotated, revoked.Reason)
	require.Equal(t, b.oldKey.Fingerprint(), revoked.KeyFingerprint)
	raw := b.rawOutbox(t)
	require.NotContains(t, raw, "PRIVATE KEY")
}

// TestRedoxNewKeyNotFetchedYet: until Redox has fetched the JWKS holding the
// new key, verification fails without giving the rotation up, the old key
// is kept and used, and the new key stays published; once Redox fetched
// it, the rotation resumes.
func TestRedoxNewKeyNotFetchedYet(t *testing.T) {
	t.Parallel()
	b := setupRedox(t)
	ctx := t.Context()
	rot, err := b.rotator(t, false).Rotate(ctx, redoxCred)
	require.ErrorIs(t, err, rotation.ErrNotAcceptedYet)
	require.NotErrorIs(t, err, rotation.ErrAborted)
	require.Equal(t, store.RotationCreated, rot.Step)
	require.Equal(t, []string{"kid-old", rot.NewKeyID}, b.published(t), "the new key is published before it is used")
	cred, err := b.st.Get(ctx, redoxCred)
	require.NoError(t, err)
	require.Equal(t, "kid-old", cred.KeyID)
	require.NoError(t, b.token(b.oldKey, "kid-old"))

	b.fetchJWKS(t)
	again, err := b.rotator(t, false).Rotate(ctx, redoxCred)
	var wait *rotation.WaitError
	require.ErrorAs(t, err, &wait)
	require.Equal(t, rot.ID, again.ID, "the same rotation, resumed")
	require.Equal(t, rot.NewKeyID, again.NewKeyID, "no second key")
	require.Equal(t, store.RotationSwitched, again.Step)
}

// TestRedoxSharedSecretCannotRotate: an HS384 credential has nothing to
// publish; the rotation is given up at once and nothing changes.
func TestRedoxSharedSecretCannotRotate(t *testing.T) {
	t.Parallel()
	b := setupRedox(t)
	ctx := t.Context()
	_, err := b.st.Upsert(ctx, store.NewCredential{ID: "hs384", Vendor: redoxVendor, ClientID: "client-2",
		Keys: store.Keys{ClientSecret: secret.New("a-shared-secret-of-enough-length-0123456789"), KeyID: "k"}})
	require.NoError(t, err)
	rot, err := b.rotator(t, true).Rotate(ctx, "hs384")
	require.ErrorIs(t, err, rotation.ErrAborted)
	require.Equal(t, store.RotationAborted, rot.Step)
	require.Contains(t, rot.LastError, "refused")
	require.Empty(t, b.outbox(t))
}
