package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/internal/masterkey"
	"github.com/tokenrelay/tokenrelay/internal/seal"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
	"github.com/tokenrelay/tokenrelay/secret"
)

func masterKey(b byte) []byte { return bytes.Repeat([]byte{b}, seal.KeySize) }

// TestKeysReseal runs the re-seal command after a master-key rotation: it
// prints its progress, exits 0 once nothing is left under the old key, and
// status then shows every value under the new key.
func TestKeysReseal(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb, prefix := testenv.RedisPrefix(t)
	ring, err := seal.NewKeyring(masterKey(1))
	require.NoError(t, err)
	st, err := store.New(rdb, store.Options{Prefix: prefix, Keyring: ring})
	require.NoError(t, err)
	for i := range 5 {
		_, err := st.Upsert(ctx, store.NewCredential{ID: fmt.Sprintf("clinic-%d", i), Vendor: "halaxy-au", ClientID: "cid",
			Keys: store.Keys{ClientSecret: secret.New("secret")}})
		require.NoError(t, err)
	}
	path := filepath.Join(t.TempDir(), "tokenrelay.yaml")
	require.NoError(t, os.WriteFile(path, fmt.Appendf(nil, "redis:\n  url: redis://%s/0\n  prefix: %q\n", testenv.RedisAddr(), prefix), 0o600))
	k1, k2 := seal.KeyID(masterKey(1)), seal.KeyID(masterKey(2))
	env := map[string]string{
		config.EnvSecretKey:          base64.StdEncoding.EncodeToString(masterKey(2)),
		config.EnvSecretKeysPrevious: base64.StdEncoding.EncodeToString(masterKey(1)),
	}
	run := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := keys(ctx, args, func(k string) (string, bool) { v, ok := env[k]; return v, ok }, nil, &out, &errOut)
		return code, out.String(), errOut.String()
	}

	code, out, _ := run("status", "-config", path)
	require.Equal(t, 0, code)
	require.Contains(t, out, "5 credentials, 5 sealed values\n")
	require.Contains(t, out, "key "+k1+" (previous): 5 values\n")
	require.Contains(t, out, "to re-seal: 5; cannot be opened: 0\n")

	code, out, stderr := run("reseal", "-config", path, "-batch", "2", "-every", "2")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, out, "re-sealing under key "+k2+" (keys held: "+k2+", "+k1+")\n")
	require.Contains(t, out, "pass 1: 5/5 credentials scanned, 5 values, 5 resealed, 0 conflicts, 0 failed, about 0 credentials remaining\n")
	require.Contains(t, out, "pass 2: 5/5 credentials scanned, 5 values, 0 resealed")
	require.True(t, strings.HasSuffix(out, "done: all 5 sealed values are under key "+k2+"; previous keys may be dropped\n"), out)
	require.Regexp(t, `pass 1: [1-4]/5 credentials scanned`, out, "progress is printed while a pass runs")

	// The old key dropped: status shows everything under the current key.
	delete(env, config.EnvSecretKeysPrevious)
	code, out, _ = run("status", "-config", path)
	require.Equal(t, 0, code)
	require.Contains(t, out, "key "+k2+" (current): 5 values\n")
	require.Contains(t, out, "to re-seal: 0; cannot be opened: 0\n")

	// A keyring that lacks the key: the command fails naming the key id.
	env[config.EnvSecretKey] = base64.StdEncoding.EncodeToString(masterKey(3))
	code, out, stderr = run("reseal", "-config", path)
	require.Equal(t, 1, code)
	require.Contains(t, out, "5 failed")
	require.Contains(t, stderr, "values are left that could not be sealed again: 5 values (key ids map["+k2+":5])")
}

// TestKeysWrap wraps a key given on stdin with a localsecrets KMS key and
// checks that the worker's configuration unwraps it to the same key.
func TestKeysWrap(t *testing.T) {
	t.Parallel()
	kms := "base64key://" + base64.URLEncoding.EncodeToString(masterKey(7))
	var out, errOut bytes.Buffer
	stdin := strings.NewReader(base64.StdEncoding.EncodeToString(masterKey(4)) + "\n")
	code := keys(context.Background(), []string{"wrap", "-kms", kms, "-stdin"}, nil, stdin, &out, &errOut)
	require.Equal(t, 0, code, errOut.String())
	require.Contains(t, errOut.String(), "key id "+seal.KeyID(masterKey(4)))
	wrapped, err := base64.StdEncoding.DecodeString(strings.TrimSpace(out.String()))
	require.NoError(t, err)
	require.NotContains(t, out.String(), base64.StdEncoding.EncodeToString(masterKey(4)))

	cfg, err := config.Parse(nil, func(k string) (string, bool) {
		v, ok := map[string]string{config.EnvKMSURL: kms, config.EnvSecretKeyWrapped: strings.TrimSpace(out.String())}[k]
		return v, ok
	})
	require.NoError(t, err)
	require.Equal(t, wrapped, cfg.KMS.Wrapped)
	ring, err := masterkey.Keyring(context.Background(), cfg)
	require.NoError(t, err)
	require.Equal(t, seal.KeyID(masterKey(4)), ring.CurrentKeyID(), "the worker unwraps the very key that was wrapped")
}
