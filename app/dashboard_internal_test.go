package app

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/admin"
	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
	"github.com/tokenrelay/tokenrelay/internal/testenv/storetest"
	"github.com/tokenrelay/tokenrelay/operator"
	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/websession"
)

const dashboardToken = "dash-token-0123456789abcdefghijklmnopqrstuvwxyz"

// noRedirect is a client that shows redirects instead of following them.
func noRedirect(jar http.CookieJar) *http.Client {
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func newJar(t *testing.T) http.CookieJar {
	t.Helper()
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	return jar
}

func do(t *testing.T, c *http.Client, method, u string, body url.Values, header ...string) (*http.Response, string) {
	t.Helper()
	var r io.Reader
	if body != nil {
		r = strings.NewReader(body.Encode())
	}
	req, err := http.NewRequest(method, u, r)
	require.NoError(t, err)
	if body != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(b)
}

// TestDashboardAuth: the queue dashboard's sign-in (?token= and the form),
// its session, the bearer token for scripts, 401 otherwise, and no
// cross-site state change, on a stand-in for asynqmon.
func TestDashboardAuth(t *testing.T) {
	t.Parallel()
	clock := testenv.NewClock(storetest.T0)
	var served atomic.Int32
	mon := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		_, _ = io.WriteString(w, "asynqmon "+r.Method+" "+r.URL.RequestURI())
	})
	mux := http.NewServeMux()
	logs := &testenv.Buffer{}
	mux.Handle(DashboardPath, dashboardAuth(secret.New(dashboardToken), clock.Now, zerolog.New(logs), mon))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	base := srv.URL + DashboardPath

	anon := noRedirect(nil)
	resp, body := do(t, anon, http.MethodGet, base, nil)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	require.Contains(t, body, `<form method="post" action="/asynqmon/login">`, "a browser gets the sign-in form")
	resp, body = do(t, anon, http.MethodGet, base+"api/queues", nil)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	require.Contains(t, body, `"unauthorized"`, "an API call gets the admin API's 401")
	resp, _ = do(t, anon, http.MethodGet, base+"api/queues", nil, "Authorization", "Bearer wrong")
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	resp, _ = do(t, anon, http.MethodGet, base+"?token=wrong", nil)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	require.Empty(t, resp.Cookies(), "a refused sign-in sets no cookie")
	resp, _ = do(t, anon, http.MethodPost, base+"login", url.Values{"token": {"wrong"}})
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	require.Empty(t, resp.Cookies())
	require.Zero(t, served.Load(), "nothing reached asynqmon")

	// A script: the bearer token, no cookie, no same-origin check.
	resp, body = do(t, anon, http.MethodPost, base+"api/queues/default:pause", nil,
		"Authorization", "Bearer "+dashboardToken, "Origin", "http://elsewhere.example")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "asynqmon POST /asynqmon/api/queues/default:pause", body)
	require.Empty(t, resp.Cookies())

	// ?token= signs in and comes back without the token in the URL.
	b := noRedirect(newJar(t))
	resp, _ = do(t, b, http.MethodGet, base+"queues/default?token="+url.QueryEscape(dashboardToken)+"&tab=pending", nil)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.Equal(t, "/asynqmon/queues/default?tab=pending", resp.Header.Get("Location"))
	require.Len(t, resp.Cookies(), 1)
	c := resp.Cookies()[0]
	require.Equal(t, websession.CookieName, c.Name)
	require.Equal(t, "/", c.Path)
	require.True(t, c.HttpOnly)
	require.Equal(t, http.SameSiteStrictMode, c.SameSite)
	require.NotContains(t, c.Value, dashboardToken)
	resp, body = do(t, b, http.MethodGet, base+"api/queues", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "asynqmon GET /asynqmon/api/queues", body)
	require.Equal(t, "no-store", resp.Header.Get("Cache-Control"))

	// With the session, a state change from another site is refused.
	resp, _ = do(t, b, http.MethodPost, base+"api/queues/default:resume", nil, "Origin", "http://elsewhere.example")
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
	resp, _ = do(t, b, http.MethodPost, base+"api/queues/default:resume", nil, "Sec-Fetch-Site", "cross-site")
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
	resp, _ = do(t, b, http.MethodPost, base+"api/queues/default:resume", nil, "Origin", srv.URL, "Sec-Fetch-Site", "same-origin")
	require.Equal(t, http.StatusOK, resp.StatusCode)

	// The form signs in too.
	f := noRedirect(newJar(t))
	resp, _ = do(t, f, http.MethodPost, base+"login", url.Values{"token": {dashboardToken}})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.Equal(t, DashboardPath, resp.Header.Get("Location"))
	// Signed in already, a ?token= link still takes the token out of the URL.
	resp, _ = do(t, f, http.MethodGet, base+"queues?token="+url.QueryEscape(dashboardToken), nil)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.Equal(t, "/asynqmon/queues", resp.Header.Get("Location"))
	resp, _ = do(t, f, http.MethodGet, base+"queues?token=wrong", nil)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "a wrong token is not let through for the session's sake")
	require.Empty(t, resp.Cookies())

	// Sessions end after 12 hours.
	clock.Advance(websession.DefaultTTL)
	resp, _ = do(t, b, http.MethodGet, base+"api/queues", nil)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "an expired session")

	// Every sign-in, refused or not, is audited, and the token is never logged.
	require.Regexp(t, `"audit":"login".*"via":"asynqmon".*"ok":false`, logs.String())
	require.Regexp(t, `"audit":"login".*"via":"asynqmon".*"ok":true`, logs.String())
	require.NotContains(t, logs.String(), dashboardToken)
}

