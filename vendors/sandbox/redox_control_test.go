package sandbox_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/vendors/sandbox"
)

// putJWKS sends the Redox JWKS control request and returns the status and
// body of the answer.
func putJWKS(t *testing.T, base, clientID string, body []byte) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, base+sandbox.ControlPath+"redox/clients/"+clientID+"/jwks", bytes.NewReader(body))
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw)
}

// TestRedoxJWKSControlRoute: the sandbox (re)loads a client's keys from a
// JWK Set in the body or fetched from a JWKS URL, as Redox fetches the URL
// registered for a key: the keys become exactly the set's.
func TestRedoxJWKSControlRoute(t *testing.T) {
	t.Parallel()
	e := rdxSetup(t, sandbox.Options{})
	ecJWK := rdxJWK(t, &rdxEC().PublicKey, "kid-a", "ES384")
	rsaJWK := rdxJWK(t, &rdxOtherRSA().PublicKey, "kid-b", "RS384")

	set, err := json.Marshal(map[string]any{"keys": []json.RawMessage{ecJWK, rsaJWK}})
	require.NoError(t, err)
	status, body := putJWKS(t, e.srv.URL, "client-new", set)
	require.Equal(t, http.StatusOK, status, body)
	require.JSONEq(t, `{"client_id":"client-new","kids":["kid-a","kid-b"]}`, body)
	require.Equal(t, []string{"kid-a", "kid-b"}, e.sb.RedoxKeyIDs("client-new"))

	// From a URL: the key left out of the served set is dropped.
	served, err := json.Marshal(map[string]any{"keys": []json.RawMessage{rsaJWK}})
	require.NoError(t, err)
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_, _ = w.Write(served)
	}))
	t.Cleanup(jwks.Close)
	status, body = putJWKS(t, e.srv.URL, "client-new", []byte(`{"url":"`+jwks.URL+`"}`))
	require.Equal(t, http.StatusOK, status, body)
	require.Equal(t, []string{"kid-b"}, e.sb.RedoxKeyIDs("client-new"))

	for _, bad := range []struct {
		name, body string
		status     int
	}{
		{"not JSON", `keys`, http.StatusBadRequest},
		{"private key", `{"keys":[` + string(rdxJWK(t, rdxEC(), "kid-p", "ES384")) + `]}`, http.StatusBadRequest},
		{"unreachable URL", `{"url":"http://127.0.0.1:1/jwks"}`, http.StatusBadGateway},
	} {
		status, body := putJWKS(t, e.srv.URL, "client-new", []byte(bad.body))
		require.Equal(t, bad.status, status, "%s: %s", bad.name, body)
	}
	require.Equal(t, []string{"kid-b"}, e.sb.RedoxKeyIDs("client-new"), "a refused set changes nothing")
}
