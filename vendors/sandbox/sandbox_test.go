package sandbox_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
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

const (
	testUA     = "Acme Sync (ops@acme.example)"
	clientID   = "client-1"
	goodSecret = "s3cr3t-value-of-client-1"
)

var t0 = time.Date(2025, 3, 4, 10, 0, 0, 0, time.UTC)

type bundle struct {
	sb    *sandbox.Sandbox
	srv   *httptest.Server
	clock *testenv.Clock
}

// setup starts a sandbox (see start) with the client clientID.
func setup(t *testing.T, opts sandbox.Options) bundle {
	t.Helper()
	b := start(t, opts)
	b.sb.AddClient(clientID, goodSecret)
	return b
}

// start starts a sandbox made with opts, on a manual clock at t0, on a test
// server closed at the end of the test.
func start(t *testing.T, opts sandbox.Options) bundle {
	t.Helper()
	clock := testenv.NewClock(t0)
	opts.Clock = clock.Now
	sb := sandbox.New(opts)
	srv := httptest.NewServer(sb.Handler())
	t.Cleanup(srv.Close)
	return bundle{sb: sb, srv: srv, clock: clock}
}

// do sends req to the sandbox; the answer's body is closed at the end of the test.
func (b bundle) do(t *testing.T, req *http.Request) *http.Response {
	t.Helper()
	resp, err := b.srv.Client().Do(req)
	require.NoError(t, err)
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// halaxyTokenRequest builds a Halaxy token request with the right headers;
// edit lets a test break one.
func (b bundle) halaxyTokenRequest(t *testing.T, id, secret string, edit func(*http.Request)) *http.Response {
	t.Helper()
	body, err := json.Marshal(map[string]string{"grant_type": "client_credentials", "client_id": id, "client_secret": secret})
	require.NoError(t, err)
	req, err := http.NewRequest(http.MethodPost, b.srv.URL+sandbox.HalaxyPath+"oauth/token", bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Accept", "application/fhir+json")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", testUA)
	if edit != nil {
		edit(req)
	}
	return b.do(t, req)
}

type tokenAnswer struct {
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
	AccessToken string `json:"access_token"`
	Scope       string `json:"scope"`
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

func decodeAnswer(t *testing.T, resp *http.Response) tokenAnswer {
	t.Helper()
	var a tokenAnswer
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&a))
	return a
}

func (b bundle) halaxyToken(t *testing.T) string {
	t.Helper()
	resp := b.halaxyTokenRequest(t, clientID, goodSecret, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	return decodeAnswer(t, resp).AccessToken
}

func (b bundle) patient(t *testing.T, base, token string, edit func(*http.Request)) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, b.srv.URL+base+"Patient", nil)
	require.NoError(t, err)
	req.Header.Set("Accept", "application/fhir+json")
	req.Header.Set("User-Agent", testUA)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if edit != nil {
		edit(req)
	}
	return b.do(t, req)
}

func TestHalaxyTokenQuirks(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Options{})
	resp := b.halaxyTokenRequest(t, clientID, goodSecret, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	a := decodeAnswer(t, resp)
	require.Equal(t, "Bearer", a.TokenType)
	require.EqualValues(t, 3600, a.ExpiresIn, "Halaxy claims an hour")
	require.NotEmpty(t, a.AccessToken)
	require.Equal(t, []string{a.AccessToken}, b.sb.IssuedTokens(clientID))
	require.Equal(t, []time.Time{t0}, b.sb.TokenCallTimes(clientID))

	// The token works for 15 minutes, not an hour.
	require.Equal(t, http.StatusOK, b.patient(t, sandbox.HalaxyPath, a.AccessToken, nil).StatusCode)
	b.clock.Advance(15*time.Minute - time.Second)
	require.Equal(t, http.StatusOK, b.patient(t, sandbox.HalaxyPath, a.AccessToken, nil).StatusCode)
	b.clock.Advance(time.Second)
	resp = b.patient(t, sandbox.HalaxyPath, a.AccessToken, nil)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	require.Contains(t, resp.Header.Get("WWW-Authenticate"), "invalid_token")
	require.Equal(t, 1, b.sb.ExpiredUses())
	require.Equal(t, 1, b.sb.ExpiredUsesBy(clientID))
	require.Zero(t, b.sb.UnknownUses())
}

