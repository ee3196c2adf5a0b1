package sandbox_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/internal/testenv"
	"github.com/tokenrelay/tokenrelay/vendors/sandbox"
)

const hsAccount = "clinic-7"

// hsT0 is when the clock of hsSetup starts.
var hsT0 = t0

type hsBundle struct {
	sb    *sandbox.Sandbox
	srv   *httptest.Server
	clock *testenv.Clock
}

func hsSetup(t *testing.T) hsBundle {
	t.Helper()
	return hsBundle(start(t, sandbox.Options{}))
}

// hsDo sends a request to the HealthSync API (path relative to its base)
// with a bearer token, and returns the answer and its body.
func (b hsBundle) hsDo(t *testing.T, method, path, token string, body any) (*http.Response, []byte) {
	t.Helper()
	var r io.Reader
	if body != nil {
		js, err := json.Marshal(body)
		require.NoError(t, err)
		r = bytes.NewReader(js)
	}
	req, err := http.NewRequest(method, b.srv.URL+sandbox.HealthSyncPath+path, r)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return b.hsSend(t, req)
}

func (b hsBundle) hsSend(t *testing.T, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := b.srv.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, data
}

// hsToken posts form to the token endpoint, with Basic credentials when id
// is set.
func (b hsBundle) hsToken(t *testing.T, form url.Values, id, secret string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, b.srv.URL+sandbox.HealthSyncPath+"oauth/token", strings.NewReader(form.Encode()))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if id != "" {
		req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	}
	resp, data := b.hsSend(t, req)
	var out map[string]any
	require.NoError(t, json.Unmarshal(data, &out), string(data))
	return resp.StatusCode, out
}

