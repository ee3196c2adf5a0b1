package sandbox_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/internal/testenv"
	"github.com/tokenrelay/tokenrelay/vendors/sandbox"
)

const rlDay = 24 * time.Hour

// rlGrant is a Redox legacy token answer, or an error answer.
type rlGrant struct {
	AccessToken  string `json:"accessToken"`
	Expires      string `json:"expires"`
	RefreshToken string `json:"refreshToken"`
	Meta         struct {
		Errors []struct {
			Text string `json:"Text"`
			Type string `json:"Type"`
		} `json:"Errors"`
	} `json:"Meta"`
}

// rlPost posts body as JSON to the Redox legacy API's path.
func (b bundle) rlPost(t *testing.T, path string, body any) *http.Response {
	t.Helper()
	data, err := json.Marshal(body)
	require.NoError(t, err)
	req, err := http.NewRequest(http.MethodPost, b.srv.URL+sandbox.RedoxLegacyPath+path, bytes.NewReader(data))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	return b.do(t, req)
}

// rlToken posts a token request and decodes the answer, whatever its status.
func (b bundle) rlToken(t *testing.T, path string, body map[string]string) (int, rlGrant) {
	t.Helper()
	resp := b.rlPost(t, path, body)
	var g rlGrant
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&g))
	return resp.StatusCode, g
}

func (b bundle) rlAuthenticate(t *testing.T) rlGrant {
	t.Helper()
	status, g := b.rlToken(t, "auth/authenticate", map[string]string{"apiKey": clientID, "secret": goodSecret})
	require.Equal(t, http.StatusOK, status)
	return g
}

func (b bundle) rlRefresh(t *testing.T, refreshToken string) (int, rlGrant) {
	t.Helper()
	return b.rlToken(t, "auth/refreshToken", map[string]string{"apiKey": clientID, "refreshToken": refreshToken})
}

func (b bundle) rlState(t *testing.T, refreshToken string) sandbox.RedoxLegacyRefreshState {
	t.Helper()
	for _, rt := range b.sb.RedoxLegacyRefreshTokens(clientID) {
		if rt.Token == refreshToken {
			return rt.State
		}
	}
	t.Fatalf("refresh token not remembered")
	return ""
}

// rlSend posts a Data Model API request with token and returns the answer.
func (b bundle) rlSend(t *testing.T, token, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, b.srv.URL+sandbox.RedoxLegacyPath+"endpoint", strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return b.do(t, req)
}

const rlMessage = `{"Meta":{"DataModel":"PatientAdmin","EventType":"Arrival","Destinations":[{"ID":"af394f14","Name":"Redox EMR"}]},"Patient":{}}`

func TestRedoxLegacyAuthenticate(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Options{})
	resp := b.rlPost(t, "auth/authenticate", map[string]string{"apiKey": clientID, "secret": goodSecret})
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	var g map[string]string
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&g))
	require.Len(t, g, 3)
	require.Equal(t, "2025-03-05T10:00:00.000Z", g["expires"], "24 hours, ISO 8601 with milliseconds as Redox shows it")
	require.NotEmpty(t, g["accessToken"])
	require.NotEmpty(t, g["refreshToken"])
	require.Equal(t, []string{g["accessToken"]}, b.sb.IssuedTokens(clientID))
	require.Equal(t, []sandbox.RedoxLegacyRefreshToken{{Token: g["refreshToken"], Chain: 1, IssuedAt: t0,
		ExpiresAt: t0.Add(7 * rlDay), State: sandbox.RedoxLegacyRefreshActive}}, b.sb.RedoxLegacyRefreshTokens(clientID))
	require.Equal(t, 1, b.sb.TokenCalls(clientID))
	require.Equal(t, sandbox.RedoxLegacyStats{Authenticate: 1, Chains: 1}, b.sb.RedoxLegacyStats(clientID))

	// The Redox lifetime is its own, not the sandbox's RealTokenLifetime.
	b.sb.SetRedoxLegacyTokenLifetime(time.Hour)
	require.Equal(t, "2025-03-04T11:00:00.000Z", b.rlAuthenticate(t).Expires)
	b.sb.SetRedoxLegacyTokenLifetime(0)
	lifetime, idle := b.sb.RedoxLegacySettings()
	require.Equal(t, []time.Duration{rlDay, 7 * rlDay}, []time.Duration{lifetime, idle})
}