func TestHalaxyTokenRefusals(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		id     string
		secret string
		edit   func(*http.Request)
		status int
		code   string
	}{
		{"no accept", clientID, goodSecret, func(r *http.Request) { r.Header.Del("Accept") }, 406, "invalid_request"},
		{"json accept", clientID, goodSecret, func(r *http.Request) { r.Header.Set("Accept", "application/json") }, 406, "invalid_request"},
		{"no user agent", clientID, goodSecret, func(r *http.Request) { r.Header.Set("User-Agent", "") }, 400, "invalid_request"},
		{"user agent without email", clientID, goodSecret, func(r *http.Request) { r.Header.Set("User-Agent", "Acme Sync") }, 400, "invalid_request"},
		{"form body", clientID, goodSecret, func(r *http.Request) {
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}, 415, "invalid_request"},
		{"wrong secret", clientID, "nope", nil, 401, "invalid_client"},
		{"unknown client", "who", goodSecret, nil, 401, "invalid_client"},
		{"no client", "", "", nil, 401, "invalid_client"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, sandbox.Options{})
			resp := b.halaxyTokenRequest(t, tt.id, tt.secret, tt.edit)
			require.Equal(t, tt.status, resp.StatusCode)
			a := decodeAnswer(t, resp)
			require.Equal(t, tt.code, a.Error)
			require.NotEmpty(t, a.Description)
			require.Empty(t, a.AccessToken)
			require.Equal(t, 1, b.sb.TokenCalls(tt.id), "every request is counted, refused or not")
			require.Equal(t, 1, b.sb.TotalTokenCalls())
		})
	}
}

func TestHalaxyBadGrantAndBody(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Options{})
	post := func(body string) *http.Response {
		req, err := http.NewRequest(http.MethodPost, b.srv.URL+sandbox.HalaxyPath+"oauth/token", strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Accept", "application/fhir+json")
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("User-Agent", testUA)
		return b.do(t, req)
	}
	resp := post(`{"grant_type":"password","client_id":"client-1","client_secret":"x"}`)
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	require.Equal(t, "unsupported_grant_type", decodeAnswer(t, resp).Error)
	resp = post(`not json`)
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	require.Equal(t, "invalid_request", decodeAnswer(t, resp).Error)
	require.Equal(t, 1, b.sb.TokenCalls(""), "a body without a client id counts under \"\"")
	require.Equal(t, 2, b.sb.TotalTokenCalls())
}

