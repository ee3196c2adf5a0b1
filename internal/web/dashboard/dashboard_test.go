package dashboard

import (
	"crypto/sha256"
	"encoding/base64"
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

	"github.com/tokenrelay/tokenrelay/internal/testenv"
	"github.com/tokenrelay/tokenrelay/internal/testenv/storetest"
	"github.com/tokenrelay/tokenrelay/internal/web/operator"
	"github.com/tokenrelay/tokenrelay/internal/web/websession"
	"github.com/tokenrelay/tokenrelay/secret"
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

// TestDashboardAuth: the queue dashboard's sign-in (the form only), its
// session, the bearer token for scripts, 401 otherwise, and no cross-site
// state change, on a stand-in for asynqmon.
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
	sessions := websession.New(secret.New(dashboardToken), websession.Options{Now: clock.Now})
	mux.Handle(Path, auth(secret.New(dashboardToken), sessions, "default-src 'self'", zerolog.New(logs), mon))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	base := srv.URL + Path

	anon := noRedirect(nil)
	resp, body := do(t, anon, http.MethodGet, base, nil)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	require.Contains(t, body, `<form method="post" action="/asynqmon/login">`, "a browser gets the sign-in form")
	resp, body = do(t, anon, http.MethodGet, base+"api/queues", nil)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	require.Contains(t, body, `"unauthorized"`, "an API call gets the admin API's 401")
	resp, _ = do(t, anon, http.MethodGet, base+"api/queues", nil, "Authorization", "Bearer wrong")
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
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

	// The form signs in.
	b := noRedirect(newJar(t))
	resp, _ = do(t, b, http.MethodPost, base+"login", url.Values{"token": {dashboardToken}})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.Equal(t, Path, resp.Header.Get("Location"))
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

	// Sessions end after 12 hours.
	clock.Advance(websession.DefaultTTL)
	resp, _ = do(t, b, http.MethodGet, base+"api/queues", nil)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "an expired session")

	// Every sign-in, refused or not, is audited, and the token is never logged.
	require.Regexp(t, `"audit":"login".*"via":"asynqmon".*"ok":false`, logs.String())
	require.Regexp(t, `"audit":"login".*"via":"asynqmon".*"ok":true`, logs.String())
	require.NotContains(t, logs.String(), dashboardToken)
}

// dashboardServer serves the queue dashboard and the operator pages as
// the worker does: one set of sessions kept in Redis, the dashboard on a
// real Redis for asynqmon.
func dashboardServer(t *testing.T) *httptest.Server {
	t.Helper()
	clock := func() time.Time { return storetest.T0 }
	st, _ := storetest.New(t, clock)
	db, rdb := testenv.RedisDB(t)
	token := secret.New(dashboardToken)
	sessions := websession.New(token, websession.Options{Now: clock,
		Store: websession.RedisStore{Client: rdb, Prefix: testenv.Unique("dash-") + ":"}})
	queues, closeQueues := New(Options{Token: token, Sessions: sessions,
		Redis: asynq.RedisClientOpt{Addr: testenv.RedisAddr(), DB: db}, Logger: zerolog.Nop()})
	t.Cleanup(func() { _ = closeQueues() })
	mux := http.NewServeMux()
	mux.Handle(Path, queues)
	mux.Handle(operator.Prefix, operator.Handler(operator.Deps{Token: token, Sessions: sessions, Credentials: st, Clock: clock}))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// TestATokenInTheURLDoesNotSignIn: GET /asynqmon/?token=<the admin token>
// (a link that would leave the token in logs and browser history) signs
// nobody in: the sign-in form, 401, no cookie, nothing of asynqmon.
func TestATokenInTheURLDoesNotSignIn(t *testing.T) {
	t.Parallel()
	srv := dashboardServer(t)
	b := noRedirect(newJar(t))
	for _, path := range []string{Path, Path + "queues/default", Path + "api/queues"} {
		resp, body := do(t, b, http.MethodGet, srv.URL+path+"?token="+url.QueryEscape(dashboardToken), nil)
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode, path)
		require.Empty(t, resp.Cookies(), "%s: a token in the URL set a session", path)
		require.NotContains(t, body, "Asynq - Monitoring", path)
	}
	resp, _ := do(t, b, http.MethodGet, srv.URL+Path+"api/queues", nil)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "not signed in afterwards")
}