func TestHealthSyncReads(t *testing.T) {
	t.Parallel()
	b := hsSetup(t)
	_, key := b.sb.AddHealthSyncKey(hsAccount, []string{"read"})

	resp, body := b.hsDo(t, http.MethodGet, "records?limit=1", key, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var page struct {
		Data    []map[string]any `json:"data"`
		HasMore bool             `json:"has_more"`
	}
	require.NoError(t, json.Unmarshal(body, &page))
	require.Len(t, page.Data, 1)
	require.True(t, page.HasMore)
	require.Equal(t, "100", resp.Header.Get("X-RateLimit-Limit"), "Plus by default")
	require.Equal(t, "99", resp.Header.Get("X-RateLimit-Remaining"))

	resp, body = b.hsDo(t, http.MethodGet, "patients", key, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.NoError(t, json.Unmarshal(body, &page))
	require.Len(t, page.Data, 2)
	require.False(t, page.HasMore)

	for _, q := range []string{"0", "101", "x"} {
		resp, _ = b.hsDo(t, http.MethodGet, "records?limit="+q, key, nil)
		require.Equal(t, http.StatusBadRequest, resp.StatusCode, q)
	}

	// No token, or a token from another API: 401, counted as unknown.
	resp, _ = b.hsDo(t, http.MethodGet, "records", "", nil)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	require.Contains(t, resp.Header.Get("WWW-Authenticate"), "invalid_token")
	require.Equal(t, 1, b.sb.UnknownUses())
	require.Zero(t, b.sb.RevokedUses())
}

func TestHealthSyncKeyManagementHTTP(t *testing.T) {
	t.Parallel()
	b := hsSetup(t)
	oldID, oldKey := b.sb.AddHealthSyncKey(hsAccount, []string{"records:read", "records:write"})

	resp, body := b.hsDo(t, http.MethodPost, "keys", oldKey, map[string]any{"name": "next"})
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	var created struct {
		ID, Key, Name string
		Scopes        []string
		CreatedAt     time.Time `json:"created_at"`
	}
	require.NoError(t, json.Unmarshal(body, &created))
	require.NotEmpty(t, created.Key)
	require.Equal(t, []string{"records:read", "records:write"}, created.Scopes)
	require.Equal(t, hsT0, created.CreatedAt)

	// The list and the current key never show a key's secret.
	resp, body = b.hsDo(t, http.MethodGet, "keys", created.Key, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.NotContains(t, string(body), created.Key)
	require.NotContains(t, string(body), oldKey)
	require.Contains(t, string(body), oldID)
	resp, body = b.hsDo(t, http.MethodGet, "keys/current", created.Key, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.NotContains(t, string(body), created.Key)
	require.Contains(t, string(body), created.ID)

	for _, tt := range []struct {
		body   any
		status int
	}{
		{map[string]any{"scopes": []string{}}, http.StatusBadRequest},
		{map[string]any{"scopes": []string{"admin"}}, http.StatusBadRequest},
		{map[string]any{"scopes": []string{"records:delete"}}, http.StatusForbidden},
		{map[string]any{"name": strings.Repeat("n", 101)}, http.StatusBadRequest},
		{"not an object", http.StatusBadRequest},
	} {
		resp, _ = b.hsDo(t, http.MethodPost, "keys", oldKey, tt.body)
		require.Equal(t, tt.status, resp.StatusCode, "%v", tt.body)
	}

	resp, _ = b.hsDo(t, http.MethodDelete, "keys/"+oldID, created.Key, nil)
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	resp, _ = b.hsDo(t, http.MethodDelete, "keys/"+oldID, created.Key, nil)
	require.Equal(t, http.StatusNotFound, resp.StatusCode, "already revoked")
	resp, _ = b.hsDo(t, http.MethodGet, "keys", oldKey, nil)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	require.Equal(t, 1, b.sb.RevokedUses())

	keys := b.sb.HealthSyncKeys(hsAccount)
	require.Len(t, keys, 2)
	require.True(t, keys[0].Revoked)
	require.Equal(t, "next", keys[1].Name)
	require.Equal(t, 4, keys[1].Uses)
	require.False(t, b.sb.RevokeHealthSyncKey(oldID), "already revoked")
	require.False(t, b.sb.RevokeHealthSyncKey("key_nope"))
}

func TestHealthSyncTokenEndpoint(t *testing.T) {
	t.Parallel()
	b := hsSetup(t)
	b.sb.AddClient("app", "app-secret")
	b.sb.AddClient("other", "other-secret")
	rt := b.sb.GrantHealthSync(hsAccount, "app", []string{"read"})
	refresh := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}

	status, out := b.hsToken(t, refresh, "other", "other-secret")
	require.Equal(t, http.StatusBadRequest, status)
	require.Equal(t, "invalid_grant", out["error"], "another client's refresh token")
	status, out = b.hsToken(t, url.Values{"grant_type": {"refresh_token"}}, "app", "app-secret")
	require.Equal(t, http.StatusBadRequest, status)
	require.Equal(t, "invalid_request", out["error"])
	status, out = b.hsToken(t, url.Values{"grant_type": {"password"}}, "app", "app-secret")
	require.Equal(t, http.StatusBadRequest, status)
	require.Equal(t, "unsupported_grant_type", out["error"])
	status, out = b.hsToken(t, refresh, "app", "wrong")
	require.Equal(t, http.StatusUnauthorized, status)
	require.Equal(t, "invalid_client", out["error"])
	both := url.Values{"grant_type": {"client_credentials"}, "client_secret": {"app-secret"}}
	status, out = b.hsToken(t, both, "app", "app-secret")
	require.Equal(t, http.StatusBadRequest, status)
	require.Equal(t, "invalid_request", out["error"])

	// Still unused: the refusals above did not spend it.
	status, out = b.hsToken(t, refresh, "app", "app-secret")
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, "Bearer", out["token_type"])
	require.EqualValues(t, 900, out["expires_in"])
	require.Equal(t, "read", out["scope"])
	require.NotEmpty(t, out["refresh_token"])
	require.Equal(t, 5, b.sb.TokenCalls("app"))
	require.Equal(t, 1, b.sb.TokenCalls("other"))

	// Body credentials work too; an unregistered service account reads for
	// the account named after it.
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {"other"}, "client_secret": {"other-secret"}}
	status, out = b.hsToken(t, form, "", "")
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, "read", out["scope"])
	tok := out["access_token"].(string)
	b.sb.SetHealthSyncPlan("other", 7)
	resp, _ := b.hsDo(t, http.MethodGet, "records", tok, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "7", resp.Header.Get("X-RateLimit-Limit"))
	resp, _ = b.hsDo(t, http.MethodGet, "keys", tok, nil)
	require.Equal(t, http.StatusForbidden, resp.StatusCode, "key management needs an API key")

	// Not a form.
	req, err := http.NewRequest(http.MethodPost, b.srv.URL+sandbox.HealthSyncPath+"oauth/token", strings.NewReader(`{"grant_type":"client_credentials"}`))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.SetBasicAuth("app", "app-secret")
	resp, _ = b.hsSend(t, req)
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
}

