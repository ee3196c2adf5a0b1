package healthsync_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/vendors"
	"github.com/tokenrelay/tokenrelay/vendors/healthsync"
	"github.com/tokenrelay/tokenrelay/vendors/internal/vendortest"
	"github.com/tokenrelay/tokenrelay/vendors/sandbox"
)

// TestRotation walks HealthSync's rotation procedure through the adapter's
// operations, as the rotation job will: create a key with the same scopes,
// verify it with a real read, switch, revoke the old one.
func TestRotation(t *testing.T) {
	t.Parallel()
	b := setup(t, healthsync.ModeAPIKey, nil)
	ctx := t.Context()
	scopes := []string{"patients:read", "records:read"}
	oldID, oldKey := b.sb.AddHealthSyncKey(account, scopes)
	old := keyCred(oldKey)

	cur, err := b.adapter.CurrentKey(ctx, old.APIKey)
	require.NoError(t, err)
	require.Equal(t, oldID, cur.ID)
	require.Equal(t, scopes, cur.Scopes)
	require.Equal(t, vendortest.T0, cur.CreatedAt.UTC())
	require.True(t, cur.Key.IsZero())

	b.sb.Clock.Advance(time.Minute)
	created, err := b.adapter.CreateKey(ctx, old, cur.Scopes, "tokenrelay hs-main 2025-03-04")
	require.NoError(t, err)
	require.NotEmpty(t, created.ID)
	require.NotEqual(t, oldID, created.ID)
	require.False(t, created.Key.IsZero())
	require.Equal(t, scopes, created.Scopes, "same permissions as the old key")
	require.Equal(t, "tokenrelay hs-main 2025-03-04", created.Name)
	require.Equal(t, vendortest.T0.Add(time.Minute), created.CreatedAt.UTC())

	require.NoError(t, b.adapter.VerifyKey(ctx, created.Key))
	fresh := vendors.Credential{ID: "hs-main", APIKey: created.Key}

	listed, err := b.adapter.ListKeys(ctx, fresh)
	require.NoError(t, err)
	require.Len(t, listed, 2)
	require.Equal(t, []string{oldID, created.ID}, []string{listed[0].ID, listed[1].ID})
	for _, k := range listed {
		require.True(t, k.Key.IsZero(), "a listed key never carries its secret")
		require.Equal(t, scopes, k.Scopes)
		require.False(t, k.Revoked)
	}
	require.False(t, listed[0].LastUsedAt.IsZero())

	require.NoError(t, b.adapter.RevokeKey(ctx, fresh, oldID))
	require.NoError(t, b.adapter.RevokeKey(ctx, fresh, oldID), "revoking twice is success")
	require.NoError(t, b.adapter.RevokeKey(ctx, fresh, "key_never_existed"), "an unknown key is success")

	// The vendor-side key set: the old key revoked, the new one active.
	keys := b.sb.HealthSyncKeys(account)
	require.Len(t, keys, 2)
	require.Equal(t, oldID, keys[0].ID)
	require.True(t, keys[0].Revoked)
	require.Equal(t, vendortest.T0.Add(time.Minute), keys[0].RevokedAt)
	require.Equal(t, created.ID, keys[1].ID)
	require.False(t, keys[1].Revoked)
	require.Equal(t, scopes, keys[1].Scopes)

	// The old key is refused from now on; the new one works.
	_, err = b.adapter.Token(ctx, old)
	vendortest.RequireError(t, err, vendortest.Want{Vendor: "healthsync", Op: "verify key", Class: vendors.ClassRevoked, Status: 401})
	tok, err := b.adapter.Token(ctx, fresh)
	require.NoError(t, err)
	require.True(t, tok.AccessToken.Equal(created.Key))

	listed, err = b.adapter.ListKeys(ctx, fresh)
	require.NoError(t, err)
	require.True(t, listed[0].Revoked)
	require.Equal(t, vendortest.T0.Add(time.Minute), listed[0].RevokedAt.UTC())

	// Every operation was one request: current, create, verify, list,
	// revoke ×3, token ×2, list.
	require.Equal(t, 10, b.sent.calls())
}

