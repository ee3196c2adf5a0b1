package redox

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/go-jose/go-jose/v4"

	"github.com/tokenrelay/tokenrelay/secret"
)

// PublicJWK returns the public JWK (RFC 7517) of a PEM private key, as Redox
// reads it from a JWKS URL or the dashboard: kty, the public parameters,
// kid, "alg" (RS384 or ES384) and "use":"sig". The private key accepts the
// same forms as vendors.Credential.PrivateKey; nothing private is in the
// result, and errors never quote the key.
func PublicJWK(privateKeyPEM secret.Value, kid string) (json.RawMessage, error) {
	if kid == "" {
		return nil, errors.New("redox: public JWK: kid is required")
	}
	key, alg, err := parsePrivateKey(privateKeyPEM)
	if err != nil {
		return nil, fmt.Errorf("redox: public JWK: %w", err)
	}
	jwk := jose.JSONWebKey{Key: key.Public(), KeyID: kid, Algorithm: string(alg), Use: "sig"}
	b, err := jwk.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("redox: public JWK: encode: %w", err)
	}
	return b, nil
}

// JWKS returns the JWK Set document {"keys":[...]} of public JWKs (as
// PublicJWK makes them), to serve at the JWKS URL registered with Redox.
// During a rotation it holds the old and the new key (see the package doc).
//
// It refuses, rather than publish, a key that is not a JWK, a private or
// symmetric key, a key without kid and two keys with the same kid (Redox
// picks the key by kid).
func JWKS(keys ...json.RawMessage) ([]byte, error) {
	set := struct {
		Keys []json.RawMessage `json:"keys"`
	}{Keys: make([]json.RawMessage, 0, len(keys))}
	seen := make(map[string]bool, len(keys))
	for i, raw := range keys {
		var jwk jose.JSONWebKey
		if err := jwk.UnmarshalJSON(raw); err != nil {
			return nil, fmt.Errorf("redox: JWKS: key %d is not a JWK", i)
		}
		switch {
		case !jwk.IsPublic():
			return nil, fmt.Errorf("redox: JWKS: key %d (kid %q) is not a public key", i, jwk.KeyID)
		case jwk.KeyID == "":
			return nil, fmt.Errorf("redox: JWKS: key %d has no kid", i)
		case seen[jwk.KeyID]:
			return nil, fmt.Errorf("redox: JWKS: kid %q appears twice", jwk.KeyID)
		}
		seen[jwk.KeyID] = true
		// Re-encoded from the parsed key, so that no stray member of the
		// input (a private parameter without "d") is published.
		b, err := jwk.MarshalJSON()
		if err != nil {
			return nil, fmt.Errorf("redox: JWKS: key %d (kid %q) does not encode", i, jwk.KeyID)
		}
		set.Keys = append(set.Keys, b)
	}
	b, err := json.Marshal(set)
	if err != nil {
		return nil, fmt.Errorf("redox: JWKS: encode: %w", err)
	}
	return b, nil
}
