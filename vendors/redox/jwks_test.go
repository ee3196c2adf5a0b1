package redox_test

import (
	"encoding/json"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/vendors/redox"
)

func TestPublicJWK(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		pem  string
		want map[string]bool // members present
		kty  string
		alg  string
	}{
		{"RSA PKCS#8", pkcs8(rsaKey()), map[string]bool{"n": true, "e": true}, "RSA", "RS384"},
		{"RSA PKCS#1", pkcs1(rsaKey()), map[string]bool{"n": true, "e": true}, "RSA", "RS384"},
		{"EC PKCS#8", pkcs8(ecKey()), map[string]bool{"crv": true, "x": true, "y": true}, "EC", "ES384"},
		{"EC SEC1", sec1(ecKey()), map[string]bool{"crv": true, "x": true, "y": true}, "EC", "ES384"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			raw, err := redox.PublicJWK(secret.New(tt.pem), "key-1")
			require.NoError(t, err)
			var m map[string]string
			require.NoError(t, json.Unmarshal(raw, &m))
			require.Equal(t, tt.kty, m["kty"])
			require.Equal(t, "key-1", m["kid"])
			require.Equal(t, tt.alg, m["alg"])
			require.Equal(t, "sig", m["use"])
			if tt.kty == "EC" {
				require.Equal(t, "P-384", m["crv"])
			}
			for k := range m {
				switch k {
				case "kty", "kid", "alg", "use":
				default:
					require.True(t, tt.want[k], "unexpected member %q (a private one?)", k)
				}
			}
			var jwk jose.JSONWebKey
			require.NoError(t, jwk.UnmarshalJSON(raw))
			require.True(t, jwk.IsPublic())
		})
	}

	// The same key in either form is the same JWK.
	a, err := redox.PublicJWK(secret.New(pkcs8(rsaKey())), "k")
	require.NoError(t, err)
	b, err := redox.PublicJWK(secret.New(pkcs1(rsaKey())), "k")
	require.NoError(t, err)
	require.JSONEq(t, string(a), string(b))

	_, err = redox.PublicJWK(secret.New(pkcs8(rsaKey())), "")
	require.ErrorContains(t, err, "kid is required")
	pem := pkcs8(smallRSA())
	_, err = redox.PublicJWK(secret.New(pem), "k")
	require.ErrorContains(t, err, "1024-bit")
	require.NotContains(t, err.Error(), pem[40:80])
}

func TestJWKS(t *testing.T) {
	t.Parallel()
	rsaJWK, err := redox.PublicJWK(secret.New(pkcs8(rsaKey())), "rsa-1")
	require.NoError(t, err)
	ecJWK, err := redox.PublicJWK(secret.New(pkcs8(ecKey())), "ec-1")
	require.NoError(t, err)

	doc, err := redox.JWKS()
	require.NoError(t, err)
	require.JSONEq(t, `{"keys":[]}`, string(doc))

	doc, err = redox.JWKS(rsaJWK, ecJWK)
	require.NoError(t, err)
	var set jose.JSONWebKeySet
	require.NoError(t, json.Unmarshal(doc, &set))
	require.Len(t, set.Keys, 2)
	require.Len(t, set.Key("rsa-1"), 1)
	require.Len(t, set.Key("ec-1"), 1)

	// A stray private parameter is not published.
	var m map[string]any
	require.NoError(t, json.Unmarshal(rsaJWK, &m))
	m["p"] = "AQAB"
	stray, err := json.Marshal(m)
	require.NoError(t, err)
	doc, err = redox.JWKS(stray)
	require.NoError(t, err)
	require.NotContains(t, string(doc), `"p"`)

	private, err := jose.JSONWebKey{Key: rsaKey(), KeyID: "priv"}.MarshalJSON()
	require.NoError(t, err)
	symmetric, err := jose.JSONWebKey{Key: []byte(hmacSecret), KeyID: "oct"}.MarshalJSON()
	require.NoError(t, err)
	noKid, err := jose.JSONWebKey{Key: &rsaKey().PublicKey}.MarshalJSON()
	require.NoError(t, err)
	for _, tt := range []struct {
		name string
		keys []json.RawMessage
		want string
	}{
		{"not JSON", []json.RawMessage{json.RawMessage(`{`)}, "key 0 is not a JWK"},
		{"private key", []json.RawMessage{rsaJWK, private}, `key 1 (kid "priv") is not a public key`},
		{"symmetric key", []json.RawMessage{symmetric}, "not a public key"},
		{"no kid", []json.RawMessage{noKid}, "has no kid"},
		{"kid twice", []json.RawMessage{rsaJWK, rsaJWK}, `kid "rsa-1" appears twice`},
	} {
		_, err := redox.JWKS(tt.keys...)
		require.ErrorContains(t, err, tt.want, tt.name)
		require.NotContains(t, err.Error(), hmacSecret)
	}
}