func TestCreateKeyScopes(t *testing.T) {
	t.Parallel()
	b := setup(t, healthsync.ModeAPIKey, nil)
	ctx := t.Context()
	_, key := b.sb.AddHealthSyncKey(account, []string{"read", "records:write"})
	cred := keyCred(key)

	// Without scopes, the new key gets the authenticating key's.
	k, err := b.adapter.CreateKey(ctx, cred, nil, "")
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"read", "records:write"}, k.Scopes)

	// Fewer scopes are fine; "read" covers every resource's read.
	k, err = b.adapter.CreateKey(ctx, cred, []string{"patients:read"}, "narrow")
	require.NoError(t, err)
	require.Equal(t, []string{"patients:read"}, k.Scopes)

	// A key cannot grant what it lacks: rejected, not revoked.
	_, err = b.adapter.CreateKey(ctx, cred, []string{"delete"}, "wider")
	ve := vendortest.RequireError(t, err, vendortest.Want{Vendor: "healthsync", Op: "create key",
		Class: vendors.ClassRejected, Status: 403})
	require.Contains(t, ve.Error(), "insufficient_scope")
	vendortest.RequireNoSecret(t, err, key)

	_, err = b.adapter.CreateKey(ctx, cred, []string{"records:fly"}, "bad")
	vendortest.RequireError(t, err, vendortest.Want{Vendor: "healthsync", Op: "create key",
		Class: vendors.ClassRejected, Status: 400})
	require.Len(t, b.sb.HealthSyncKeys(account), 3)
}

func TestKeyManagementRefused(t *testing.T) {
	t.Parallel()
	b := setup(t, healthsync.ModeAPIKey, nil)
	ctx := t.Context()
	id, key := b.sb.AddHealthSyncKey(account, []string{"read"})
	require.True(t, b.sb.RevokeHealthSyncKey(id))
	cred := keyCred(key)
	want := func(op string) vendortest.Want {
		return vendortest.Want{Vendor: "healthsync", Op: op, Class: vendors.ClassRevoked, Status: 401}
	}

	_, err := b.adapter.CreateKey(ctx, cred, []string{"read"}, "x")
	vendortest.RequireError(t, err, want("create key"))
	vendortest.RequireNoSecret(t, err, key)
	_, err = b.adapter.ListKeys(ctx, cred)
	vendortest.RequireError(t, err, want("list keys"))
	_, err = b.adapter.CurrentKey(ctx, cred.APIKey)
	vendortest.RequireError(t, err, want("look up key"))
	err = b.adapter.VerifyKey(ctx, cred.APIKey)
	vendortest.RequireError(t, err, want("verify key"))
	err = b.adapter.RevokeKey(ctx, cred, id)
	vendortest.RequireError(t, err, want("revoke key"))
	require.Equal(t, 5, b.sent.calls())
	require.Equal(t, 5, b.sb.RevokedUses())
	require.Len(t, b.sb.HealthSyncKeys(account), 1, "nothing created")

	// No key, no request.
	_, err = b.adapter.ListKeys(ctx, vendors.Credential{})
	vendortest.RequireError(t, err, vendortest.Want{Vendor: "healthsync", Op: "list keys", Class: vendors.ClassRejected})
	require.Error(t, b.adapter.RevokeKey(ctx, keyCred("k"), ""))
	require.Equal(t, 5, b.sent.calls())
}

func TestKeyOfAnotherAccount(t *testing.T) {
	t.Parallel()
	b := setup(t, healthsync.ModeAPIKey, nil)
	otherID, _ := b.sb.AddHealthSyncKey("clinic-8", []string{"read"})
	_, key := b.sb.AddHealthSyncKey(account, []string{"read"})

	// HealthSync does not say the key exists: success, and the key lives.
	require.NoError(t, b.adapter.RevokeKey(t.Context(), keyCred(key), otherID))
	require.False(t, b.sb.HealthSyncKeys("clinic-8")[0].Revoked)
	listed, err := b.adapter.ListKeys(t.Context(), keyCred(key))
	require.NoError(t, err)
	require.Len(t, listed, 1)
}

// TestKeyManagementNeedsAPIKey: an OAuth or service-account token cannot
// manage keys.
func TestKeyManagementNeedsAPIKey(t *testing.T) {
	t.Parallel()
	b := setup(t, healthsync.ModeServiceAccount, nil)
	tok, err := b.adapter.Token(t.Context(), oauthClient)
	require.NoError(t, err)
	_, err = b.adapter.ListKeys(t.Context(), vendors.Credential{APIKey: tok.AccessToken})
	vendortest.RequireError(t, err, vendortest.Want{Vendor: "healthsync", Op: "list keys", Class: vendors.ClassRejected, Status: 403})
	vendortest.RequireNoSecret(t, err, tok.AccessToken.Reveal())
}

