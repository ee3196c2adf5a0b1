package halaxy_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/internal/testenv"
	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/vendors"
	"github.com/tokenrelay/tokenrelay/vendors/halaxy"
	"github.com/tokenrelay/tokenrelay/vendors/internal/vendortest"
	"github.com/tokenrelay/tokenrelay/vendors/sandbox"
)

const (
	userAgent = "Acme Sync (ops@acme.example)"
	clientID  = "halaxy-client-42"
	// clientSecret is distinctive, so that a leak into an error shows.
	clientSecret = "hx-SECRET-7f3a9c1e55d2"
)

var cred = vendors.Credential{ID: "clinic-42", ClientID: clientID, ClientSecret: secret.New(clientSecret)}

type bundle struct {
	sb      vendortest.Sandbox
	adapter *halaxy.Adapter
}

func setup(t *testing.T, edit func(*halaxy.Options)) bundle {
	t.Helper()
	sb := vendortest.StartSandbox(t, sandbox.Options{}, cred)
	a := vendortest.NewAdapter(t, halaxy.New, halaxy.Options{BaseURL: sb.URL + sandbox.HalaxyPath, UserAgent: userAgent, Clock: sb.Clock.Now}, edit)
	return bundle{sb: sb, adapter: a}
}

func TestToken(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	tok, err := b.adapter.Token(t.Context(), cred)
	require.NoError(t, err)

	// The sandbox checked the headers (else 406 or 400) and says what it issued.
	require.Equal(t, []string{tok.AccessToken.Reveal()}, b.sb.IssuedTokens(clientID))
	require.Equal(t, "Bearer", tok.TokenType)
	require.Equal(t, time.Hour, tok.ClaimedLifetime, "Halaxy claims 3600 s; the caller caps it")
	require.Equal(t, vendortest.T0, tok.IssuedAt)
	require.True(t, tok.RefreshToken.IsZero())
	require.Equal(t, 1, b.sb.TokenCalls(clientID))

	resp, err := b.adapter.Get(t.Context(), "Patient", tok.AccessToken)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "499", resp.Header.Get("x-ratelimit-remaining"))

	// The token really lives 15 minutes, not the hour it claims.
	b.sb.Clock.Advance(15 * time.Minute)
	resp, err = b.adapter.Get(t.Context(), "/Patient", tok.AccessToken)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	require.Equal(t, 1, b.sb.ExpiredUsesBy(clientID))
}

func TestTokenFailures(t *testing.T) {
	t.Parallel()
	claim := func(d time.Duration) func(testing.TB, *sandbox.Sandbox, string) {
		return func(_ testing.TB, sb *sandbox.Sandbox, _ string) { sb.SetClaimedExpiresIn(d) }
	}
	cases := append(vendortest.TokenFailures(),
		vendortest.TokenCase{Name: "zero expires_in", Prepare: claim(0), Class: vendors.ClassMalformed, Status: 200},
		vendortest.TokenCase{Name: "negative expires_in", Prepare: claim(-time.Hour), Class: vendors.ClassMalformed, Status: 200},
	)
	vendortest.RunTokenFailures(t, cases, func(t *testing.T, timeout time.Duration) vendortest.Env {
		b := setup(t, func(o *halaxy.Options) {
			if timeout > 0 {
				o.HTTPClient = &http.Client{Timeout: timeout}
			}
		})
		return vendortest.Env{Sandbox: b.sb.Sandbox, Source: b.adapter, Cred: cred, Vendor: "halaxy"}
	})
}

// TestTokenAnswers covers answers the sandbox does not give, from a fake
// token endpoint.
func TestTokenAnswers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		status     int
		header     map[string]string
		body       string
		class      string
		retryAfter time.Duration
		contains   string
	}{
		{"400 invalid_client", 400, nil, `{"error":"invalid_client","error_description":"no such key"}`,
			vendors.ClassRevoked, 0, `invalid_client: no such key`},
		{"400 unauthorized_client", 400, nil, `{"error":"unauthorized_client"}`, vendors.ClassRevoked, 0, "unauthorized_client"},
		{"401 without a body", 401, nil, ``, vendors.ClassRevoked, 0, ""},
		{"400 invalid_request", 400, nil, `{"error":"invalid_request","error_description":"bad"}`,
			vendors.ClassRejected, 0, "invalid_request: bad"},
		{"403", 403, nil, `<html>Forbidden</html>`, vendors.ClassRejected, 0, "<html>Forbidden</html>"},
		{"redirect", 302, map[string]string{"Location": "https://elsewhere.example/"}, ``, vendors.ClassRejected, 0, ""},
		{"429 with a date", 429, map[string]string{"Retry-After": vendortest.T0.Add(90 * time.Second).Format(http.TimeFormat)}, ``,
			vendors.ClassRateLimited, 90 * time.Second, ""},
		{"502 html", 502, nil, "<html>\n<body>Bad   Gateway</body>\n</html>", vendors.ClassServer, 0, "<html> <body>Bad Gateway</body> </html>"},
		{"secret echoed", 400, nil, `{"error":"invalid_request","error_description":"client_secret ` + clientSecret + ` is malformed"}`,
			vendors.ClassRejected, 0, "client_secret [redacted] is malformed"},
		{"long description", 400, nil, `{"error":"invalid_request","error_description":"` + strings.Repeat("x", 1000) + `"}`,
			vendors.ClassRejected, 0, "invalid_request: xxx"},
		{"not json", 200, nil, `access_token=abc`, vendors.ClassMalformed, 0, "not a JSON token"},
		{"no access_token", 200, nil, `{"token_type":"Bearer","expires_in":3600}`, vendors.ClassMalformed, 0, "no access_token"},
		{"error in a 200", 200, nil, `{"error":"invalid_client"}`, vendors.ClassMalformed, 0, "invalid_client"},
		{"no expires_in", 200, nil, `{"access_token":"tok-abc"}`, vendors.ClassMalformed, 0, "no expires_in"},
		{"bad expires_in", 200, nil, `{"access_token":"tok-abc","expires_in":"soon"}`, vendors.ClassMalformed, 0, "expires_in"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := vendortest.ServeAnswer(t, vendortest.Answer{Status: tt.status, Header: tt.header, Body: tt.body})
			clock := testenv.NewClock(vendortest.T0)
			a, err := halaxy.New(halaxy.Options{BaseURL: srv.URL, UserAgent: userAgent, Clock: clock.Now})
			require.NoError(t, err)
			_, err = a.Token(t.Context(), cred)
			vendortest.RequireError(t, err, vendortest.Want{Vendor: "halaxy", Op: "request token",
				Class: tt.class, Status: tt.status, RetryAfter: tt.retryAfter})
			require.Contains(t, err.Error(), tt.contains)
			require.LessOrEqual(t, len(err.Error()), 120+vendors.MaxExcerpt)
			vendortest.RequireNoSecret(t, err, clientSecret, "tok-abc", "abc")
			require.EqualValues(t, 1, srv.Calls())
		})
	}
}