// TestDashboardHasThePagesFrameAndContentHeaders: every answer of the
// queue dashboard (its sign-in form, asynqmon's page and API) forbids
// framing (clickjacking) and carries a content security policy, with the
// same shared directives as the operator pages; asynqmon's inline scripts
// are allowed by hash only, so the page still runs.
func TestDashboardHasThePagesFrameAndContentHeaders(t *testing.T) {
	t.Parallel()
	srv := dashboardServer(t)
	shared := func(t *testing.T, h http.Header, what string) {
		t.Helper()
		require.Equal(t, "DENY", h.Get("X-Frame-Options"), what)
		csp := h.Get("Content-Security-Policy")
		require.Contains(t, csp, "frame-ancestors 'none'", what)
		require.Contains(t, csp, "object-src 'none'; base-uri 'none'; form-action 'self'", what)
		require.NotContains(t, csp, "'unsafe-inline'; connect-src *", what)
		require.Equal(t, "nosniff", h.Get("X-Content-Type-Options"), what)
		require.Equal(t, "same-origin", h.Get("Referrer-Policy"), what)
		require.Equal(t, "no-store", h.Get("Cache-Control"), what)
	}
	anon := noRedirect(nil)
	resp, _ := do(t, anon, http.MethodGet, srv.URL+Path, nil)
	shared(t, resp.Header, "the sign-in form")
	resp, _ = do(t, anon, http.MethodGet, srv.URL+operator.Prefix+"login", nil)
	shared(t, resp.Header, "the operator pages' sign-in form")
	opCSP := resp.Header.Get("Content-Security-Policy")

	b := noRedirect(newJar(t))
	resp, _ = do(t, b, http.MethodPost, srv.URL+Path+"login", url.Values{"token": {dashboardToken}})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	resp, page := do(t, b, http.MethodGet, srv.URL+Path, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, page, "Asynq - Monitoring")
	shared(t, resp.Header, "asynqmon's page")
	csp := resp.Header.Get("Content-Security-Policy")
	require.NotContains(t, csp, "script-src 'self' 'unsafe-inline'", "inline scripts by hash, not all of them")
	scripts := inlineScript.FindAllStringSubmatch(page, -1)
	require.NotEmpty(t, scripts)
	for _, m := range scripts {
		sum := sha256.Sum256([]byte(m[1]))
		require.Contains(t, csp, "'sha256-"+base64.StdEncoding.EncodeToString(sum[:])+"'", "an inline script of asynqmon is blocked")
	}
	resp, _ = do(t, b, http.MethodGet, srv.URL+Path+"api/queues", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	shared(t, resp.Header, "asynqmon's API")

	// The directives both pages share are the same text.
	suffix := func(csp string) string { _, s, _ := strings.Cut(csp, "; object-src"); return s }
	require.Equal(t, suffix(opCSP), suffix(csp))
}

var csrfInput = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// TestDashboardAndOperatorPagesShareOneSignIn: signing in on the operator
// pages lets a browser into the queue dashboard and the other way round,
// and signing out of the operator pages signs it out of both. Both are
// built and mounted as the worker does (httpRoutes), on a real Redis for
// asynqmon.
func TestDashboardAndOperatorPagesShareOneSignIn(t *testing.T) {
	t.Parallel()
	srv := dashboardServer(t)

	queues := func(c *http.Client) int {
		t.Helper()
		resp, body := do(t, c, http.MethodGet, srv.URL+Path+"api/queues", nil)
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
		resp, body := do(t, c, http.MethodGet, srv.URL+Path, nil)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.NotContains(t, body, "needs the admin token", "the dashboard, not its sign-in form")

		// Signing out of the operator pages ends the dashboard's session too.
		status, page := credentials(c)
		require.Equal(t, http.StatusOK, status)
		m := csrfInput.FindStringSubmatch(page)
		require.NotNil(t, m, "the sign-out form carries a CSRF token")
		u, err := url.Parse(srv.URL)
		require.NoError(t, err)
		copied := c.Jar.Cookies(u) // what someone with the browser's cookies keeps
		require.Len(t, copied, 1)
		resp, _ = do(t, c, http.MethodPost, srv.URL+operator.Prefix+"logout", url.Values{"csrf": {m[1]}})
		require.Equal(t, http.StatusSeeOther, resp.StatusCode)
		require.Equal(t, http.StatusUnauthorized, queues(c))
		// The copied cookie, replayed after the sign-out: refused on both.
		replay := noRedirect(nil)
		cookie := websession.CookieName + "=" + copied[0].Value
		resp, _ = do(t, replay, http.MethodGet, srv.URL+Path+"api/queues", nil, "Cookie", cookie)
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "the dashboard took a signed-out session")
		resp, _ = do(t, replay, http.MethodGet, srv.URL+operator.Prefix+"credentials", nil, "Cookie", cookie)
		require.Equal(t, http.StatusSeeOther, resp.StatusCode, "the operator pages took a signed-out session")
		status, _ = credentials(c)
		require.Equal(t, http.StatusSeeOther, status)
	})
	t.Run("signed in on the dashboard", func(t *testing.T) {
		t.Parallel()
		c := noRedirect(newJar(t))
		resp, _ := do(t, c, http.MethodPost, srv.URL+Path+"login", url.Values{"token": {dashboardToken}})
		require.Equal(t, http.StatusSeeOther, resp.StatusCode)
		status, page := credentials(c)
		require.Equal(t, http.StatusOK, status, "the operator pages take the dashboard's session")
		require.Regexp(t, csrfInput, page, "and give it a CSRF token for their forms")

	})
}

// TestDashboardSignInIsThrottled: guessing the admin token in the queue
// dashboard's form from one address gets 429 with Retry-After after 5
// wrong tokens, the right one included, and no cookie; the operator
// pages' form, sharing the throttle, refuses that address too.
func TestDashboardSignInIsThrottled(t *testing.T) {
	t.Parallel()
	srv := dashboardServer(t)
	b := noRedirect(newJar(t))
	for i := range 5 {
		resp, _ := do(t, b, http.MethodPost, srv.URL+Path+"login", url.Values{"token": {"guess"}})
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "guess %d", i)
	}
	resp, body := do(t, b, http.MethodPost, srv.URL+Path+"login", url.Values{"token": {dashboardToken}})
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode, "the 6th try, with the right token")
	require.Equal(t, "60", resp.Header.Get("Retry-After"))
	require.Contains(t, body, "Too many wrong tokens")
	require.Empty(t, resp.Cookies())
	resp, _ = do(t, b, http.MethodPost, srv.URL+operator.Prefix+"login", url.Values{"token": {dashboardToken}})
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode, "the operator pages share the count")
	resp, _ = do(t, b, http.MethodGet, srv.URL+Path+"api/queues", nil, "Authorization", "Bearer "+dashboardToken)
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode, "and the bearer token")
}