func TestKeyManagementFaults(t *testing.T) {
	t.Parallel()
	b := setup(t, healthsync.ModeAPIKey, nil)
	ctx := t.Context()
	keyID, key := b.sb.AddHealthSyncKey(account, []string{"read"})
	cred := keyCred(key)

	// A fault aimed at one key's requests (its id as the fault's client).
	require.NoError(t, b.sb.Inject(sandbox.Fault{ClientID: keyID, Endpoint: sandbox.EndpointPatient,
		Kind: sandbox.FaultServerError, Status: 502, Times: 1}))
	_, err := b.adapter.CreateKey(ctx, cred, nil, "x")
	vendortest.RequireError(t, err, vendortest.Want{Vendor: "healthsync", Op: "create key", Class: vendors.ClassServer, Status: 502})

	require.NoError(t, b.sb.Inject(sandbox.Fault{Endpoint: sandbox.EndpointPatient, Kind: sandbox.FaultMalformed, Times: 1}))
	_, err = b.adapter.CreateKey(ctx, cred, nil, "x")
	vendortest.RequireError(t, err, vendortest.Want{Vendor: "healthsync", Op: "create key", Class: vendors.ClassMalformed, Status: 200})

	require.NoError(t, b.sb.Inject(sandbox.Fault{Endpoint: sandbox.EndpointPatient, Kind: sandbox.FaultRateLimited,
		RetryAfter: 5 * time.Second, Times: 1}))
	err = b.adapter.RevokeKey(ctx, cred, "key_x")
	vendortest.RequireError(t, err, vendortest.Want{Vendor: "healthsync", Op: "revoke key", Class: vendors.ClassRateLimited,
		Status: 429, RetryAfter: 5 * time.Second})

	// net/http sends a GET again, once, on a fresh connection when a reused
	// one died before answering (harmless for a read; never done for a POST
	// or DELETE): the fault must hit both.
	require.NoError(t, b.sb.Inject(sandbox.Fault{Endpoint: sandbox.EndpointPatient, Kind: sandbox.FaultReset}))
	_, err = b.adapter.ListKeys(ctx, cred)
	vendortest.RequireError(t, err, vendortest.Want{Vendor: "healthsync", Op: "list keys", Class: vendors.ClassNetwork})
	b.sb.ClearFaults()

	require.Len(t, b.sb.HealthSyncKeys(account), 1, "no key created")
	require.Equal(t, 4, b.sent.calls())
}

// TestKeyAnswers covers key-management answers the sandbox does not give.
func TestKeyAnswers(t *testing.T) {
	t.Parallel()
	const leaked = "hs_live_LEAKED-KEY-0001"
	tests := []struct {
		name   string
		status int
		body   string
		call   func(context.Context, *healthsync.Adapter) error
		op     string
		class  string
	}{
		{"create without id", 201, `{"key":"` + leaked + `"}`, create, "create key", vendors.ClassMalformed},
		{"create without key", 201, `{"id":"key_1"}`, create, "create key", vendors.ClassMalformed},
		{"create not json", 201, `key=` + leaked, create, "create key", vendors.ClassMalformed},
		{"list without keys", 200, `{"data":[]}`, list, "list keys", vendors.ClassMalformed},
		{"list key without id", 200, `{"keys":[{"name":"x","key":"` + leaked + `"}]}`, list, "list keys", vendors.ClassMalformed},
		{"list with a bad time", 200, `{"keys":[{"id":"k","created_at":"yesterday"}]}`, list, "list keys", vendors.ClassMalformed},
		{"current without id", 200, `{}`, current, "look up key", vendors.ClassMalformed},
		{"verify not json", 200, `<html>Welcome to the hotel wifi</html>`, verify, "verify key", vendors.ClassMalformed},
		{"verify redirect", 302, ``, verify, "verify key", vendors.ClassRejected},
		{"verify not found", 404, `404 page not found`, verify, "verify key", vendors.ClassRejected},
		{"revoke gone", 410, ``, revoke, "", ""},
		{"revoke 403", 403, `{"error":"forbidden","message":"key management disabled"}`, revoke, "revoke key", vendors.ClassRejected},
		{"verify no content", 204, ``, verify, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := vendortest.ServeAnswer(t, vendortest.Answer{Status: tt.status, Body: tt.body,
				Header: map[string]string{"Location": "https://elsewhere.example/"}})
			a, err := healthsync.New(healthsync.Options{BaseURL: srv.URL + "/v1/"})
			require.NoError(t, err)
			err = tt.call(t.Context(), a)
			require.EqualValues(t, 1, srv.Calls())
			if tt.class == "" {
				require.NoError(t, err)
				return
			}
			vendortest.RequireError(t, err, vendortest.Want{Vendor: "healthsync", Op: tt.op, Class: tt.class, Status: tt.status})
			vendortest.RequireNoSecret(t, err, leaked, "the-key")
		})
	}
}

var theKey = keyCred("the-key")

func create(ctx context.Context, a *healthsync.Adapter) error {
	_, err := a.CreateKey(ctx, theKey, []string{"read"}, "n")
	return err
}

func list(ctx context.Context, a *healthsync.Adapter) error {
	_, err := a.ListKeys(ctx, theKey)
	return err
}

func current(ctx context.Context, a *healthsync.Adapter) error {
	_, err := a.CurrentKey(ctx, secret.New("the-key"))
	return err
}

func verify(ctx context.Context, a *healthsync.Adapter) error {
	return a.VerifyKey(ctx, secret.New("the-key"))
}

func revoke(ctx context.Context, a *healthsync.Adapter) error {
	return a.RevokeKey(ctx, theKey, "key_1")
}