func TestPatient(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Options{})
	tok := b.halaxyToken(t)
	resp := b.patient(t, sandbox.HalaxyPath, tok, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "application/fhir+json", resp.Header.Get("Content-Type"))
	require.Equal(t, "500", resp.Header.Get("x-ratelimit-limit"))
	require.Equal(t, "499", resp.Header.Get("x-ratelimit-remaining"))
	var got struct {
		ResourceType string `json:"resourceType"`
		Type         string `json:"type"`
		Total        int    `json:"total"`
		Entry        []struct {
			FullURL  string `json:"fullUrl"`
			Resource struct {
				ResourceType string `json:"resourceType"`
				ID           string `json:"id"`
			} `json:"resource"`
		} `json:"entry"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&got))
	require.Equal(t, "Bundle", got.ResourceType)
	require.Equal(t, "searchset", got.Type)
	require.GreaterOrEqual(t, got.Total, 2)
	require.Len(t, got.Entry, got.Total)
	for _, e := range got.Entry {
		require.Equal(t, "Patient", e.Resource.ResourceType)
		require.Equal(t, b.srv.URL+sandbox.HalaxyPath+"Patient/"+e.Resource.ID, e.FullURL)
	}

	// Halaxy's header requirements hold on FHIR requests too.
	resp = b.patient(t, sandbox.HalaxyPath, tok, func(r *http.Request) { r.Header.Set("Accept", "application/json") })
	require.Equal(t, http.StatusNotAcceptable, resp.StatusCode)
	resp = b.patient(t, sandbox.HalaxyPath, tok, func(r *http.Request) { r.Header.Set("User-Agent", "curl/8") })
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	require.Zero(t, b.sb.ExpiredUses()+b.sb.UnknownUses())
}

func TestBadTokensAreCounted(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Options{})
	require.Equal(t, http.StatusUnauthorized, b.patient(t, sandbox.HalaxyPath, "made-up", nil).StatusCode)
	require.Equal(t, http.StatusUnauthorized, b.patient(t, sandbox.HalaxyPath, "", nil).StatusCode)
	require.Equal(t, 2, b.sb.UnknownUses())

	// A token is valid only on the API that issued it.
	tok := b.halaxyToken(t)
	require.Equal(t, http.StatusUnauthorized, b.patient(t, sandbox.OAuth2Path, tok, nil).StatusCode)
	require.Equal(t, 3, b.sb.UnknownUses())

	// Deleting the client kills its tokens at once; adding it again does
	// not bring them back.
	b.sb.DeleteClient(clientID)
	require.Equal(t, http.StatusUnauthorized, b.patient(t, sandbox.HalaxyPath, tok, nil).StatusCode)
	b.sb.AddClient(clientID, goodSecret)
	require.Equal(t, http.StatusUnauthorized, b.patient(t, sandbox.HalaxyPath, tok, nil).StatusCode)
	require.Equal(t, 2, b.sb.RevokedUses())
	require.Zero(t, b.sb.ExpiredUses())

	b.sb.Reset()
	require.Zero(t, b.sb.UnknownUses()+b.sb.RevokedUses()+b.sb.TotalTokenCalls())
	require.Empty(t, b.sb.IssuedTokens(clientID))
	require.Equal(t, http.StatusOK, b.patient(t, sandbox.HalaxyPath, b.halaxyToken(t), nil).StatusCode,
		"Reset keeps clients and tokens")
}

func TestDeletedClientGetsInvalidClient(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Options{})
	b.sb.DeleteClient(clientID)
	resp := b.halaxyTokenRequest(t, clientID, goodSecret, nil)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	require.Equal(t, "invalid_client", decodeAnswer(t, resp).Error)
	require.Empty(t, b.sb.Clients())
}

func TestSettings(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Options{RealTokenLifetime: time.Minute, ClaimedExpiresIn: 90 * time.Second})
	resp := b.halaxyTokenRequest(t, clientID, goodSecret, nil)
	a := decodeAnswer(t, resp)
	require.EqualValues(t, 90, a.ExpiresIn)

	b.sb.SetRealTokenLifetime(2 * time.Minute)
	b.sb.SetClaimedExpiresIn(0)
	a2 := decodeAnswer(t, b.halaxyTokenRequest(t, clientID, goodSecret, nil))
	require.EqualValues(t, 0, a2.ExpiresIn, "a broken claim is sent as is")

	b.clock.Advance(time.Minute)
	require.Equal(t, http.StatusUnauthorized, b.patient(t, sandbox.HalaxyPath, a.AccessToken, nil).StatusCode)
	require.Equal(t, http.StatusOK, b.patient(t, sandbox.HalaxyPath, a2.AccessToken, nil).StatusCode,
		"the new lifetime applies to tokens issued after the change")
}

func oauth2Post(t *testing.T, b bundle, form url.Values, basicID, basicSecret string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, b.srv.URL+sandbox.OAuth2Path+"token", strings.NewReader(form.Encode()))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basicID != "" {
		req.SetBasicAuth(url.QueryEscape(basicID), url.QueryEscape(basicSecret))
	}
	return b.do(t, req)
}

func TestOAuth2Token(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Options{RealTokenLifetime: 5 * time.Minute})
	b.sb.AddClient("odd id&=", "odd secret:+/")
	grant := url.Values{"grant_type": {"client_credentials"}}
	withCreds := func(id, secret string) url.Values {
		v := url.Values{"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {secret}}
		return v
	}
	tests := []struct {
		name        string
		form        url.Values
		basicID     string
		basicSecret string
		status      int
		code        string
	}{
		{"basic", grant, clientID, goodSecret, 200, ""},
		{"basic with escaped characters", grant, "odd id&=", "odd secret:+/", 200, ""},
		{"in params", withCreds(clientID, goodSecret), "", "", 200, ""},
		{"both", withCreds(clientID, goodSecret), clientID, goodSecret, 400, "invalid_request"},
		{"wrong secret", grant, clientID, "nope", 401, "invalid_client"},
		{"wrong secret in params", withCreds(clientID, "nope"), "", "", 401, "invalid_client"},
		{"no grant", url.Values{}, clientID, goodSecret, 400, "unsupported_grant_type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := oauth2Post(t, b, tt.form, tt.basicID, tt.basicSecret)
			require.Equal(t, tt.status, resp.StatusCode)
			a := decodeAnswer(t, resp)
			require.Equal(t, tt.code, a.Error)
			if tt.status == 200 {
				require.Equal(t, "Bearer", a.TokenType)
				require.EqualValues(t, 300, a.ExpiresIn, "the generic server says the truth")
				require.Equal(t, http.StatusOK, b.patient(t, sandbox.OAuth2Path, a.AccessToken,
					func(r *http.Request) { r.Header.Del("User-Agent"); r.Header.Del("Accept") }).StatusCode)
			}
		})
	}
	resp := oauth2Post(t, b, url.Values{"grant_type": {"client_credentials"}, "scope": {"patient/*.read"}}, clientID, goodSecret)
	require.Equal(t, "patient/*.read", decodeAnswer(t, resp).Scope)
}

func TestHalaxyRateLimit(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Options{HalaxyRateLimit: 3})
	tok := b.halaxyToken(t)
	for i := range 3 {
		resp := b.patient(t, sandbox.HalaxyPath, tok, nil)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Equal(t, "3", resp.Header.Get("x-ratelimit-limit"))
		require.Equal(t, []string{string(rune('2' - i))}, resp.Header.Values("x-ratelimit-remaining"))
		b.clock.Advance(10 * time.Second)
	}
	resp := b.patient(t, sandbox.HalaxyPath, tok, nil)
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	require.Equal(t, "30", resp.Header.Get("retry-after"), "the first request leaves the window 30 s later")
	require.Equal(t, "0", resp.Header.Get("x-ratelimit-remaining"))

	b.clock.Advance(30 * time.Second)
	require.Equal(t, http.StatusOK, b.patient(t, sandbox.HalaxyPath, tok, nil).StatusCode)

	// The generic API has no limit.
	resp = oauth2Post(t, b, url.Values{"grant_type": {"client_credentials"}}, clientID, goodSecret)
	otok := decodeAnswer(t, resp).AccessToken
	for range 5 {
		resp := b.patient(t, sandbox.OAuth2Path, otok, nil)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Empty(t, resp.Header.Get("x-ratelimit-limit"))
	}
}

func TestFaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		fault sandbox.Fault
		check func(t *testing.T, resp *http.Response, err error)
	}{
		{"server error", sandbox.Fault{Kind: sandbox.FaultServerError, Status: 503, RetryAfter: 2500 * time.Millisecond},
			func(t *testing.T, resp *http.Response, err error) {
				require.NoError(t, err)
				require.Equal(t, 503, resp.StatusCode)
				require.Equal(t, "3", resp.Header.Get("Retry-After"))
			}},
		{"rate limited", sandbox.Fault{Kind: sandbox.FaultRateLimited, RetryAfter: 7 * time.Second},
			func(t *testing.T, resp *http.Response, err error) {
				require.NoError(t, err)
				require.Equal(t, 429, resp.StatusCode)
				require.Equal(t, "7", resp.Header.Get("Retry-After"))
			}},
		{"malformed", sandbox.Fault{Kind: sandbox.FaultMalformed},
			func(t *testing.T, resp *http.Response, err error) {
				require.NoError(t, err)
				require.Equal(t, 200, resp.StatusCode)
				var v any
				require.Error(t, json.NewDecoder(resp.Body).Decode(&v))
			}},
		{"reset", sandbox.Fault{Kind: sandbox.FaultReset},
			func(t *testing.T, resp *http.Response, err error) {
				require.Error(t, err)
			}},
		{"latency", sandbox.Fault{Kind: sandbox.FaultLatency, Latency: time.Hour},
			func(t *testing.T, resp *http.Response, err error) {
				require.ErrorIs(t, err, context.DeadlineExceeded)
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, sandbox.Options{})
			f := tt.fault
			f.Times = 1
			require.NoError(t, b.sb.Inject(f))
			timeout := 10 * time.Second
			if f.Kind == sandbox.FaultLatency {
				timeout = 100 * time.Millisecond
			}
			ctx, cancel := context.WithTimeout(t.Context(), timeout)
			defer cancel()
			body, _ := json.Marshal(map[string]string{"grant_type": "client_credentials", "client_id": clientID, "client_secret": goodSecret})
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, b.srv.URL+sandbox.HalaxyPath+"oauth/token", bytes.NewReader(body))
			req.Header.Set("Accept", "application/fhir+json")
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("User-Agent", testUA)
			resp, err := b.srv.Client().Do(req)
			if resp != nil {
				defer resp.Body.Close()
			}
			tt.check(t, resp, err)
			require.Equal(t, 1, b.sb.TokenCalls(clientID))
			require.Empty(t, b.sb.Faults(), "a fault with Times 1 is used up")
			require.NotEmpty(t, b.halaxyToken(t), "the next request is served")
		})
	}
}

func TestFaultMatching(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Options{})
	b.sb.AddClient("client-2", "other")
	require.NoError(t, b.sb.Inject(sandbox.Fault{ClientID: "client-2", Kind: sandbox.FaultServerError}))
	require.NoError(t, b.sb.Inject(sandbox.Fault{Endpoint: sandbox.EndpointPatient, Kind: sandbox.FaultRateLimited, Times: 2}))

	require.Equal(t, http.StatusInternalServerError, b.halaxyTokenRequest(t, "client-2", "other", nil).StatusCode)
	require.Equal(t, http.StatusInternalServerError, b.halaxyTokenRequest(t, "client-2", "other", nil).StatusCode,
		"Times 0 lasts until cleared")
	tok := b.halaxyToken(t)
	require.Equal(t, http.StatusTooManyRequests, b.patient(t, sandbox.HalaxyPath, tok, nil).StatusCode)
	require.Equal(t, []sandbox.Fault{
		{ClientID: "client-2", Endpoint: sandbox.EndpointToken, Kind: sandbox.FaultServerError, Status: 500},
		{Endpoint: sandbox.EndpointPatient, Kind: sandbox.FaultRateLimited, RetryAfter: time.Second, Times: 1},
	}, b.sb.Faults())
	require.Equal(t, http.StatusTooManyRequests, b.patient(t, sandbox.HalaxyPath, tok, nil).StatusCode)
	require.Equal(t, http.StatusOK, b.patient(t, sandbox.HalaxyPath, tok, nil).StatusCode)

	b.sb.ClearFaults()
	require.Equal(t, http.StatusOK, b.halaxyTokenRequest(t, "client-2", "other", nil).StatusCode)

	require.Error(t, b.sb.Inject(sandbox.Fault{Kind: "explode"}))
	require.Error(t, b.sb.Inject(sandbox.Fault{Kind: sandbox.FaultLatency}))
	require.Error(t, b.sb.Inject(sandbox.Fault{Kind: sandbox.FaultReset, Endpoint: "webhook"}))
}

func TestPatientFaults(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Options{})
	tok := b.halaxyToken(t)
	require.NoError(t, b.sb.Inject(sandbox.Fault{Endpoint: sandbox.EndpointAll, Kind: sandbox.FaultMalformed, Times: 1}))
	resp := b.patient(t, sandbox.HalaxyPath, tok, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "application/fhir+json", resp.Header.Get("Content-Type"))
	var v any
	require.Error(t, json.NewDecoder(resp.Body).Decode(&v))
}

func TestControlHTTP(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Options{})
	do := func(method, path, body string) (int, string) {
		req, err := http.NewRequest(method, b.srv.URL+sandbox.ControlPath+path, strings.NewReader(body))
		require.NoError(t, err)
		resp, err := b.srv.Client().Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		out, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(out)
	}

	code, _ := do("POST", "clients", `{"client_id":"c2","client_secret":"x2"}`)
	require.Equal(t, 204, code)
	code, out := do("GET", "clients", "")
	require.Equal(t, 200, code)
	require.JSONEq(t, `["c2","client-1"]`, out)
	require.NotContains(t, out, "x2", "secrets are not listed")
	code, _ = do("POST", "clients", `{"client_id":"c3"}`)
	require.Equal(t, 400, code)

	code, _ = do("PUT", "settings", `{"real_token_lifetime":"5m","claimed_expires_in":"2h"}`)
	require.Equal(t, 204, code)
	code, out = do("GET", "settings", "")
	require.Equal(t, 200, code)
	require.JSONEq(t, `{"real_token_lifetime":"5m0s","claimed_expires_in":"2h0m0s"}`, out)
	code, _ = do("PUT", "settings", `{"real_token_lifetime":"soon"}`)
	require.Equal(t, 400, code)

	code, _ = do("POST", "faults", `{"client_id":"c2","kind":"rate_limited","retry_after":"7s","times":1}`)
	require.Equal(t, 204, code)
	code, out = do("GET", "faults", "")
	require.Equal(t, 200, code)
	require.JSONEq(t, `[{"client_id":"c2","endpoint":"token","kind":"rate_limited","retry_after":"7s","times":1}]`, out)
	code, _ = do("POST", "faults", `{"kind":"explode"}`)
	require.Equal(t, 400, code)
	code, _ = do("POST", "faults", `{"kind":"latency","latency":"forever"}`)
	require.Equal(t, 400, code)

	resp := b.halaxyTokenRequest(t, "c2", "x2", nil)
	require.Equal(t, 429, resp.StatusCode)
	require.Equal(t, "7", resp.Header.Get("retry-after"))
	a := decodeAnswer(t, b.halaxyTokenRequest(t, "c2", "x2", nil))
	require.EqualValues(t, 7200, a.ExpiresIn)

	code, _ = do("POST", "faults", `{"kind":"server_error"}`)
	require.Equal(t, 204, code)
	code, _ = do("DELETE", "faults", "")
	require.Equal(t, 204, code)
	require.Empty(t, b.sb.Faults())

	code, out = do("GET", "stats", "")
	require.Equal(t, 200, code)
	var stats struct {
		TotalTokenCalls int `json:"total_token_calls"`
		Clients         map[string]struct {
			TokenCalls   int `json:"token_calls"`
			IssuedTokens int `json:"issued_tokens"`
		} `json:"clients"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &stats))
	require.Equal(t, 2, stats.TotalTokenCalls)
	require.Equal(t, 2, stats.Clients["c2"].TokenCalls)
	require.Equal(t, 1, stats.Clients["c2"].IssuedTokens)

	code, out = do("GET", "clients/c2/stats", "")
	require.Equal(t, 200, code)
	var cs struct {
		TokenCalls     int         `json:"token_calls"`
		TokenCallTimes []time.Time `json:"token_call_times"`
		IssuedTokens   []string    `json:"issued_tokens"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &cs))
	require.Equal(t, 2, cs.TokenCalls)
	require.Len(t, cs.TokenCallTimes, 2)
	require.Equal(t, []string{a.AccessToken}, cs.IssuedTokens)

	code, _ = do("DELETE", "clients/c2", "")
	require.Equal(t, 204, code)
	require.Equal(t, 401, b.halaxyTokenRequest(t, "c2", "x2", nil).StatusCode)

	code, _ = do("POST", "reset", "")
	require.Equal(t, 204, code)
	require.Zero(t, b.sb.TotalTokenCalls())
}

// TestConcurrentTokens runs token requests from many goroutines (with
// -race) and checks that every one is counted and every token works.
func TestConcurrentTokens(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Options{})
	const workers, each = 8, 50
	var wg sync.WaitGroup
	tokens := make(chan string, workers*each)
	for range workers {
		wg.Go(func() {
			for range each {
				body := `{"grant_type":"client_credentials","client_id":"client-1","client_secret":"` + goodSecret + `"}`
				req, _ := http.NewRequest(http.MethodPost, b.srv.URL+sandbox.HalaxyPath+"oauth/token", strings.NewReader(body))
				req.Header.Set("Accept", "application/fhir+json")
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("User-Agent", testUA)
				resp, err := b.srv.Client().Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				var a tokenAnswer
				_ = json.NewDecoder(resp.Body).Decode(&a)
				resp.Body.Close()
				tokens <- a.AccessToken
			}
		})
	}
	wg.Wait()
	close(tokens)
	seen := map[string]bool{}
	for tok := range tokens {
		require.NotEmpty(t, tok)
		seen[tok] = true
	}
	require.Len(t, seen, workers*each)
	require.Equal(t, workers*each, b.sb.TokenCalls(clientID))
	require.Len(t, b.sb.IssuedTokens(clientID), workers*each)
}

func TestServeListener(t *testing.T) {
	t.Parallel()
	sb := sandbox.New(sandbox.Options{})
	sb.AddClient(clientID, goodSecret)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- sb.ServeListener(ctx, ln) }()

	resp, err := testenv.HTTPClient().Get("http://" + ln.Addr().String() + sandbox.ControlPath + "clients")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	cancel()
	require.NoError(t, <-done)
}

func BenchmarkHalaxyToken(b *testing.B) {
	sb := sandbox.New(sandbox.Options{})
	sb.AddClient(clientID, goodSecret)
	h := sb.Handler()
	body := `{"grant_type":"client_credentials","client_id":"client-1","client_secret":"` + goodSecret + `"}`
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest(http.MethodPost, sandbox.HalaxyPath+"oauth/token", strings.NewReader(body))
			req.Header.Set("Accept", "application/fhir+json")
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("User-Agent", testUA)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK {
				b.Fatal(rec.Code, rec.Body.String())
			}
		}
	})
}
