package config_test

import (
	"bytes"
	"encoding/base64"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/config"
)

func b64Key(b byte, n int) string {
	return base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{b}, n))
}

// TestMasterKeysFromEnv: previous keys and KMS-wrapped keys are read from
// the environment; a duplicate, a key of the wrong size, or a wrapped key
// without a KMS is refused naming the variable (and never the key).
func TestMasterKeysFromEnv(t *testing.T) {
	t.Parallel()
	parse := func(env map[string]string) (*config.Config, error) {
		return config.Parse(nil, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	}
	cfg, err := parse(map[string]string{
		config.EnvSecretKey:          b64Key(1, 32),
		config.EnvSecretKeysPrevious: b64Key(2, 32) + ", " + b64Key(3, 32),
	})
	require.NoError(t, err)
	require.Len(t, cfg.SecretKeysPrevious, 2)
	require.Equal(t, string(bytes.Repeat([]byte{3}, 32)), cfg.SecretKeysPrevious[1].Reveal())

	cfg, err = parse(map[string]string{
		config.EnvKMSURL:                    "awskms:///alias/tokenrelay",
		config.EnvSecretKeyWrapped:          base64.StdEncoding.EncodeToString([]byte("wrapped-1")),
		config.EnvSecretKeysPreviousWrapped: base64.StdEncoding.EncodeToString([]byte("wrapped-0")),
	})
	require.NoError(t, err)
	require.True(t, cfg.SecretKey.IsZero(), "unwrapped at start, not by config")
	require.Equal(t, config.KMS{URL: "awskms:///alias/tokenrelay", Wrapped: []byte("wrapped-1"), PreviousWrapped: [][]byte{[]byte("wrapped-0")}}, cfg.KMS)

	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"previous same as current", map[string]string{config.EnvSecretKey: b64Key(1, 32), config.EnvSecretKeysPrevious: b64Key(1, 32)},
			"TOKENRELAY_SECRET_KEYS_PREVIOUS (key 1): is the same key as TOKENRELAY_SECRET_KEY: list each key once"},
		{"previous twice", map[string]string{config.EnvSecretKey: b64Key(1, 32), config.EnvSecretKeysPrevious: b64Key(2, 32) + "," + b64Key(2, 32)},
			"TOKENRELAY_SECRET_KEYS_PREVIOUS (key 2): is the same key as TOKENRELAY_SECRET_KEYS_PREVIOUS (key 1)"},
		{"previous too short", map[string]string{config.EnvSecretKey: b64Key(1, 32), config.EnvSecretKeysPrevious: b64Key(2, 32) + "," + b64Key(4, 16)},
			"TOKENRELAY_SECRET_KEYS_PREVIOUS (key 2): decodes to 16 bytes, want 32"},
		{"previous not base64", map[string]string{config.EnvSecretKey: b64Key(1, 32), config.EnvSecretKeysPrevious: "not*base64"},
			"TOKENRELAY_SECRET_KEYS_PREVIOUS (key 1): not valid base64"},
		{"wrapped without KMS", map[string]string{config.EnvSecretKeyWrapped: "d3JhcHBlZA=="},
			"TOKENRELAY_KMS_URL: not set, but wrapped master keys are given"},
		{"KMS without wrapped key", map[string]string{config.EnvSecretKey: b64Key(1, 32), config.EnvKMSURL: "awskms:///alias/x"},
			"TOKENRELAY_KMS_URL: set, but no wrapped master key is"},
		{"both current keys", map[string]string{config.EnvSecretKey: b64Key(1, 32), config.EnvSecretKeyWrapped: "d3JhcHBlZA==", config.EnvKMSURL: "awskms:///alias/x"},
			"TOKENRELAY_SECRET_KEY: set together with TOKENRELAY_SECRET_KEY_WRAPPED"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := parse(tc.env)
			require.ErrorContains(t, err, tc.want)
			require.NotContains(t, err.Error(), b64Key(1, 32))
			require.NotContains(t, err.Error(), b64Key(2, 32))
		})
	}
}
