package sandbox_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/vendors/sandbox"
)

type smartConfiguration struct {
	TokenEndpoint string   `json:"token_endpoint"`
	GrantTypes    []string `json:"grant_types_supported"`
	AuthMethods   []string `json:"token_endpoint_auth_methods_supported"`
	Scopes        []string `json:"scopes_supported"`
	Capabilities  []string `json:"capabilities"`
}

// portalDiscover GETs the portal's SMART configuration, with the Host
// header host when it is set.
func (b bundle) portalDiscover(t *testing.T, host string) (*http.Response, smartConfiguration) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, b.srv.URL+sandbox.FHIRPortalPath+".well-known/smart-configuration", nil)
	require.NoError(t, err)
	if host != "" {
		req.Host = host
	}
	resp := b.do(t, req)
	var doc smartConfiguration
	if resp.StatusCode == http.StatusOK {
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&doc))
	}
	return resp, doc
}

// portalToken posts a client credentials request to the portal, with the
// client authenticated by Basic (basic) or in the body.
func (b bundle) portalToken(t *testing.T, id, secret string, basic bool, form url.Values) *http.Response {
	t.Helper()
	if form == nil {
		form = url.Values{"grant_type": {"client_credentials"}}
	}
	if !basic {
		form.Set("client_id", id)
		form.Set("client_secret", secret)
	}
	req, err := http.NewRequest(http.MethodPost, b.srv.URL+sandbox.FHIRPortalPath+"token", strings.NewReader(form.Encode()))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basic {
		req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	}
	return b.do(t, req)
}

func TestFHIRPortalDiscovery(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Options{})
	resp, doc := b.portalDiscover(t, "")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, b.srv.URL+sandbox.FHIRPortalPath+"token", doc.TokenEndpoint)
	require.Equal(t, []string{"client_credentials"}, doc.GrantTypes)
	require.Equal(t, []string{"client_secret_basic", "client_secret_post"}, doc.AuthMethods)
	require.NotEmpty(t, doc.Scopes)
	require.Contains(t, doc.Capabilities, "client-confidential-symmetric")

	// The token endpoint is named as the request reached the server.
	_, doc = b.portalDiscover(t, "portal.example:8443")
	require.Equal(t, "http://portal.example:8443"+sandbox.FHIRPortalPath+"token", doc.TokenEndpoint)

	require.Equal(t, 2, b.sb.FHIRPortalDiscoveryCalls())
	require.Zero(t, b.sb.TotalTokenCalls(), "discovery is not a token call")
}

func TestFHIRPortalToken(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		real     time.Duration
		basic    bool
		lifetime time.Duration
	}{
		{"basic, capped at 300 s", 0, true, 300 * time.Second},
		{"post, capped at 300 s", 0, false, 300 * time.Second},
		{"shorter real lifetime", 2 * time.Minute, true, 2 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, sandbox.Options{RealTokenLifetime: tt.real})
			form := url.Values{"grant_type": {"client_credentials"}, "scope": {"patient/*.read"}}
			resp := b.portalToken(t, clientID, goodSecret, tt.basic, form)
			require.Equal(t, http.StatusOK, resp.StatusCode)
			a := decodeAnswer(t, resp)
			require.Equal(t, "Bearer", a.TokenType)
			require.Equal(t, "patient/*.read", a.Scope)
			require.EqualValues(t, tt.lifetime/time.Second, a.ExpiresIn, "expires_in says the truth")
			require.Equal(t, []string{a.AccessToken}, b.sb.IssuedTokens(clientID))
			require.Equal(t, 1, b.sb.TokenCalls(clientID))

			require.Equal(t, http.StatusOK, b.patient(t, sandbox.FHIRPortalPath, a.AccessToken, nil).StatusCode)
			require.Equal(t, http.StatusUnauthorized, b.patient(t, sandbox.OAuth2Path, a.AccessToken, nil).StatusCode,
				"a portal token is valid on the portal only")
			require.Equal(t, 1, b.sb.UnknownUses())

			b.clock.Advance(tt.lifetime - time.Second)
			require.Equal(t, http.StatusOK, b.patient(t, sandbox.FHIRPortalPath, a.AccessToken, nil).StatusCode)
			b.clock.Advance(time.Second)
			require.Equal(t, http.StatusUnauthorized, b.patient(t, sandbox.FHIRPortalPath, a.AccessToken, nil).StatusCode)
			require.Equal(t, 1, b.sb.ExpiredUsesBy(clientID))
		})
	}
}

func TestFHIRPortalRejectsOtherAPIsTokens(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Options{})
	resp := oauth2Post(t, b, url.Values{"grant_type": {"client_credentials"}}, clientID, goodSecret)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	resp = b.patient(t, sandbox.FHIRPortalPath, decodeAnswer(t, resp).AccessToken, nil)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	require.Contains(t, resp.Header.Get("WWW-Authenticate"), "invalid_token")
	require.Equal(t, 1, b.sb.UnknownUses())
}

