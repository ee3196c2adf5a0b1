package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/vendors/kind"
)

// TestAcceptedConfigsBuildTheirAdapters: every configuration in testdata
// that Parse accepts builds the adapter of each of its vendors, so that a
// configuration that passes validation starts. FuzzParse checks the same
// of every file it tries.
func TestAcceptedConfigsBuildTheirAdapters(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	require.NoError(t, err)
	kinds := map[config.Kind]bool{}
	accepted := 0
	for _, name := range files {
		data, err := os.ReadFile(name)
		require.NoError(t, err)
		cfg, err := config.Parse(data, lookup(baseEnv()))
		if err != nil {
			continue
		}
		accepted++
		for vname, v := range cfg.Vendors {
			_, err := v.NewAdapter(nil)
			require.NoError(t, err, "%s: vendors.%s passed validation but its adapter refuses it", name, vname)
			kinds[v.Kind] = true
		}
	}
	require.GreaterOrEqual(t, accepted, 5, "too few valid files to mean anything")
	for _, k := range config.Kinds() {
		require.True(t, kinds[k], "no valid file in testdata has a vendor of kind %s", k)
	}
}

// TestConfigRefusesWhatTheAdapterRefuses: values that config used to
// accept but the adapter refused at start are now refused by Parse, with a
// problem naming the field (or the vendor, for the adapter's own checks)
// and without quoting a password.
func TestConfigRefusesWhatTheAdapterRefuses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, vendor, want string
	}{
		{"halaxy user agent whose name ends with a space",
			`{kind: halaxy, user_agent: "Acme Sync  (ops@acme.example)"}`,
			`vendors.v.user_agent: "Acme Sync  (ops@acme.example)" must look like "NAME (EMAIL)", as Halaxy asks`},
		{"base url holding a password",
			`{kind: fhir-portal, base_url: "https://ops:s3cret-url-pw@fhir.example/r4/"}`,
			`vendors.v.base_url: must not have a query, fragment or user info`},
		{"redox token url with a query",
			`{kind: redox, token_url: "https://api.redoxengine.com/v2/auth/token?tenant=1"}`,
			`vendors.v: the redox adapter refuses it: redox: token_url "https://api.redoxengine.com/v2/auth/token?tenant=1" must not have a query, fragment or user info`},
		{"healthsync token url holding a password",
			`{kind: healthsync, token_url: "https://ops:s3cret-url-pw@auth.healthsync.example/token"}`,
			`vendors.v: the healthsync adapter refuses it: healthsync: token_url "https://ops:xxxxx@auth.healthsync.example/token" is not an http(s) URL`},
		{"healthsync key path outside base_url",
			`{kind: healthsync, key_paths: {create: "https://elsewhere.example/keys"}}`,
			`vendors.v: the healthsync adapter refuses it: healthsync: key_paths.create`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := config.Parse([]byte("vendors:\n  v: "+tc.vendor+"\n"), lookup(baseEnv()))
			require.Error(t, err)
			var ve *config.ValidationError
			require.True(t, errors.As(err, &ve))
			require.Len(t, ve.Problems, 1, "%v", err)
			require.Contains(t, err.Error(), tc.want)
			require.NotContains(t, err.Error(), "s3cret")
		})
	}
}

// TestConfigHalaxyUserAgentIsTheAdapters: every user_agent the halaxy
// adapter refuses, config refuses too, naming the field (config also
// refuses control characters, which no adapter should send).
func TestConfigHalaxyUserAgentIsTheAdapters(t *testing.T) {
	t.Parallel()
	spec, ok := kind.Lookup(string(config.KindHalaxy))
	require.True(t, ok)
	for _, ua := range []string{"Acme Sync (ops@acme.example)", "Acme Sync  (ops@acme.example)", "Acme Sync (ops)",
		"(ops@acme.example)", "A (a@b)", "Acme\tSync (ops@acme.example)", "Acme Sync (ops@acme.example) "} {
		v := config.Vendor{Name: "v", Kind: config.KindHalaxy, UserAgent: ua}
		cfg := &config.Config{Vendors: map[string]config.Vendor{"v": v}, SecretKey: secret.New(masterKey)}
		cfg.SetDefaults()
		cfgErr := cfg.Validate()
		_, adapterErr := spec.New(cfg.Vendors["v"].AdapterOptions(nil))
		if adapterErr != nil {
			require.Error(t, cfgErr, "user_agent %q: config accepts what the adapter refuses: %v", ua, adapterErr)
		}
		if cfgErr != nil {
			require.True(t, strings.HasPrefix(cfgErr.Error(), "config: vendors.v.user_agent:"), cfgErr.Error())
		}
	}
}