func TestRedoxLegacyAuthenticateRefusals(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Options{})
	b.sb.AddClient("client-2", "other-secret")
	tests := []struct {
		name        string
		contentType string
		body        string
		status      int
	}{
		{"wrong secret", "application/json", `{"apiKey":"client-1","secret":"nope"}`, 401},
		{"another key's secret", "application/json", `{"apiKey":"client-1","secret":"other-secret"}`, 401},
		{"unknown key", "application/json", `{"apiKey":"client-9","secret":"` + goodSecret + `"}`, 401},
		{"no secret", "application/json", `{"apiKey":"client-1"}`, 400},
		{"not JSON", "application/json", `apiKey=client-1`, 400},
		{"form", "application/x-www-form-urlencoded", `{"apiKey":"client-1","secret":"` + goodSecret + `"}`, 415},
	}
	for _, tt := range tests {
		req, err := http.NewRequest(http.MethodPost, b.srv.URL+sandbox.RedoxLegacyPath+"auth/authenticate", strings.NewReader(tt.body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", tt.contentType)
		resp := b.do(t, req)
		require.Equal(t, tt.status, resp.StatusCode, tt.name)
		var g rlGrant
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&g), tt.name)
		require.Empty(t, g.AccessToken, tt.name)
		require.NotEmpty(t, g.Meta.Errors, tt.name)
	}
	require.Empty(t, b.sb.IssuedTokens(clientID))
	require.Equal(t, len(tests), b.sb.TotalTokenCalls(), "every request counts")
	require.Equal(t, sandbox.RedoxLegacyStats{Authenticate: 4}, b.sb.RedoxLegacyStats(clientID),
		"those that named the key, whatever their outcome")

	req, err := http.NewRequest(http.MethodGet, b.srv.URL+sandbox.RedoxLegacyPath+"auth/authenticate", nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusMethodNotAllowed, b.do(t, req).StatusCode)
}

func TestRedoxLegacyRefreshRotates(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Options{})
	first := b.rlAuthenticate(t)
	b.clock.Advance(16 * time.Hour)
	status, second := b.rlRefresh(t, first.RefreshToken)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, "2025-03-06T02:00:00.000Z", second.Expires)
	require.NotEqual(t, first.RefreshToken, second.RefreshToken)
	require.NotEqual(t, first.AccessToken, second.AccessToken)
	require.Equal(t, sandbox.RedoxLegacyRefreshConsumed, b.rlState(t, first.RefreshToken))
	require.Equal(t, sandbox.RedoxLegacyRefreshActive, b.rlState(t, second.RefreshToken))
	require.Equal(t, []string{first.AccessToken, second.AccessToken}, b.sb.IssuedTokens(clientID))
	require.Equal(t, 2, b.sb.TokenCalls(clientID), "a refresh is a token call")
	rts := b.sb.RedoxLegacyRefreshTokens(clientID)
	require.Equal(t, sandbox.RedoxLegacyRefreshToken{Token: second.RefreshToken, Chain: 1, IssuedAt: t0.Add(16 * time.Hour),
		ExpiresAt: t0.Add(16*time.Hour + 7*rlDay), State: sandbox.RedoxLegacyRefreshActive}, rts[1])

	// Reusing the consumed one is refused and revokes the chain.
	status, g := b.rlRefresh(t, first.RefreshToken)
	require.Equal(t, http.StatusUnauthorized, status)
	require.Contains(t, g.Meta.Errors[0].Text, "already used")
	require.Equal(t, sandbox.RedoxLegacyRefreshRevoked, b.rlState(t, second.RefreshToken))
	status, g = b.rlRefresh(t, second.RefreshToken)
	require.Equal(t, http.StatusUnauthorized, status)
	require.Contains(t, g.Meta.Errors[0].Text, "revoked")
	require.Equal(t, sandbox.RedoxLegacyStats{Authenticate: 1, Refresh: 3, RefreshRefused: 2, Reuses: 1, Chains: 1},
		b.sb.RedoxLegacyStats(clientID))

	// The key is not revoked: its access tokens work, and it authenticates.
	require.Equal(t, http.StatusOK, b.rlSend(t, second.AccessToken, rlMessage).StatusCode)
	third := b.rlAuthenticate(t)
	status, _ = b.rlRefresh(t, third.RefreshToken)
	require.Equal(t, http.StatusOK, status, "a new chain")
}