var csrfInput = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// TestDashboardAndOperatorPagesShareOneSignIn: signing in on the operator
// pages lets a browser into the queue dashboard and the other way round,
// and signing out of the operator pages signs it out of both. Both are
// built and mounted as the worker does (httpRoutes), on a real Redis for
// asynqmon.
func TestDashboardAndOperatorPagesShareOneSignIn(t *testing.T) {
	t.Parallel()
	now := storetest.T0
	clock := func() time.Time { return now }
	st, _ := storetest.New(t, clock)
	db, _ := testenv.RedisDB(t)
	cfg := &config.Config{}
	cfg.HTTP.AdminToken = secret.New(dashboardToken)
	env := &Env{Config: cfg, Logger: zerolog.Nop(), Store: st, Clock: clock,
		redisConnOpt: asynq.RedisClientOpt{Addr: testenv.RedisAddr(), DB: db}}

	dashboard, closeDashboard := newDashboard(env)
	t.Cleanup(func() { _ = closeDashboard() })
	mux := http.NewServeMux()
	mux.Handle(DashboardPath, dashboard)
	mux.Handle(operator.Prefix, operatorPages(env, admin.Deps{Config: cfg, Store: st, Token: cfg.HTTP.AdminToken, Clock: clock}, nil, zerolog.Nop()))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	queues := func(c *http.Client) int {
		t.Helper()
		resp, body := do(t, c, http.MethodGet, srv.URL+DashboardPath+"api/queues", nil)
		if resp.StatusCode == http.StatusOK {
			var v struct {
				Queues []any `json:"queues"`
			}
			require.NoError(t, json.Unmarshal([]byte(body), &v), "asynqmon's answer: %s", body)
		}
		return resp.StatusCode
	}
	credentials := func(c *http.Client) (int, string) {
		t.Helper()
		resp, body := do(t, c, http.MethodGet, srv.URL+operator.Prefix+"credentials", nil)
		return resp.StatusCode, body
	}
	anon := noRedirect(nil)
	require.Equal(t, http.StatusUnauthorized, queues(anon))
	status, _ := credentials(anon)
	require.Equal(t, http.StatusSeeOther, status, "sent to the sign-in form")

	t.Run("signed in on the operator pages", func(t *testing.T) {
		t.Parallel()
		c := noRedirect(newJar(t))
		resp, _ := do(t, c, http.MethodPost, srv.URL+operator.Prefix+"login", url.Values{"token": {dashboardToken}})
		require.Equal(t, http.StatusSeeOther, resp.StatusCode)
		require.Equal(t, http.StatusOK, queues(c), "the dashboard's API takes the operator pages' session")
		resp, body := do(t, c, http.MethodGet, srv.URL+DashboardPath, nil)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.NotContains(t, body, "needs the admin token", "the dashboard, not its sign-in form")

		// Signing out of the operator pages ends the dashboard's session too.
		status, page := credentials(c)
		require.Equal(t, http.StatusOK, status)
		m := csrfInput.FindStringSubmatch(page)
		require.NotNil(t, m, "the sign-out form carries a CSRF token")
		resp, _ = do(t, c, http.MethodPost, srv.URL+operator.Prefix+"logout", url.Values{"csrf": {m[1]}})
		require.Equal(t, http.StatusSeeOther, resp.StatusCode)
		require.Equal(t, http.StatusUnauthorized, queues(c))
		status, _ = credentials(c)
		require.Equal(t, http.StatusSeeOther, status)
	})
	t.Run("signed in on the dashboard", func(t *testing.T) {
		t.Parallel()
		c := noRedirect(newJar(t))
		resp, _ := do(t, c, http.MethodGet, srv.URL+DashboardPath+"?token="+url.QueryEscape(dashboardToken), nil)
		require.Equal(t, http.StatusSeeOther, resp.StatusCode)
		status, page := credentials(c)
		require.Equal(t, http.StatusOK, status, "the operator pages take the dashboard's session")
		require.Regexp(t, csrfInput, page, "and give it a CSRF token for their forms")

		f := noRedirect(newJar(t))
		resp, _ = do(t, f, http.MethodPost, srv.URL+DashboardPath+"login", url.Values{"token": {dashboardToken}})
		require.Equal(t, http.StatusSeeOther, resp.StatusCode)
		status, _ = credentials(f)
		require.Equal(t, http.StatusOK, status, "the dashboard's form too")
	})
}