// TestHealthSyncConcurrentRefresh: of two refreshes racing with one
// rotating refresh token, exactly one wins.
func TestHealthSyncConcurrentRefresh(t *testing.T) {
	t.Parallel()
	b := hsSetup(t)
	b.sb.AddClient("app", "app-secret")
	rt := b.sb.GrantHealthSync(hsAccount, "app", []string{"read"})
	refresh := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
	const n = 8
	statuses := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			// No require here: it must not stop the test from another goroutine.
			req, err := http.NewRequest(http.MethodPost, b.srv.URL+sandbox.HealthSyncPath+"oauth/token", strings.NewReader(refresh.Encode()))
			if err != nil {
				return
			}
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.SetBasicAuth("app", "app-secret")
			resp, err := b.srv.Client().Do(req)
			if err != nil {
				return
			}
			resp.Body.Close()
			statuses[i] = resp.StatusCode
		})
	}
	wg.Wait()
	ok := 0
	for _, s := range statuses {
		if s == http.StatusOK {
			ok++
		} else {
			require.Equal(t, http.StatusBadRequest, s)
		}
	}
	require.Equal(t, 1, ok)
	require.Len(t, b.sb.IssuedTokens("app"), 1)
}

func TestHealthSyncFaults(t *testing.T) {
	t.Parallel()
	b := hsSetup(t)
	b.sb.AddClient("app", "app-secret")
	keyID, key := b.sb.AddHealthSyncKey(hsAccount, []string{"read"})
	_, other := b.sb.AddHealthSyncKey(hsAccount, []string{"read"})

	require.NoError(t, b.sb.Inject(sandbox.Fault{ClientID: keyID, Endpoint: sandbox.EndpointPatient, Kind: sandbox.FaultServerError, Status: 503}))
	resp, _ := b.hsDo(t, http.MethodGet, "records", key, nil)
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	resp, _ = b.hsDo(t, http.MethodGet, "records", other, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, "the fault is the other key's")
	b.sb.ClearFaults()

	// Token faults hit the token endpoint, not the API.
	require.NoError(t, b.sb.Inject(sandbox.Fault{Kind: sandbox.FaultRateLimited, RetryAfter: 3 * time.Second}))
	resp, _ = b.hsDo(t, http.MethodGet, "records", key, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	status, out := b.hsToken(t, url.Values{"grant_type": {"client_credentials"}}, "app", "app-secret")
	require.Equal(t, http.StatusTooManyRequests, status)
	require.Equal(t, "rate_limited", out["error"])
}

func TestHealthSyncControlHTTP(t *testing.T) {
	t.Parallel()
	b := hsSetup(t)
	ctl := func(method, path, body string) (*http.Response, []byte) {
		req, err := http.NewRequest(method, b.srv.URL+sandbox.ControlPath+"healthsync/"+path, strings.NewReader(body))
		require.NoError(t, err)
		return b.hsSend(t, req)
	}
	resp, body := ctl(http.MethodPost, "keys", `{"account":"clinic-7","scopes":["read"]}`)
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	var k struct{ ID, Key string }
	require.NoError(t, json.Unmarshal(body, &k))
	resp, _ = b.hsDo(t, http.MethodGet, "records", k.Key, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)

	resp, body = ctl(http.MethodGet, "accounts/clinic-7/keys", "")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var keys []struct {
		ID      string
		Uses    int
		Revoked bool
	}
	require.NoError(t, json.Unmarshal(body, &keys))
	require.Len(t, keys, 1)
	require.Equal(t, k.ID, keys[0].ID)
	require.Equal(t, 1, keys[0].Uses)
	require.NotContains(t, string(body), k.Key)

	resp, _ = ctl(http.MethodPut, "accounts/clinic-7/plan", `{"limit":1}`)
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	resp, _ = b.hsDo(t, http.MethodGet, "records", k.Key, nil)
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	require.Equal(t, "3600", resp.Header.Get("Retry-After"))

	resp, _ = ctl(http.MethodDelete, "keys/"+k.ID, "")
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	resp, _ = ctl(http.MethodDelete, "keys/"+k.ID, "")
	require.Equal(t, http.StatusNotFound, resp.StatusCode)

	resp, _ = ctl(http.MethodPost, "service-accounts", `{"account":"clinic-7","client_id":"svc","client_secret":"s","scopes":["read"]}`)
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	resp, _ = ctl(http.MethodPost, "grants", `{"account":"clinic-7","client_id":"svc","scopes":["read"]}`)
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	resp, body = ctl(http.MethodDelete, "grants/clinic-7/svc", "")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.JSONEq(t, `{"revoked":1}`, string(body))
	resp, _ = ctl(http.MethodPut, "settings", `{"refresh_rotation":false}`)
	require.Equal(t, http.StatusNoContent, resp.StatusCode)

	for _, bad := range []struct{ method, path, body string }{
		{http.MethodPost, "keys", `{}`},
		{http.MethodPost, "keys", `{"account":"a","extra":1}`},
		{http.MethodPost, "service-accounts", `{"account":"a"}`},
		{http.MethodPost, "grants", `{"client_id":"a"}`},
	} {
		resp, _ = ctl(bad.method, bad.path, bad.body)
		require.Equal(t, http.StatusBadRequest, resp.StatusCode, bad.body)
	}
}