func TestRedoxLegacyRefreshRefusals(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		prepare func(b bundle, g rlGrant) (apiKey, refreshToken string)
		status  int
		reason  string
	}{
		{"unknown", func(b bundle, g rlGrant) (string, string) { return clientID, "nope" }, 401, "unknown"},
		{"another key's", func(b bundle, g rlGrant) (string, string) {
			b.sb.AddClient("client-2", "x")
			return "client-2", g.RefreshToken
		}, 401, "unknown"},
		{"an access token", func(b bundle, g rlGrant) (string, string) { return clientID, g.AccessToken }, 401, "unknown"},
		{"key deleted", func(b bundle, g rlGrant) (string, string) {
			b.sb.DeleteClient(clientID)
			return clientID, g.RefreshToken
		}, 401, "revoked"},
		{"key deleted and added again", func(b bundle, g rlGrant) (string, string) {
			b.sb.DeleteClient(clientID)
			b.sb.AddClient(clientID, goodSecret)
			return clientID, g.RefreshToken
		}, 401, "revoked"},
		{"idle 7 days", func(b bundle, g rlGrant) (string, string) {
			b.clock.Advance(7 * rlDay)
			return clientID, g.RefreshToken
		}, 401, "expired"},
		{"idle 1 hour with a 1-hour limit", func(b bundle, g rlGrant) (string, string) {
			b.sb.SetRedoxLegacyRefreshIdleLimit(time.Hour)
			b.clock.Advance(time.Hour)
			return clientID, g.RefreshToken
		}, 200, ""}, // the limit of a token is the one when it was issued
		{"secret changed", func(b bundle, g rlGrant) (string, string) {
			b.sb.AddClient(clientID, "rotated")
			return clientID, g.RefreshToken
		}, 200, ""}, // a refresh does not send the secret
		{"idle just under 7 days", func(b bundle, g rlGrant) (string, string) {
			b.clock.Advance(7*rlDay - time.Millisecond)
			return clientID, g.RefreshToken
		}, 200, ""},
		{"no refresh token", func(b bundle, g rlGrant) (string, string) { return clientID, "" }, 400, "required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, sandbox.Options{})
			key, rt := tt.prepare(b, b.rlAuthenticate(t))
			status, g := b.rlToken(t, "auth/refreshToken", map[string]string{"apiKey": key, "refreshToken": rt})
			require.Equal(t, tt.status, status)
			if tt.status == http.StatusOK {
				require.NotEmpty(t, g.RefreshToken)
				return
			}
			require.Empty(t, g.AccessToken)
			require.Contains(t, g.Meta.Errors[0].Text, tt.reason)
			require.Equal(t, 2, b.sb.TotalTokenCalls())
		})
	}
}

func TestRedoxLegacyIdleLimitSetting(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Options{})
	b.sb.SetRedoxLegacyRefreshIdleLimit(time.Hour)
	g := b.rlAuthenticate(t)
	b.clock.Advance(time.Hour - time.Second)
	status, g := b.rlRefresh(t, g.RefreshToken)
	require.Equal(t, http.StatusOK, status, "the idle time restarts at every use")
	b.clock.Advance(time.Hour - time.Second)
	status, g = b.rlRefresh(t, g.RefreshToken)
	require.Equal(t, http.StatusOK, status)
	b.clock.Advance(time.Hour)
	require.Equal(t, sandbox.RedoxLegacyRefreshExpired, b.rlState(t, g.RefreshToken))
	status, _ = b.rlRefresh(t, g.RefreshToken)
	require.Equal(t, http.StatusUnauthorized, status)
}

// TestRedoxLegacyConcurrentRefresh: of concurrent uses of one refresh token,
// exactly one gets the next; the others are reuses, which revoke the chain.
func TestRedoxLegacyConcurrentRefresh(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Options{})
	g := b.rlAuthenticate(t)
	const n = 8
	body := `{"apiKey":"` + clientID + `","refreshToken":"` + g.RefreshToken + `"}`
	statuses := make([]int, n)
	grants := make([]rlGrant, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			resp, err := b.srv.Client().Post(b.srv.URL+sandbox.RedoxLegacyPath+"auth/refreshToken", "application/json",
				strings.NewReader(body))
			if err != nil {
				errs[i] = err
				return
			}
			defer resp.Body.Close()
			statuses[i] = resp.StatusCode
			errs[i] = json.NewDecoder(resp.Body).Decode(&grants[i])
		})
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	won := 0
	for i, s := range statuses {
		if s == http.StatusOK {
			won++
			require.Equal(t, sandbox.RedoxLegacyRefreshRevoked, b.rlState(t, grants[i].RefreshToken))
			continue
		}
		require.Equal(t, http.StatusUnauthorized, s)
	}
	require.Equal(t, 1, won)
	require.Equal(t, sandbox.RedoxLegacyStats{Authenticate: 1, Refresh: n, RefreshRefused: n - 1, Reuses: n - 1, Chains: 1},
		b.sb.RedoxLegacyStats(clientID))
}

