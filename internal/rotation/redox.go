package rotation

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/vendors"
	"github.com/tokenrelay/tokenrelay/vendors/redox"
)

// RedoxKeys rotates the signing key of a Redox OAuth API key, as Redox
// advises for keys published at a JWKS URL: publish the new key, switch,
// drop the old one. Nothing is asked of Redox but tokens: the new key is
// made here (the old key's type: ES384 or RSA), published in the
// credential's JWKS (JWKSKeys) from the step created on, verified by
// getting a token with it, and switched to; the old key stays published
// for Vendor.RevokeOldAfter after the switch (the lifetime of tokens and
// assertions made with it), then the rotation ends and JWKSKeys drops it.
//
// A credential signing with an HS384 client secret has no key to publish:
// it cannot be rotated this way.
type RedoxKeys struct {
	// Tokens gets tokens from Redox (the redox adapter); Verify uses it.
	Tokens vendors.TokenSource
	// Announce, if set, is called before the new key is verified, to tell
	// Redox to fetch the JWKS again where that can be asked for (the
	// sandbox's control route does it; Redox itself fetches the JWKS URL
	// on its own schedule).
	Announce func(ctx context.Context, cred vendors.Credential) error
}

var _ KeyManager = RedoxKeys{}

// RSAKeyBits is the size of new RSA signing keys.
const RSAKeyBits = 3072

// Current implements KeyManager: the credential's signing key.
func (r RedoxKeys) Current(_ context.Context, cred vendors.Credential) (Key, error) {
	if cred.PrivateKey.IsZero() || cred.KeyID == "" {
		return Key{}, &vendors.Error{Vendor: "redox", Op: "rotate signing key", Class: vendors.ClassRejected,
			Err: errors.New("the credential signs with a client secret (HS384): there is no key to publish in a JWKS")}
	}
	pub, err := redox.PublicJWK(cred.PrivateKey, cred.KeyID)
	if err != nil {
		return Key{}, &vendors.Error{Vendor: "redox", Op: "rotate signing key", Class: vendors.ClassRejected, Err: err}
	}
	return Key{ID: cred.KeyID, Name: cred.KeyID, Fingerprint: cred.PrivateKey.Fingerprint(), Public: string(pub)}, nil
}

// Create implements KeyManager: a new key of the old key's type, whose kid
// is name. Nothing is sent to Redox.
func (r RedoxKeys) Create(_ context.Context, cred vendors.Credential, _ []string, name string) (Key, error) {
	var der []byte
	var err error
	if isRSA(cred.PrivateKey) {
		var k *rsa.PrivateKey
		if k, err = rsa.GenerateKey(rand.Reader, RSAKeyBits); err == nil {
			der, err = x509.MarshalPKCS8PrivateKey(k)
		}
	} else {
		var k *ecdsa.PrivateKey
		if k, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader); err == nil {
			der, err = x509.MarshalPKCS8PrivateKey(k)
		}
	}
	if err != nil {
		return Key{}, fmt.Errorf("redox: make a signing key: %w", err)
	}
	pemKey := secret.New(string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})))
	pub, err := redox.PublicJWK(pemKey, name)
	if err != nil {
		return Key{}, err
	}
	return Key{ID: name, Name: name, Secret: pemKey, Fingerprint: pemKey.Fingerprint(), Public: string(pub)}, nil
}

// isRSA reports whether a PEM private key is an RSA key.
func isRSA(pemKey secret.Value) bool {
	block, _ := pem.Decode([]byte(pemKey.Reveal()))
	if block == nil {
		return false
	}
	if block.Type == "RSA PRIVATE KEY" {
		return true
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return false
	}
	_, ok := k.(*rsa.PrivateKey)
	return ok
}

// List implements KeyManager: Redox holds nothing of ours but what the
// JWKS publishes, so a key lost before it was recorded was never
// published.
func (RedoxKeys) List(context.Context, vendors.Credential) ([]Key, error) { return nil, nil }

// ErrNotAcceptedYet: Redox refused an assertion signed with the new key,
// most likely because it has not fetched the JWKS holding it yet. The
// rotation waits (retry later); it is not a definitive failure.
var ErrNotAcceptedYet = errors.New("redox has not accepted the new signing key yet (it fetches the JWKS on its own schedule)")

// Verify implements KeyManager: one token, with an assertion signed by the
// new key.
func (r RedoxKeys) Verify(ctx context.Context, cred vendors.Credential) error {
	if r.Announce != nil {
		if err := r.Announce(ctx, cred); err != nil {
			return fmt.Errorf("redox: announce the new signing key: %w", err)
		}
	}
	if _, err := r.Tokens.Token(ctx, cred); err != nil {
		if vendors.IsRevoked(err) {
			return fmt.Errorf("%w: %s", ErrNotAcceptedYet, vendors.Classify(err))
		}
		return err
	}
	return nil
}

// Revoke implements KeyManager: nothing to call; the old key leaves the
// JWKS when the rotation ends.
func (RedoxKeys) Revoke(context.Context, vendors.Credential, string) error { return nil }

// Use implements KeyManager: the signing key and its kid are replaced.
func (RedoxKeys) Use(keys store.Keys, k Key) store.Keys {
	keys.PrivateKey, keys.KeyID = k.Secret, k.ID
	return keys
}