func TestTokenStringExpiresIn(t *testing.T) {
	t.Parallel()
	srv := vendortest.ServeAnswer(t, vendortest.Answer{Status: http.StatusOK,
		Body: `{"token_type":"bearer","expires_in":"900","access_token":"tok"}`})
	a, err := halaxy.New(halaxy.Options{BaseURL: srv.URL, UserAgent: userAgent})
	require.NoError(t, err)
	tok, err := a.Token(t.Context(), cred)
	require.NoError(t, err)
	require.Equal(t, 15*time.Minute, tok.ClaimedLifetime)
	require.Equal(t, "bearer", tok.TokenType)
}

func TestNew(t *testing.T) {
	t.Parallel()
	vendortest.RunNew(t, []vendortest.NewCase[halaxy.Options]{
		{Name: "defaults", Opts: halaxy.Options{UserAgent: userAgent}},
		{Name: "eu", Opts: halaxy.Options{BaseURL: halaxy.BaseURLEU, UserAgent: userAgent}},
		{Name: "no trailing slash", Opts: halaxy.Options{BaseURL: "https://au-api.halaxy.com/main", UserAgent: userAgent}},
		{Name: "one-letter name", Opts: halaxy.Options{UserAgent: "A (a@b.c)"}},
		{Name: "no user agent", Opts: halaxy.Options{}, WantErr: "user_agent is required"},
		{Name: "user agent without email", Opts: halaxy.Options{UserAgent: "Acme Sync"}, WantErr: "not in the shape"},
		{Name: "user agent without name", Opts: halaxy.Options{UserAgent: "(ops@acme.example)"}, WantErr: "not in the shape"},
		{Name: "user agent email without @", Opts: halaxy.Options{UserAgent: "Acme (ops)"}, WantErr: "not in the shape"},
		{Name: "user agent with a newline", Opts: halaxy.Options{UserAgent: "Acme\r\nX: y (ops@acme.example)"}, WantErr: "not in the shape"},
		{Name: "relative base", Opts: halaxy.Options{BaseURL: "/main/", UserAgent: userAgent}, WantErr: "base_url"},
		{Name: "ftp base", Opts: halaxy.Options{BaseURL: "ftp://x/main/", UserAgent: userAgent}, WantErr: "base_url"},
		{Name: "base with query", Opts: halaxy.Options{BaseURL: "https://x/main/?a=b", UserAgent: userAgent}, WantErr: "base_url"},
	}, func(o halaxy.Options) error { _, err := halaxy.New(o); return err })
}

func TestGet(t *testing.T) {
	t.Parallel()
	var (
		mu  sync.Mutex
		got *http.Request
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = r.Clone(context.Background())
		mu.Unlock()
	}))
	defer srv.Close()
	last := func() *http.Request {
		mu.Lock()
		defer mu.Unlock()
		return got
	}
	a, err := halaxy.New(halaxy.Options{BaseURL: srv.URL + "/main/", UserAgent: userAgent})
	require.NoError(t, err)
	tok := secret.New("the-token")

	resp, err := a.Get(t.Context(), "Patient?_count=50", tok)
	require.NoError(t, err)
	resp.Body.Close()
	r := last()
	require.Equal(t, "/main/Patient", r.URL.Path)
	require.Equal(t, "_count=50", r.URL.RawQuery)
	require.Equal(t, "application/fhir+json", r.Header.Get("Accept"))
	require.Equal(t, userAgent, r.Header.Get("User-Agent"))
	require.Equal(t, "Bearer the-token", r.Header.Get("Authorization"))

	// A Bundle's next link on the same server is followed.
	resp, err = a.Get(t.Context(), srv.URL+"/main/Patient?page=2", tok)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, "page=2", last().URL.RawQuery)

	// The token is never sent elsewhere.
	for _, p := range []string{"https://evil.example/main/Patient", "//evil.example/main/Patient", "../other/Patient"} {
		_, err = a.Get(t.Context(), p, tok)
		require.ErrorContains(t, err, "not under the base URL", p)
	}
}