func TestRedoxLegacyRefreshTokensAreBounded(t *testing.T) {
	t.Parallel()
	clock := testenv.NewClock(t0)
	sb := sandbox.New(sandbox.Options{Clock: clock.Now})
	sb.AddClient(clientID, goodSecret)
	body := `{"apiKey":"` + clientID + `","secret":"` + goodSecret + `"}`
	var first string
	for i := range 1005 {
		req := httptest.NewRequest(http.MethodPost, sandbox.RedoxLegacyPath+"auth/authenticate", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		sb.Handler().ServeHTTP(rec, req)
		require.Equal(t, http.StatusOK, rec.Code)
		if i == 0 {
			var g rlGrant
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &g))
			first = g.RefreshToken
		}
	}
	rts := sb.RedoxLegacyRefreshTokens(clientID)
	require.Len(t, rts, 1000)
	require.Equal(t, 6, rts[0].Chain, "the oldest are forgotten")
	require.Equal(t, 1005, rts[999].Chain)

	req := httptest.NewRequest(http.MethodPost, sandbox.RedoxLegacyPath+"auth/refreshToken",
		strings.NewReader(`{"apiKey":"`+clientID+`","refreshToken":"`+first+`"}`))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	sb.Handler().ServeHTTP(rec, req)
	require.Equal(t, http.StatusUnauthorized, rec.Code)
	require.Contains(t, rec.Body.String(), "unknown")
}

func TestRedoxLegacyEndpoint(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Options{})
	g := b.rlAuthenticate(t)

	resp := b.rlSend(t, g.AccessToken, rlMessage)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var answer struct {
		Meta struct {
			DataModel, EventType string
			Destinations         []struct{ ID, Name string }
			Message              struct{ ID string }
			Errors               []any
		}
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&answer))
	require.Equal(t, "PatientAdmin", answer.Meta.DataModel)
	require.Equal(t, "Arrival", answer.Meta.EventType)
	require.Equal(t, "af394f14", answer.Meta.Destinations[0].ID)
	require.NotEmpty(t, answer.Meta.Message.ID)
	require.Empty(t, answer.Meta.Errors)

	for _, tt := range []struct{ name, body, missing string }{
		{"no Meta", `{"Patient":{}}`, "Meta"},
		{"no DataModel", `{"Meta":{"EventType":"Arrival","Destinations":[{"ID":"d"}]}}`, "Meta.DataModel"},
		{"no EventType", `{"Meta":{"DataModel":"PatientAdmin","Destinations":[{"ID":"d"}]}}`, "Meta.EventType"},
		{"no Destinations", `{"Meta":{"DataModel":"PatientAdmin","EventType":"Arrival"}}`, "Meta.Destinations"},
		{"a Destination without ID", `{"Meta":{"DataModel":"PatientAdmin","EventType":"Arrival","Destinations":[{"ID":"d"},{"Name":"x"}]}}`,
			"Meta.Destinations[].ID"},
		{"not JSON", `Meta`, "JSON"},
	} {
		resp := b.rlSend(t, g.AccessToken, tt.body)
		require.Equal(t, http.StatusBadRequest, resp.StatusCode, tt.name)
		var e rlGrant
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&e))
		require.Contains(t, e.Meta.Errors[0].Text, tt.missing, tt.name)
	}

	// Bad tokens get 401 and are counted like on the other APIs.
	require.Equal(t, http.StatusUnauthorized, b.rlSend(t, "", rlMessage).StatusCode)
	require.Equal(t, http.StatusUnauthorized, b.rlSend(t, g.RefreshToken, rlMessage).StatusCode, "a refresh token is no access token")
	require.Equal(t, http.StatusUnauthorized, b.rlSend(t, b.halaxyToken(t), rlMessage).StatusCode, "another API's token")
	require.Equal(t, 3, b.sb.UnknownUses())
	b.clock.Advance(rlDay - time.Millisecond)
	require.Equal(t, http.StatusOK, b.rlSend(t, g.AccessToken, rlMessage).StatusCode)
	b.clock.Advance(time.Millisecond)
	resp = b.rlSend(t, g.AccessToken, rlMessage)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "an expired token gets 401")
	require.Contains(t, resp.Header.Get("WWW-Authenticate"), "invalid_token")
	require.Equal(t, 1, b.sb.ExpiredUsesBy(clientID))

	fresh := b.rlAuthenticate(t)
	b.sb.DeleteClient(clientID)
	require.Equal(t, http.StatusUnauthorized, b.rlSend(t, fresh.AccessToken, rlMessage).StatusCode)
	require.Equal(t, 1, b.sb.RevokedUses())
}

