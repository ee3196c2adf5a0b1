package redox

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/tokenrelay/tokenrelay/secret"
)

// SigningKey is a private key a credential signs its assertions with, or,
// when PublicJWK is set, only the public JWK of one (a key being rotated in
// or out, published without its private half at hand).
type SigningKey struct {
	PrivateKey secret.Value
	KeyID      string
	PublicJWK  json.RawMessage
}

// ErrNoSigningKeys says a credential has no key to publish (unknown, not a
// Redox credential, or signing with a shared secret).
var ErrNoSigningKeys = errors.New("redox: no signing keys")

// KeySource returns the signing keys of one credential of one vendor
// instance: the current key, and during a rotation the old one too.
type KeySource func(ctx context.Context, vendor, credential string) ([]SigningKey, error)

// JWKSHandler serves GET .../{vendor}/{credential}: the JWK Set of the
// public halves of the credential's signing keys, for the JWKS URL
// registered with Redox. It is public data; nothing private is ever in it.
// A credential without keys is 404.
func JWKSHandler(keys KeySource) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		vendor, cred := r.PathValue("vendor"), r.PathValue("credential")
		signing, err := keys(r.Context(), vendor, cred)
		switch {
		case errors.Is(err, ErrNoSigningKeys) || (err == nil && len(signing) == 0):
			http.Error(w, "no signing keys for "+vendor+"/"+cred, http.StatusNotFound)
			return
		case err != nil:
			http.Error(w, "signing keys unavailable; try again", http.StatusServiceUnavailable)
			return
		}
		pubs := make([]json.RawMessage, 0, len(signing))
		for _, k := range signing {
			if len(k.PublicJWK) > 0 {
				pubs = append(pubs, k.PublicJWK)
				continue
			}
			jwk, err := PublicJWK(k.PrivateKey, k.KeyID)
			if err != nil {
				http.Error(w, "a signing key cannot be published: "+err.Error(), http.StatusInternalServerError)
				return
			}
			pubs = append(pubs, jwk)
		}
		doc, err := JWKS(pubs...)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.Header().Set("Cache-Control", "public, max-age=60")
		_, _ = w.Write(doc)
	})
}
