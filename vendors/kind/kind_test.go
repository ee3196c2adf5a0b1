package kind_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/vendors/fhirportal"
	"github.com/tokenrelay/tokenrelay/vendors/halaxy"
	"github.com/tokenrelay/tokenrelay/vendors/healthsync"
	"github.com/tokenrelay/tokenrelay/vendors/kind"
	"github.com/tokenrelay/tokenrelay/vendors/oauth2cc"
	"github.com/tokenrelay/tokenrelay/vendors/redox"
	"github.com/tokenrelay/tokenrelay/vendors/redoxlegacy"
)

// TestEveryAdapterHasOneSpec: each adapter's kind is described exactly
// once, and its description builds that adapter.
func TestEveryAdapterHasOneSpec(t *testing.T) {
	t.Parallel()
	adapters := []string{halaxy.Kind, redox.Kind, redoxlegacy.Kind, healthsync.Kind, fhirportal.Kind, oauth2cc.Kind}
	require.ElementsMatch(t, adapters, kind.Names())
	for _, name := range adapters {
		s, ok := kind.Lookup(name)
		require.True(t, ok, name)
		require.Equal(t, name, s.Name)
		require.NotNil(t, s.New, name)
	}
	_, ok := kind.Lookup("halaxi")
	require.False(t, ok)
}

// TestEachRegionBuilds: the base URL of every region of every kind is one
// its adapter accepts, with the least options the kind needs.
func TestEachRegionBuilds(t *testing.T) {
	t.Parallel()
	for _, s := range kind.All() {
		regions := s.Regions
		if len(regions) == 0 {
			regions = map[string]string{"": "https://api.example/v1/"}
		}
		for region, base := range regions {
			opts := kind.Options{VendorName: "v", BaseURL: base, UserAgent: "Acme Sync (ops@acme.example)"}
			if s.RequiresTokenURL {
				opts.TokenURL = "https://auth.example/token"
			}
			a, err := s.New(opts)
			require.NoError(t, err, "%s region %q", s.Name, region)
			require.NotNil(t, a)
		}
		if s.DefaultRegion != "" {
			require.NotEmpty(t, s.Regions[s.DefaultRegion], "%s: default region without a base URL", s.Name)
		}
	}
}

// TestRotatesIn: which vendors rotate keys, and how. HealthSync rotates
// API keys in mode api_key only (its default); Redox publishes signing
// keys; the others cannot rotate.
func TestRotatesIn(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		kind, mode string
		want       kind.Rotation
	}{
		{healthsync.Kind, "", kind.RotateAPIKeys},
		{healthsync.Kind, string(healthsync.ModeAPIKey), kind.RotateAPIKeys},
		{healthsync.Kind, string(healthsync.ModeOAuth), kind.NoRotation},
		{healthsync.Kind, string(healthsync.ModeServiceAccount), kind.NoRotation},
		{redox.Kind, "", kind.RotateSigningKeys},
		{redoxlegacy.Kind, "", kind.NoRotation},
		{halaxy.Kind, "", kind.NoRotation},
		{fhirportal.Kind, "", kind.NoRotation},
		{oauth2cc.Kind, "", kind.NoRotation},
	} {
		s, ok := kind.Lookup(tc.kind)
		require.True(t, ok)
		require.Equal(t, tc.want, s.RotatesIn(tc.mode), "%s in mode %q", tc.kind, tc.mode)
	}
	require.Equal(t, "healthsync and redox", kind.RotatingKinds())
}

// TestCredentialsIn: a kind's mode may need other credential fields than
// its default mode.
func TestCredentialsIn(t *testing.T) {
	t.Parallel()
	hs, _ := kind.Lookup(healthsync.Kind)
	c, byMode := hs.CredentialsIn("")
	require.False(t, byMode)
	require.Equal(t, kind.Needed, c.APIKey)
	c, byMode = hs.CredentialsIn(string(healthsync.ModeOAuth))
	require.True(t, byMode)
	require.Equal(t, kind.Credentials{ClientID: kind.Needed, ClientSecret: kind.Optional, RefreshToken: kind.Needed}, c)
}

// TestSince: FHIR kinds are asked _lastUpdated=gt<instant>, HealthSync
// updated_since=<instant>.
func TestSince(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 7, 4, 5, 6, 7000000, time.FixedZone("AEDT", 11*3600))
	for name, want := range map[string][2]string{
		halaxy.Kind:     {"_lastUpdated", "gt2026-12-06T17:05:06.007Z"},
		fhirportal.Kind: {"_lastUpdated", "gt2026-12-06T17:05:06.007Z"},
		healthsync.Kind: {"updated_since", "2026-12-06T17:05:06.007Z"},
	} {
		s, ok := kind.Lookup(name)
		require.True(t, ok)
		n, v := s.Since(at)
		require.Equal(t, want, [2]string{n, v}, name)
	}
}
