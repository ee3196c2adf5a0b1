package redox_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log"

	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/vendors"
	"github.com/tokenrelay/tokenrelay/vendors/redox"
)

// newPEM makes an EC P-384 private key, as PKCS#8 PEM.
func newPEM() secret.Value {
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		log.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		log.Fatal(err)
	}
	return secret.New(string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})))
}

// The JWKS served during a key rotation holds the old and the new key.
func ExampleJWKS() {
	oldJWK, err := redox.PublicJWK(newPEM(), "2025-01")
	if err != nil {
		log.Fatal(err)
	}
	newJWK, err := redox.PublicJWK(newPEM(), "2025-07")
	if err != nil {
		log.Fatal(err)
	}
	doc, err := redox.JWKS(oldJWK, newJWK)
	if err != nil {
		log.Fatal(err)
	}

	var set struct {
		Keys []struct{ Kid, Kty, Crv, Alg, Use string }
	}
	if err := json.Unmarshal(doc, &set); err != nil {
		log.Fatal(err)
	}
	for _, k := range set.Keys {
		fmt.Println(k.Kid, k.Kty, k.Crv, k.Alg, k.Use)
	}
	// Output:
	// 2025-01 EC P-384 ES384 sig
	// 2025-07 EC P-384 ES384 sig
}

func ExampleAdapter_Token() {
	a, err := redox.New(redox.Options{BaseURL: redox.BaseURLCA})
	if err != nil {
		log.Fatal(err)
	}
	tok, err := a.Token(context.Background(), vendors.Credential{
		ClientID:   "the OAuth API key's client id",
		PrivateKey: newPEM(),
		KeyID:      "2025-07",
	})
	switch {
	case errors.Is(err, redox.ErrBadCredential):
		log.Print("fix the credential: ", err)
	case vendors.IsRevoked(err):
		log.Print("Redox refused the credential: ", err)
	case err != nil:
		log.Printf("retry later (%s, after %s): %v", vendors.Classify(err), vendors.RetryAfter(err), err)
	default:
		log.Printf("token valid for %s", tok.ClaimedLifetime)
	}
}
