package redox

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/vendors"
)

// Key requirements.
const (
	// minRSABits is the smallest RSA key RS384 accepts (RFC 7518 section 3.3).
	minRSABits = 2048
	// minHMACBytes is the shortest HS384 secret (RFC 7518 section 3.2: at
	// least the hash size).
	minHMACBytes = 48
)

// assertion signs a client assertion for cred at now.
func (a *Adapter) assertion(cred vendors.Credential, now time.Time) (string, error) {
	if cred.ClientID == "" {
		return "", a.badCredential("client_id is empty")
	}
	alg, key, err := signingKey(cred)
	if err != nil {
		return "", a.badCredential("%s", err)
	}
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if cred.KeyID != "" {
		opts = opts.WithHeader("kid", cred.KeyID)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		return "", a.badCredential("%s key: %s", alg, joseReason(err))
	}
	claims := jwt.Claims{
		Issuer:   cred.ClientID,
		Subject:  cred.ClientID,
		Audience: jwt.Audience{a.tokenURL},
		ID:       rand.Text(),
		IssuedAt: jwt.NewNumericDate(now),
		Expiry:   jwt.NewNumericDate(now.Add(a.assertionLifetime)),
	}
	s, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		return "", a.badCredential("sign with the %s key: %s", alg, joseReason(err))
	}
	return s, nil
}

func (a *Adapter) badCredential(format string, args ...any) *vendors.Error {
	return &vendors.Error{Vendor: a.tokens.Vendor, Op: opSign, Class: vendors.ClassRejected,
		Err: fmt.Errorf("%w: "+format, append([]any{ErrBadCredential}, args...)...)}
}

// joseReason names a go-jose failure without quoting anything of the key.
func joseReason(err error) string {
	switch {
	case errors.Is(err, jose.ErrInvalidKeySize):
		return "the key is too small"
	case errors.Is(err, jose.ErrUnsupportedKeyType):
		return "unsupported key type"
	case errors.Is(err, jose.ErrUnsupportedAlgorithm):
		return "unsupported algorithm"
	}
	return "signing failed"
}

// signingKey picks cred's key and algorithm: the private key (RS384 or
// ES384) when there is one, else the client secret (HS384). Its errors never
// quote the key.
func signingKey(cred vendors.Credential) (jose.SignatureAlgorithm, any, error) {
	if !cred.PrivateKey.IsZero() {
		key, alg, err := parsePrivateKey(cred.PrivateKey)
		if err != nil {
			return "", nil, err
		}
		if cred.KeyID == "" {
			return "", nil, errors.New("key_id is required with a private_key: Redox finds the public key by the kid header")
		}
		return alg, key, nil
	}
	if !cred.ClientSecret.IsZero() {
		s := cred.ClientSecret.Reveal()
		if len(s) < minHMACBytes {
			return "", nil, fmt.Errorf("an HS384 client_secret must be at least %d bytes (RFC 7518 section 3.2), this one has %d",
				minHMACBytes, len(s))
		}
		return jose.HS384, []byte(s), nil
	}
	return "", nil, errors.New("the credential has neither a private_key (RS384, ES384) nor a client_secret (HS384)")
}

// parsePrivateKey reads a PEM private key: PKCS#8 ("PRIVATE KEY"), PKCS#1
// ("RSA PRIVATE KEY") or SEC1 ("EC PRIVATE KEY", possibly after an "EC
// PARAMETERS" block, as openssl ecparam writes it). It returns the key and
// the algorithm it signs with. Its errors never quote the key, nor wrap the
// x509 errors that describe its bytes.
func parsePrivateKey(pemKey secret.Value) (crypto.Signer, jose.SignatureAlgorithm, error) {
	rest := []byte(pemKey.Reveal())
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, "", errors.New(`private_key is not a PEM private key ("-----BEGIN PRIVATE KEY-----")`)
		}
		var (
			key any
			err error
		)
		switch {
		case block.Type == "ENCRYPTED PRIVATE KEY" || block.Headers["Proc-Type"] != "":
			return nil, "", errors.New("private_key is encrypted; give it unencrypted (the credential store encrypts it)")
		case block.Type == "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case block.Type == "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		case block.Type == "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		case strings.HasSuffix(block.Type, "PRIVATE KEY"):
			return nil, "", fmt.Errorf("private_key is a %q PEM block; use PKCS#8, PKCS#1 or SEC1", block.Type)
		default:
			continue // EC PARAMETERS, a certificate: look further
		}
		if err != nil {
			return nil, "", fmt.Errorf("private_key: the %q PEM block does not parse", block.Type)
		}
		return checkKey(key)
	}
}

// checkKey says which algorithm signs with key, if any.
func checkKey(key any) (crypto.Signer, jose.SignatureAlgorithm, error) {
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if bits := k.N.BitLen(); bits < minRSABits {
			return nil, "", fmt.Errorf("private_key is a %d-bit RSA key; RS384 needs at least %d bits", bits, minRSABits)
		}
		return k, jose.RS384, nil
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P384() {
			return nil, "", fmt.Errorf("private_key is an EC key on %s; ES384 needs P-384", k.Curve.Params().Name)
		}
		return k, jose.ES384, nil
	case ed25519.PrivateKey:
		return nil, "", errors.New("private_key is an Ed25519 key; Redox accepts RSA (RS384) or EC P-384 (ES384)")
	}
	return nil, "", fmt.Errorf("private_key is a %T; Redox accepts RSA (RS384) or EC P-384 (ES384)", key)
}