func TestRedactPayload(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, payload string
		show, hide    []string
	}{
		{name: "refresh ids are shown", payload: `{"credential":"clinic-42","generation":7}`,
			show: []string{`"credential": "clinic-42"`, `"generation": 7`}},
		{name: "request headers", payload: `{"headers":{"Authorization":"Bearer s3cr3t-a","Cookie":"sid=s3cr3t-b","X-Api-Key":"s3cr3t-c","Accept":"application/fhir+json"}}`,
			show: []string{"application/fhir+json", "Accept"}, hide: []string{"s3cr3t-a", "s3cr3t-b", "s3cr3t-c"}},
		{name: "tokens anywhere", payload: `{"refresh_token":"s3cr3t-d","nested":[{"client_secret":"s3cr3t-e"}],"query":{"access_token":["s3cr3t-f"]}}`,
			hide: []string{"s3cr3t-d", "s3cr3t-e", "s3cr3t-f"}},
		{name: "a bearer value under an innocent key", payload: `{"x":"Bearer s3cr3t-g","y":"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.s3cr3t-h"}`,
			hide: []string{"s3cr3t-g", "s3cr3t-h"}},
		{name: "a JSON body is cut and redacted", payload: `{"body":{"password":"s3cr3t-i","text":"` + strings.Repeat("a", 300) + `s3cr3t-j"}}`,
			show: []string{"bytes in all"}, hide: []string{"s3cr3t-i", "s3cr3t-j"}},
		{name: "a base64 body shows its size only", payload: `{"body":"czNjcjN0LWs="}`,
			show: []string{"12 characters: not shown"}, hide: []string{"czNjcjN0LWs="}},
		{name: "not JSON", payload: `s3cr3t-l`, show: []string{"8 bytes, not JSON"}, hide: []string{"s3cr3t-l"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := redactPayload("any", []byte(tc.payload))
			for _, s := range tc.show {
				require.Contains(t, got, s)
			}
			for _, s := range tc.hide {
				require.NotContains(t, got, s)
			}
		})
	}
}
