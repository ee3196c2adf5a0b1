package kind

import (
	"time"

	"github.com/tokenrelay/tokenrelay/vendors"
	"github.com/tokenrelay/tokenrelay/vendors/fhirportal"
	"github.com/tokenrelay/tokenrelay/vendors/halaxy"
	"github.com/tokenrelay/tokenrelay/vendors/healthsync"
	"github.com/tokenrelay/tokenrelay/vendors/oauth2cc"
	"github.com/tokenrelay/tokenrelay/vendors/redox"
	"github.com/tokenrelay/tokenrelay/vendors/redoxlegacy"
)

// fhirJSON is the media type of FHIR servers.
const fhirJSON = "application/fhir+json"

// clientCredentials are the fields of an OAuth client.
var clientCredentials = Credentials{ClientID: Needed, ClientSecret: Needed}

// specs are the vendor kinds, in the order error messages list them.
var specs = []Spec{
	{
		Name:          halaxy.Kind,
		Regions:       map[string]string{"au": halaxy.BaseURLAU, "eu": halaxy.BaseURLEU},
		DefaultRegion: "au",
		RegionHint:    `au, or eu for EU and UK customers`,
		UserAgent: UserAgentRule{Required: true, Valid: halaxy.ValidUserAgent,
			Shape: `"NAME (EMAIL)"`, Example: `"Acme Sync (ops@acme.example)"`, Why: "as Halaxy asks"},
		Credentials: clientCredentials,
		// Halaxy claims an hour and honours 15 minutes.
		MaxTokenLifetime: 15 * time.Minute,
		RateLimit:        Rate{Limit: 500, Per: time.Minute},
		BudgetPerClient:  true,
		MediaType:        fhirJSON,
		New: func(o Options) (vendors.TokenSource, error) {
			return halaxy.New(halaxy.Options{BaseURL: o.BaseURL, UserAgent: o.UserAgent, HTTPClient: o.HTTPClient})
		},
	},
	{
		Name:               redox.Kind,
		Regions:            redoxRegions,
		DefaultRegion:      "us",
		RegionHint:         `us, or ca for Canada`,
		Credentials:        Credentials{ClientID: Needed, KeyID: Needed, ClientSecret: Optional, PrivateKey: Optional, KeyOrSecret: true},
		MaxTokenLifetime:   5 * time.Minute,
		Rotation:           RotateSigningKeys,
		WebhookTokenHeader: "verification-token",
		WebhookHandshake:   true,
		New: func(o Options) (vendors.TokenSource, error) {
			return redox.New(redox.Options{BaseURL: o.BaseURL, TokenURL: o.TokenURL, Scopes: o.Scopes,
				HTTPClient: o.HTTPClient, VendorName: o.VendorName})
		},
	},
	{
		Name:          redoxlegacy.Kind,
		Regions:       redoxRegions,
		DefaultRegion: "us",
		RegionHint:    `us, or ca for Canada`,
		Modes:         []string{string(redoxlegacy.ModeReauthenticate), string(redoxlegacy.ModeRefresh)},
		// The API key and its secret.
		Credentials:      clientCredentials,
		MaxTokenLifetime: 24 * time.Hour,
		// A legacy key's secret is regenerated in Redox's dashboard: there
		// is no API to rotate it.
		Rotation:           NoRotation,
		WebhookTokenHeader: "verification-token",
		WebhookHandshake:   true,
		New: func(o Options) (vendors.TokenSource, error) {
			return redoxlegacy.New(redoxlegacy.Options{BaseURL: o.BaseURL, UserAgent: o.UserAgent,
				HTTPClient: o.HTTPClient, VendorName: o.VendorName, Mode: redoxlegacy.Mode(o.Mode)})
		},
	},
	{
		Name:        healthsync.Kind,
		Regions:     map[string]string{"": healthsync.BaseURLProduction},
		HasKeyPaths: true,
		Modes: []string{string(healthsync.ModeAPIKey), string(healthsync.ModeOAuth),
			string(healthsync.ModeServiceAccount)},
		Credentials: Credentials{APIKey: Needed},
		ModeCredentials: map[string]Credentials{
			// A user's delegation (a public client has no secret).
			string(healthsync.ModeOAuth):          {ClientID: Needed, ClientSecret: Optional, RefreshToken: Needed},
			string(healthsync.ModeServiceAccount): clientCredentials,
		},
		// HealthSync counts requests per plan and hour.
		FixedWindow: true,
		// Its records are not FHIR: GET records?updated_since=<RFC 3339>.
		SinceParam: "updated_since",
		// Only API keys are rotated, every 90 days as HealthSync advises.
		Rotation:       RotateAPIKeys,
		RotatingModes:  []string{string(healthsync.ModeAPIKey)},
		RotateEvery:    90 * 24 * time.Hour,
		APIKeyLifetime: healthsync.APIKeyVerifyPeriod,
		New: func(o Options) (vendors.TokenSource, error) {
			return healthsync.New(healthsync.Options{BaseURL: o.BaseURL, TokenURL: o.TokenURL, Scopes: o.Scopes,
				UserAgent: o.UserAgent, HTTPClient: o.HTTPClient, VendorName: o.VendorName,
				Mode: healthsync.Mode(o.Mode), KeyPaths: o.KeyPaths})
		},
	},
	{
		Name:        fhirportal.Kind,
		Credentials: clientCredentials,
		MediaType:   fhirJSON,
		New: func(o Options) (vendors.TokenSource, error) {
			return fhirportal.New(fhirportal.Options{BaseURL: o.BaseURL, TokenURL: o.TokenURL, Scopes: o.Scopes,
				UserAgent: o.UserAgent, HTTPClient: o.HTTPClient, VendorName: o.VendorName})
		},
	},
	{
		Name:             oauth2cc.Kind,
		RequiresTokenURL: true,
		Credentials:      clientCredentials,
		New: func(o Options) (vendors.TokenSource, error) {
			return oauth2cc.New(oauth2cc.Options{TokenURL: o.TokenURL, Scopes: o.Scopes, UserAgent: o.UserAgent,
				HTTPClient: o.HTTPClient, VendorName: o.VendorName})
		},
	},
}

var redoxRegions = map[string]string{"us": redox.BaseURLUS, "ca": redox.BaseURLCA}