func TestRedoxLegacyFaults(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Options{})
	g := b.rlAuthenticate(t)

	// Token faults hit both token endpoints, before the refresh token is
	// consumed.
	require.NoError(t, b.sb.Inject(sandbox.Fault{Kind: sandbox.FaultServerError, Status: 503, RetryAfter: 2 * time.Second, Times: 2}))
	resp := b.rlPost(t, "auth/authenticate", map[string]string{"apiKey": clientID, "secret": goodSecret})
	require.Equal(t, 503, resp.StatusCode)
	require.Equal(t, "2", resp.Header.Get("Retry-After"))
	status, _ := b.rlRefresh(t, g.RefreshToken)
	require.Equal(t, 503, status)
	require.Equal(t, sandbox.RedoxLegacyRefreshActive, b.rlState(t, g.RefreshToken))
	status, _ = b.rlRefresh(t, g.RefreshToken)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, 4, b.sb.TokenCalls(clientID))

	// Patient faults hit the data endpoint.
	require.NoError(t, b.sb.Inject(sandbox.Fault{Kind: sandbox.FaultRateLimited, Endpoint: sandbox.EndpointPatient,
		RetryAfter: 7 * time.Second, Times: 1}))
	resp = b.rlSend(t, g.AccessToken, rlMessage)
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	require.Equal(t, "7", resp.Header.Get("Retry-After"))
	require.Equal(t, http.StatusOK, b.rlSend(t, g.AccessToken, rlMessage).StatusCode)

	// A reset, with the client's client.
	require.NoError(t, b.sb.Inject(sandbox.Fault{Kind: sandbox.FaultReset, ClientID: clientID, Times: 1}))
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.srv.URL+sandbox.RedoxLegacyPath+"auth/authenticate",
		strings.NewReader(`{"apiKey":"`+clientID+`","secret":"`+goodSecret+`"}`))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	_, err = b.srv.Client().Do(req)
	require.Error(t, err)
}

func TestRedoxLegacyControl(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Options{})
	do := func(method, path, body string) *http.Response {
		req, err := http.NewRequest(method, b.srv.URL+sandbox.ControlPath+path, strings.NewReader(body))
		require.NoError(t, err)
		return b.do(t, req)
	}
	resp := do(http.MethodGet, "redox-legacy/settings", "")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var settings map[string]string
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&settings))
	require.Equal(t, map[string]string{"token_lifetime": "24h0m0s", "refresh_idle_limit": "168h0m0s"}, settings)

	require.Equal(t, http.StatusNoContent, do(http.MethodPut, "redox-legacy/settings", `{"token_lifetime":"30m"}`).StatusCode)
	lifetime, idle := b.sb.RedoxLegacySettings()
	require.Equal(t, []time.Duration{30 * time.Minute, 7 * rlDay}, []time.Duration{lifetime, idle})
	require.Equal(t, http.StatusNoContent, do(http.MethodPut, "redox-legacy/settings", `{"refresh_idle_limit":"2h"}`).StatusCode)
	lifetime, idle = b.sb.RedoxLegacySettings()
	require.Equal(t, []time.Duration{30 * time.Minute, 2 * time.Hour}, []time.Duration{lifetime, idle})
	require.Equal(t, http.StatusBadRequest, do(http.MethodPut, "redox-legacy/settings", `{"token_lifetime":"soon"}`).StatusCode)
	require.Equal(t, http.StatusBadRequest, do(http.MethodPut, "redox-legacy/settings", `{"lifetime":"1h"}`).StatusCode)

	g := b.rlAuthenticate(t)
	b.rlRefresh(t, g.RefreshToken)
	resp = do(http.MethodGet, "redox-legacy/clients/"+clientID+"/stats", "")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var stats map[string]int
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&stats))
	require.Equal(t, map[string]int{"authenticate": 1, "refresh": 1, "refresh_refused": 0, "reuses": 0, "chains": 1}, stats)
}
