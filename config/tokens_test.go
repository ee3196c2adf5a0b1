package config_test

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/secret"
)

// TestWeakHTTPTokensAreRefused: an admin or metrics token that could be
// guessed (shorter than 32 random bytes' worth, or repetitive) stops the
// configuration at start, without the token in the message; random ones
// of 32 bytes in base64, base64url or hex pass.
func TestWeakHTTPTokensAreRefused(t *testing.T) {
	t.Parallel()
	random := make([]byte, 32)
	_, _ = rand.Read(random)
	valid := func(admin, metrics string) error {
		cfg := &config.Config{SecretKey: secret.New(masterKey)}
		cfg.HTTP.AdminToken = secret.New(admin)
		cfg.HTTP.MetricsToken = secret.New(metrics)
		cfg.SetDefaults()
		return cfg.Validate()
	}
	for _, good := range []string{
		"", // not set: the admin API is off, /metrics is open
		base64.StdEncoding.EncodeToString(random),
		base64.RawURLEncoding.EncodeToString(random),
		hex.EncodeToString(random),
	} {
		require.NoError(t, valid(good, good), "%q", good)
	}
	for _, weak := range []string{
		"hunter2",
		"s3cret-admin-token-0123456789", // 29 characters
		base64.RawURLEncoding.EncodeToString(random)[:42], // one short of 32 bytes
		strings.Repeat("a", 64),
		strings.Repeat("abc123", 8),
	} {
		for _, path := range []string{"http.admin_token", "http.metrics_token"} {
			admin, metrics := weak, ""
			if path == "http.metrics_token" {
				admin, metrics = "", weak
			}
			err := valid(admin, metrics)
			require.Error(t, err, "%s %q accepted", path, weak)
			require.Contains(t, err.Error(), path+": ")
			require.NotContains(t, err.Error(), weak, "the message shows the token")
		}
	}
}
