package app_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/vendors/redox"
	"github.com/tokenrelay/tokenrelay/vendors/sandbox"
)

// TestMixedFleetRenewsEveryKind runs credentials of every vendor kind
// through the same scheduler and worker: each renews, never with more than
// one token call per renewal, and no token is used after it expired.
func TestMixedFleetRenewsEveryKind(t *testing.T) {
	if testing.Short() {
		t.Skip("integration run")
	}
	t.Parallel()
	const lifetime = 3 * time.Second
	p := newPipeline(t, 4, lifetime, "") // two halaxy-au, one portal (oauth2) ... as the dev mode makes them
	p.sandbox.SetRedoxLegacyTokenLifetime(lifetime)
	p.sandbox.SetHealthSyncPlan("acct-1", 1_000_000)
	vendor := func(kind config.Kind, path string) config.Vendor {
		return config.Vendor{Kind: kind, BaseURL: p.sbURL + path, MaxTokenLifetime: config.Duration(lifetime),
			RefreshAt: 2.0 / 3.0, RefreshJitter: 0.1}
	}
	p.cfg.Vendors["redox-dev"] = vendor(config.KindRedox, sandbox.RedoxPath)
	p.cfg.Vendors["redox-old"] = vendor(config.KindRedoxLegacy, sandbox.RedoxLegacyPath)
	p.cfg.Vendors["healthsync"] = vendor(config.KindHealthSync, sandbox.HealthSyncPath)
	p.cfg.Vendors["patients"] = vendor(config.KindFHIRPortal, sandbox.FHIRPortalPath)

	add := func(c config.Credential) {
		p.cfg.Credentials = append(p.cfg.Credentials, c)
	}
	for i := range 2 {
		// Redox: an ES384 key whose public half is registered with Redox.
		key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		require.NoError(t, err)
		der, err := x509.MarshalPKCS8PrivateKey(key)
		require.NoError(t, err)
		pemKey := secret.New(string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})))
		kid := fmt.Sprintf("kid-%d", i)
		jwk, err := redox.PublicJWK(pemKey, kid)
		require.NoError(t, err)
		clientID := fmt.Sprintf("redox-client-%d", i)
		require.NoError(t, p.sandbox.AddRedoxKey(clientID, kid, jwk))
		add(config.Credential{ID: fmt.Sprintf("source-%d", i), Vendor: "redox-dev", ClientID: clientID, PrivateKey: pemKey, KeyID: kid})

		apiKey, legacySecret := fmt.Sprintf("legacy-key-%d", i), fmt.Sprintf("legacy-secret-%d", i)
		p.sandbox.AddClient(apiKey, legacySecret)
		add(config.Credential{ID: fmt.Sprintf("legacy-%d", i), Vendor: "redox-old", ClientID: apiKey, ClientSecret: secret.New(legacySecret)})

		_, hsKey := p.sandbox.AddHealthSyncKey("acct-1", []string{"read"})
		add(config.Credential{ID: fmt.Sprintf("hs-%d", i), Vendor: "healthsync", APIKey: secret.New(hsKey)})

		portalKey, portalSecret := fmt.Sprintf("portal-key-%d", i), fmt.Sprintf("portal-secret-%d", i)
		p.sandbox.AddClient(portalKey, portalSecret)
		add(config.Credential{ID: fmt.Sprintf("patient-x%d", i), Vendor: "patients", ClientID: portalKey, ClientSecret: secret.New(portalSecret)})
	}
	p.cfg.SetDefaults()
	require.NoError(t, p.cfg.Validate())

	sched := p.scheduler()
	work := p.worker()
	p.waitGenerations(3, time.Minute)

	// The worker publishes the JWKS each Redox credential signs with.
	hc := testenv.HTTPClient()
	resp, err := hc.Get("http://" + work.addr + "/jwks/redox-dev/source-0")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	require.Contains(t, string(body), `"kid":"kid-0"`)
	require.NotContains(t, string(body), `"d":`)
	resp, err = hc.Get("http://" + work.addr + "/jwks/halaxy-au/clinic-01")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNotFound, resp.StatusCode)

	work.stop(t)
	p.waitOutboxEmpty()
	sched.stop(t)

	sums := p.summaries()
	require.Len(t, sums, len(p.cfg.Credentials))
	for _, c := range p.cfg.Credentials {
		s := sums[c.ID]
		require.Equal(t, store.StateActive, s.State, "credential %s (%s): %s", c.ID, c.Vendor, s.LastError)
		if c.Vendor != "healthsync" { // an API key has no token endpoint: it is verified by a read
			require.Equal(t, int(s.Generation), p.sandbox.TokenCalls(c.ClientID), "credential %s (%s)", c.ID, c.Vendor)
		}
	}
	require.Zero(t, p.sandbox.ExpiredUses())
	p.checkRenewals(p.readStream(p.inspect.JS), sums)
}
