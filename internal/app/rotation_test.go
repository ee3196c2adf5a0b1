package app_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/adminclient"
	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/vendors/sandbox"
)

// TestRotateNowAndRevokeAtVendor asks a running worker, through the admin
// API, to rotate a HealthSync API key now, then revokes the credential: the
// rotation runs on the queue (the vendor ends with the old key revoked and
// one live key, the one the credential holds), the stream carries
// key.rotated then key.revoked (reason rotated), and the operator's
// revocation revokes the key at HealthSync too (key.revoked, reason
// revoked_by_operator). No key appears in the stream or the logs.
func TestRotateNowAndRevokeAtVendor(t *testing.T) {
	if testing.Short() {
		t.Skip("integration run")
	}
	t.Parallel()
	const lifetime = 3 * time.Second
	p := newPipeline(t, 1, lifetime, "")
	p.sandbox.SetHealthSyncPlan("acct-r", -1)
	p.cfg.HTTP.AdminToken = secret.New("admin-token-r-0123456789abcdefghijklmnopqrstuvwxyz")
	p.cfg.Vendors["healthsync"] = config.Vendor{Kind: config.KindHealthSync, BaseURL: p.sbURL + sandbox.HealthSyncPath,
		RefreshAt: 2.0 / 3.0, RefreshJitter: 0.1}
	oldID, oldKey := p.sandbox.AddHealthSyncKey("acct-r", []string{"records:read", "patients:read"})
	p.cfg.Credentials = append(p.cfg.Credentials, config.Credential{ID: "hs-r", Vendor: "healthsync", APIKey: secret.New(oldKey)})
	p.cfg.SetDefaults()
	require.NoError(t, p.cfg.Validate())
	require.Equal(t, config.Duration(90*24*time.Hour), p.cfg.Vendors["healthsync"].RotateEvery)

	sched := p.scheduler()
	work := p.worker()
	ctx := context.Background()
	require.Eventually(t, func() bool {
		c, err := p.inspect.Store.Get(ctx, "hs-r")
		return err == nil && c.Generation >= 1
	}, 30*time.Second, 50*time.Millisecond, "the API key should be verified")
	due, ok, err := p.inspect.Store.RotationDue(ctx, "hs-r")
	require.NoError(t, err)
	require.True(t, ok, "the scheduler schedules the first rotation")
	require.WithinDuration(t, time.Now().Add(90*24*time.Hour), due, time.Minute)

	admin := &adminclient.Client{BaseURL: "http://" + work.addr, Token: secret.New("admin-token-r-0123456789abcdefghijklmnopqrstuvwxyz")}
	require.NoError(t, admin.Rotate(ctx, "hs-r"))
	var rot store.Rotation
	require.Eventually(t, func() bool {
		rot, err = p.inspect.Store.GetRotation(ctx, "hs-r")
		return err == nil && rot.Step == store.RotationDone
	}, 30*time.Second, 50*time.Millisecond, "the rotation should finish")
	keys := p.sandbox.HealthSyncKeys("acct-r")
	require.Len(t, keys, 2)
	require.Equal(t, oldID, keys[0].ID)
	require.True(t, keys[0].Revoked, "the old key is revoked")
	require.False(t, keys[1].Revoked)
	require.Equal(t, rot.NewKeyID, keys[1].ID)
	cred, err := p.inspect.Store.Get(ctx, "hs-r")
	require.NoError(t, err)
	newKey := cred.APIKey.Reveal()
	require.Equal(t, rot.NewFingerprint, cred.APIKey.Fingerprint())

	// A vendor that cannot rotate is refused with a reason.
	err = admin.Rotate(ctx, "clinic-01")
	var aerr *adminclient.Error
	require.ErrorAs(t, err, &aerr)
	require.Equal(t, 422, aerr.Status)

	// Revoke now: at HealthSync, then in the store.
	require.NoError(t, admin.Revoke(ctx, "hs-r", "clinic left"))
	for _, k := range p.sandbox.HealthSyncKeys("acct-r") {
		require.True(t, k.Revoked, "key %s is revoked at the vendor", k.ID)
	}
	_, ok, err = p.inspect.Store.RotationDue(ctx, "hs-r")
	require.NoError(t, err)
	require.False(t, ok, "a revoked credential is not rotated again")

	work.stop(t)
	p.waitOutboxEmpty()
	sched.stop(t)

	var got []string
	for _, e := range p.readStream(p.inspect.JS) {
		if !strings.HasSuffix(e.Env.Subject, ".hs-r") || e.Env.Type == events.TypeTokenRenewed {
			continue
		}
		require.NotContains(t, e.Raw, oldKey)
		require.NotContains(t, e.Raw, newKey)
		switch e.Env.Type {
		case events.TypeKeyRotated:
			var d events.KeyRotated
			require.NoError(t, json.Unmarshal(e.Env.Data, &d))
			require.Equal(t, secret.New(oldKey).Fingerprint(), d.OldKeyFingerprint)
			require.Equal(t, secret.New(newKey).Fingerprint(), d.NewKeyFingerprint)
			got = append(got, "rotated")
		case events.TypeKeyRevoked:
			var d events.KeyRevoked
			require.NoError(t, json.Unmarshal(e.Env.Data, &d))
			got = append(got, "revoked:"+d.Reason+":"+d.KeyFingerprint)
		default:
			got = append(got, e.Env.Type)
		}
	}
	require.Equal(t, []string{
		"rotated",
		"revoked:" + events.ReasonRotated + ":" + secret.New(oldKey).Fingerprint(),
		"revoked:" + events.ReasonRevokedByOperator + ":" + secret.New(newKey).Fingerprint(),
	}, got)
	logs := p.logs.String()
	require.NotContains(t, logs, oldKey)
	require.NotContains(t, logs, newKey)
}
