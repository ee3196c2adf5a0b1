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
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/vendors/redox"
)

// signingKeyPEM is a new P-384 private key in PEM.
func signingKeyPEM(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	require.NoError(t, err)
	der, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

func TestJWKSHandlerPublishesPublicKeysOnly(t *testing.T) {
	t.Parallel()
	pemKey := signingKeyPEM(t)
	mux := http.NewServeMux()
	mux.Handle("GET /jwks/{vendor}/{credential}", redox.JWKSHandler(func(_ context.Context, vendor, cred string) ([]redox.SigningKey, error) {
		switch {
		case vendor == "redox-prod" && cred == "src-1":
			return []redox.SigningKey{{PrivateKey: secret.New(pemKey), KeyID: "kid-1"}}, nil
		case cred == "down":
			return nil, errors.New("store down")
		default:
			return nil, redox.ErrNoSigningKeys
		}
	}))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	hc := srv.Client()
	resp, err := hc.Get(srv.URL + "/jwks/redox-prod/src-1")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "application/jwk-set+json", resp.Header.Get("Content-Type"))
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	require.NoError(t, json.Unmarshal(body, &set))
	require.Len(t, set.Keys, 1)
	require.Equal(t, "kid-1", set.Keys[0]["kid"])
	require.Equal(t, "ES384", set.Keys[0]["alg"])
	require.NotContains(t, set.Keys[0], "d", "the private exponent must never be published")
	require.False(t, strings.Contains(string(body), "PRIVATE"))

	for path, want := range map[string]int{"/jwks/redox-prod/other": 404, "/jwks/redox-prod/down": 503} {
		resp, err := hc.Get(srv.URL + path)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, want, resp.StatusCode, path)
	}
}
