package config

import (
	"encoding/pem"
	"fmt"
	"strings"

	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/vendors/kind"
)

func (c *Config) validateCredentials(p *problems, vendorNames []string) {
	firstUse := map[string]int{}
	for i, cr := range c.Credentials {
		path := fmt.Sprintf("credentials[%d]", i)
		validateCredentialID(p, path+".id", cr.ID, i, firstUse)
		v, ok := c.Vendors[cr.Vendor]
		if !ok {
			validateCredentialVendor(p, path+".vendor", cr.Vendor, vendorNames)
			continue
		}
		if s, known := v.Spec(); known {
			cr.validateFields(p, path, v, s)
		} // else the vendor's kind is reported already
	}
}

// validateCredentialID checks that an id is valid and unique; firstUse
// maps each id seen to the index of its credential.
func validateCredentialID(p *problems, path, id string, i int, firstUse map[string]int) {
	switch first, dup := firstUse[id]; {
	case !validID.MatchString(id):
		p.add(path, "%s must match %s", p.show(path, id), idPattern)
	case dup:
		p.add(path, "%s is also the id of credentials[%d] (ids must be unique)", p.show(path, id), first)
	default:
		firstUse[id] = i
	}
}

// validateCredentialVendor reports a credential's vendor that is not
// defined.
func validateCredentialVendor(p *problems, path, vendor string, vendorNames []string) {
	defined := "none are"
	if len(vendorNames) > 0 {
		defined = "defined: " + strings.Join(vendorNames, ", ")
	}
	if vendor == "" {
		p.add(path, "required: the name of an entry under vendors (%s)", defined)
	} else {
		p.add(path, "vendor %s is not defined under vendors (%s)", p.show(path, vendor), defined)
	}
}

// validateFields checks the secret fields of a credential of vendor v
// against those its kind needs in v's mode.
func (cr Credential) validateFields(p *problems, path string, v Vendor, s kind.Spec) {
	want, byMode := s.CredentialsIn(v.Mode)
	why := fmt.Sprintf("for kind %s (vendor %s)", v.Kind, cr.Vendor)
	if byMode {
		why = fmt.Sprintf("for kind %s in mode %s (vendor %s)", v.Kind, v.Mode, cr.Vendor)
	}
	check := func(field string, u kind.Use, set bool) {
		switch {
		case u == kind.Needed && !set:
			p.add(path+"."+field, "%s", required(p, path+"."+field, why))
		case u == kind.Unused && set:
			p.add(path+"."+field, "not used %s; remove it", why)
		}
	}
	check("client_id", want.ClientID, cr.ClientID != "")
	check("client_secret", want.ClientSecret, !cr.ClientSecret.IsZero())
	check("private_key", want.PrivateKey, !cr.PrivateKey.IsZero())
	check("key_id", want.KeyID, cr.KeyID != "")
	check("api_key", want.APIKey, !cr.APIKey.IsZero())
	check("refresh_token", want.RefreshToken, !cr.RefreshToken.IsZero())
	if want.KeyOrSecret {
		cr.validateKeyOrSecret(p, path, why)
	}
	if !cr.PrivateKey.IsZero() && !isPrivateKeyPEM(cr.PrivateKey) {
		p.add(path+".private_key", "is not a PEM private key (expected a -----BEGIN … PRIVATE KEY----- block)")
	}
}

// validateKeyOrSecret checks that exactly one of private_key and
// client_secret is set.
func (cr Credential) validateKeyOrSecret(p *problems, path, why string) {
	switch {
	case cr.ClientSecret.IsZero() && cr.PrivateKey.IsZero():
		p.add(path+".private_key", "%s", required(p, path+".private_key", why+", or client_secret for HS384"))
	case !cr.ClientSecret.IsZero() && !cr.PrivateKey.IsZero():
		p.add(path+".client_secret", "set together with private_key (keep one: private_key for RS384/ES384, client_secret for HS384)")
	}
}

func isPrivateKeyPEM(v secret.Value) bool {
	block, _ := pem.Decode([]byte(v.Reveal()))
	return block != nil && strings.HasSuffix(block.Type, "PRIVATE KEY")
}
