package config_test

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/secret"
)

// TestSyncsValidated: scheduled syncs name a configured vendor, a search
// path, a mode and an interval of at least a minute; limits are not negative.
func TestSyncsValidated(t *testing.T) {
	t.Parallel()
	hour := config.Duration(time.Hour)
	ok := config.ScheduledSync{Vendor: "halaxy-eu", Resource: "Patient", Every: hour}
	with := func(edit func(*config.ScheduledSync)) config.Syncs {
		s := ok
		edit(&s)
		return config.Syncs{Scheduled: []config.ScheduledSync{s}}
	}
	tests := []struct {
		name  string
		s     config.Syncs
		field string // "" when valid
	}{
		{"defaults", config.Syncs{}, ""},
		{"scheduled", config.Syncs{Scheduled: []config.ScheduledSync{ok}}, ""},
		{"negative cap", config.Syncs{MaxPages: -1}, "syncs.max_pages"},
		{"negative overlap", config.Syncs{Overlap: -1}, "syncs.overlap"},
		{"unknown vendor", with(func(s *config.ScheduledSync) { s.Vendor = "nope" }), "syncs.scheduled[0].vendor"},
		{"query in resource", with(func(s *config.ScheduledSync) { s.Resource = "Patient?_count=1" }), "syncs.scheduled[0].resource"},
		{"no resource", with(func(s *config.ScheduledSync) { s.Resource = "" }), "syncs.scheduled[0].resource"},
		{"bad mode", with(func(s *config.ScheduledSync) { s.Mode = "often" }), "syncs.scheduled[0].mode"},
		{"too often", with(func(s *config.ScheduledSync) { s.Every = config.Duration(time.Second) }), "syncs.scheduled[0].every"},
		{"bad credential", with(func(s *config.ScheduledSync) { s.Credentials = []string{"a b"} }), "syncs.scheduled[0].credentials[0]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := &config.Config{
				Vendors: map[string]config.Vendor{
					"halaxy-eu": {Kind: config.KindHalaxy, Region: "eu", UserAgent: "Dev (dev@example.com)"},
				},
				SecretKey: secret.New(masterKey),
				Syncs:     tc.s,
			}
			cfg.SetDefaults()
			err := cfg.Validate()
			if tc.field == "" {
				require.NoError(t, err)
				require.Equal(t, config.DefaultSyncMaxPages, cfg.Syncs.MaxPages)
				for _, s := range cfg.Syncs.Scheduled {
					require.Equal(t, "incremental", s.Mode)
				}
				return
			}
			var ve *config.ValidationError
			require.True(t, errors.As(err, &ve), "%v", err)
			require.Len(t, ve.Problems, 1, "%v", err)
			require.Equal(t, tc.field, ve.Problems[0].Path)
		})
	}
}