// TestFHIRPortalPatientDeletesKey: deleting the key is refused at the next
// token request, and the tokens die at once.
func TestFHIRPortalPatientDeletesKey(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Options{})
	resp := b.portalToken(t, clientID, goodSecret, true, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	tok := decodeAnswer(t, resp).AccessToken

	b.sb.DeleteClient(clientID)
	for _, basic := range []bool{true, false} {
		resp = b.portalToken(t, clientID, goodSecret, basic, nil)
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
		require.Equal(t, "invalid_client", decodeAnswer(t, resp).Error)
	}
	require.Equal(t, http.StatusUnauthorized, b.patient(t, sandbox.FHIRPortalPath, tok, nil).StatusCode)
	require.Equal(t, 1, b.sb.RevokedUses())
	require.Equal(t, 3, b.sb.TokenCalls(clientID))
}

func TestFHIRPortalBadRequests(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Options{})
	resp := b.portalToken(t, clientID, goodSecret, false, url.Values{"grant_type": {"password"}})
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	require.Equal(t, "unsupported_grant_type", decodeAnswer(t, resp).Error)

	form := url.Values{"grant_type": {"client_credentials"}, "client_secret": {goodSecret}}
	resp = b.portalToken(t, clientID, goodSecret, true, form)
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	require.Equal(t, "invalid_request", decodeAnswer(t, resp).Error)

	req, err := http.NewRequest(http.MethodPost, b.srv.URL+sandbox.FHIRPortalPath+"token",
		strings.NewReader(`{"grant_type":"client_credentials"}`))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.SetBasicAuth(clientID, goodSecret)
	resp = b.do(t, req)
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	require.Equal(t, "invalid_request", decodeAnswer(t, resp).Error)
	require.Equal(t, 3, b.sb.TokenCalls(clientID), "refused requests are counted under their client")
}

func TestFHIRPortalAuthMethods(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Options{})
	require.ErrorContains(t, b.sb.SetFHIRPortalAuthMethods("private_key_jwt"), "unknown auth method")

	require.NoError(t, b.sb.SetFHIRPortalAuthMethods("client_secret_post"))
	_, doc := b.portalDiscover(t, "")
	require.Equal(t, []string{"client_secret_post"}, doc.AuthMethods)
	resp := b.portalToken(t, clientID, goodSecret, true, nil)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "a method not advertised is refused")
	require.Equal(t, "invalid_client", decodeAnswer(t, resp).Error)
	require.Equal(t, http.StatusOK, b.portalToken(t, clientID, goodSecret, false, nil).StatusCode)

	require.NoError(t, b.sb.SetFHIRPortalAuthMethods("client_secret_basic"))
	require.Equal(t, http.StatusUnauthorized, b.portalToken(t, clientID, goodSecret, false, nil).StatusCode)
	require.Equal(t, http.StatusOK, b.portalToken(t, clientID, goodSecret, true, nil).StatusCode)

	require.NoError(t, b.sb.SetFHIRPortalAuthMethods())
	_, doc = b.portalDiscover(t, "")
	require.Equal(t, []string{"client_secret_basic", "client_secret_post"}, doc.AuthMethods)
}

// TestFHIRPortalFaults: token and patient faults apply as on every API;
// discovery, which names no client, gets the "all" faults for every client.
func TestFHIRPortalFaults(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Options{})

	require.NoError(t, b.sb.Inject(sandbox.Fault{Kind: sandbox.FaultServerError, Status: 503, Times: 1}))
	resp, _ := b.portalDiscover(t, "")
	require.Equal(t, http.StatusOK, resp.StatusCode, "a token fault leaves discovery alone")
	require.Equal(t, http.StatusServiceUnavailable, b.portalToken(t, clientID, goodSecret, true, nil).StatusCode)

	require.NoError(t, b.sb.Inject(sandbox.Fault{ClientID: clientID, Endpoint: sandbox.EndpointAll,
		Kind: sandbox.FaultRateLimited, RetryAfter: 7 * time.Second, Times: 1}))
	resp, _ = b.portalDiscover(t, "")
	require.Equal(t, http.StatusOK, resp.StatusCode, "a fault of one client leaves discovery alone")
	require.Equal(t, http.StatusTooManyRequests, b.portalToken(t, clientID, goodSecret, true, nil).StatusCode)

	require.NoError(t, b.sb.Inject(sandbox.Fault{Endpoint: sandbox.EndpointAll, Kind: sandbox.FaultServerError,
		Status: 502, RetryAfter: 3 * time.Second, Times: 1}))
	resp, _ = b.portalDiscover(t, "")
	require.Equal(t, http.StatusBadGateway, resp.StatusCode)
	require.Equal(t, "3", resp.Header.Get("Retry-After"))
	require.Empty(t, b.sb.Faults(), "used up by discovery")
	resp = b.portalToken(t, clientID, goodSecret, true, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)

	require.NoError(t, b.sb.Inject(sandbox.Fault{Endpoint: sandbox.EndpointPatient, Kind: sandbox.FaultServerError, Times: 1}))
	tok := decodeAnswer(t, resp).AccessToken
	require.Equal(t, http.StatusInternalServerError, b.patient(t, sandbox.FHIRPortalPath, tok, nil).StatusCode)
	require.Equal(t, http.StatusOK, b.patient(t, sandbox.FHIRPortalPath, tok, nil).StatusCode)

	require.Equal(t, 3, b.sb.FHIRPortalDiscoveryCalls())
	require.Equal(t, 3, b.sb.TotalTokenCalls())
}
