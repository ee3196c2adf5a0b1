package config

import (
	"strings"
	"testing"

	"github.com/tokenrelay/tokenrelay/secret"
)

func TestCheckCredentialAppliesTheFileRules(t *testing.T) {
	t.Parallel()
	c := &Config{Vendors: map[string]Vendor{
		"portal":     {Kind: KindFHIRPortal},
		"healthsync": {Kind: KindHealthSync},
	}}
	cases := []struct {
		name string
		cr   Credential
		want string // "" = valid
	}{
		{"valid portal key", Credential{ID: "patient-1", Vendor: "portal", ClientID: "k", ClientSecret: secret.New("s")}, ""},
		{"valid api key", Credential{ID: "hs-1", Vendor: "healthsync", APIKey: secret.New("ak")}, ""},
		{"bad id", Credential{ID: "bad id!", Vendor: "portal", ClientID: "k", ClientSecret: secret.New("s")}, "id: "},
		{"unknown vendor", Credential{ID: "p", Vendor: "nope", ClientID: "k", ClientSecret: secret.New("s")}, `vendor: vendor "nope" is not defined under vendors (defined: healthsync, portal)`},
		{"missing secret", Credential{ID: "p", Vendor: "portal", ClientID: "k"}, "client_secret: required for kind fhir-portal"},
		{"field not used by the kind", Credential{ID: "h", Vendor: "healthsync", APIKey: secret.New("a"), ClientID: "x"}, "client_id: not used for kind healthsync"},
	}
	for _, tc := range cases {
		err := c.CheckCredential(tc.cr)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: unexpected error %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: error %v, want it to contain %q", tc.name, err, tc.want)
		case err != nil && strings.Contains(err.Error(), "credentials[0]"):
			t.Errorf("%s: error %v names a file position", tc.name, err)
		}
	}
}
