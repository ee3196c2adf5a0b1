package config_test

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/secret"
)

// TestWebhookBoundsValidated: the bounds on what one webhook may cost
// (fetches per notification, the fetch rate, the catch-up width) and the
// dedup window that a signed id needs are checked at start.
func TestWebhookBoundsValidated(t *testing.T) {
	t.Parallel()
	minute := config.Duration(time.Minute)
	tests := []struct {
		name  string
		w     config.Webhooks
		field string // "" when valid
	}{
		{"defaults", config.Webhooks{}, ""},
		{"all set", config.Webhooks{MaxFetchesPerDelivery: 5, FetchRate: config.FetchRate{Limit: 10, Per: minute}, MaxCatchUp: 50}, ""},
		{"negative per delivery", config.Webhooks{MaxFetchesPerDelivery: -1}, "webhooks.max_fetches_per_delivery"},
		{"negative catch-up", config.Webhooks{MaxCatchUp: -1}, "webhooks.max_catch_up"},
		{"rate without window", config.Webhooks{FetchRate: config.FetchRate{Limit: 10}}, "webhooks.fetch_rate.per"},
		{"window without rate", config.Webhooks{FetchRate: config.FetchRate{Per: minute}}, "webhooks.fetch_rate.limit"},
		{"negative rate", config.Webhooks{FetchRate: config.FetchRate{Limit: -3, Per: minute}}, "webhooks.fetch_rate.limit"},
		{"per delivery above the rate", config.Webhooks{MaxFetchesPerDelivery: 11, FetchRate: config.FetchRate{Limit: 10, Per: minute}}, "webhooks.max_fetches_per_delivery"},
		{"dedup window shorter than a signature lives", config.Webhooks{Verify: config.VerifyStandardWebhooks, Secret: secret.New("whsec_c2VjcmV0"),
			Tolerance: config.Duration(10 * time.Minute), DedupWindow: config.Duration(15 * time.Minute)}, "webhooks.dedup_window"},
		{"dedup window twice the tolerance", config.Webhooks{Verify: config.VerifyStandardWebhooks, Secret: secret.New("whsec_c2VjcmV0"),
			Tolerance: config.Duration(10 * time.Minute), DedupWindow: config.Duration(20 * time.Minute)}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := &config.Config{
				Vendors: map[string]config.Vendor{
					"halaxy-eu": {Kind: config.KindHalaxy, Region: "eu", UserAgent: "Dev (dev@example.com)", Webhooks: tc.w},
				},
				Credentials: []config.Credential{{ID: "dev-1", Vendor: "halaxy-eu", ClientID: "id", ClientSecret: secret.New("secret")}},
				SecretKey:   secret.New(masterKey),
			}
			cfg.SetDefaults()
			err := cfg.Validate()
			if tc.field == "" {
				require.NoError(t, err)
				return
			}
			var ve *config.ValidationError
			require.True(t, errors.As(err, &ve), "%v", err)
			require.Len(t, ve.Problems, 1, "%v", err)
			require.Equal(t, "vendors.halaxy-eu."+tc.field, ve.Problems[0].Path)
		})
	}
}
