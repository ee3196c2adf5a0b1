package websession_test

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/internal/testenv"
	"github.com/tokenrelay/tokenrelay/internal/web/websession"
	"github.com/tokenrelay/tokenrelay/secret"
)

const adminToken = "admin-token-0123456789abcdefghijklmnopqrstuvwxyz"

var t0 = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

// signIn signs in with token and returns the cookie set, nil if none.
func signIn(t *testing.T, s *websession.Sessions, r *http.Request, token string) *http.Cookie {
	t.Helper()
	w := httptest.NewRecorder()
	err := s.SignIn(w, r, token)
	cookies := w.Result().Cookies()
	if err != nil {
		require.Empty(t, cookies, "a refused sign-in sets no cookie")
		return nil
	}
	require.Len(t, cookies, 1)
	return cookies[0]
}

func get(cookies ...*http.Cookie) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "http://worker.example/ui/credentials", nil)
	for _, c := range cookies {
		r.AddCookie(c)
	}
	return r
}

func TestSignInSetsOneCookieForEveryPage(t *testing.T) {
	t.Parallel()
	clk := testenv.NewClock(t0)
	s := websession.New(secret.New(adminToken), websession.Options{Now: clk.Now})

	for _, bad := range []string{"", "wrong", adminToken + "x", strings.ToUpper(adminToken)} {
		require.Nil(t, signIn(t, s, get(), bad), "token %q", bad)
	}
	c := signIn(t, s, get(), adminToken)
	require.NotNil(t, c)
	require.Equal(t, websession.CookieName, c.Name)
	require.Equal(t, "/", c.Path, "one sign-in covers /ui/ and /asynqmon/")
	require.True(t, c.HttpOnly)
	require.Equal(t, http.SameSiteStrictMode, c.SameSite)
	require.False(t, c.Secure, "over plain HTTP a Secure cookie would never come back")
	require.Equal(t, int(websession.DefaultTTL/time.Second), c.MaxAge)
	require.NotContains(t, c.Value, adminToken)
	require.Len(t, strings.Split(c.Value, "."), 3, "<expiry>.<nonce>.<mac>")
	require.True(t, s.SignedIn(get(c)))

	// Another sign-in is another session.
	c2 := signIn(t, s, get(), adminToken)
	require.NotEqual(t, c.Value, c2.Value)
}

func TestTheCookieIsSecureOverTLS(t *testing.T) {
	t.Parallel()
	s := websession.New(secret.New(adminToken), websession.Options{})
	for name, tc := range map[string]struct {
		tls    bool
		proto  string
		secure bool
	}{
		"plain":                   {},
		"tls":                     {tls: true, secure: true},
		"a proxy terminated TLS":  {proto: "https", secure: true},
		"a chain of proxies":      {proto: "HTTPS, http", secure: true},
		"a proxy over plain HTTP": {proto: "http"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			r := get()
			if tc.tls {
				r.TLS = &tls.ConnectionState{}
			}
			if tc.proto != "" {
				r.Header.Set("X-Forwarded-Proto", tc.proto)
			}
			require.Equal(t, tc.secure, signIn(t, s, r, adminToken).Secure)
			w := httptest.NewRecorder()
			require.NoError(t, s.SignOut(w, r))
			require.Equal(t, tc.secure, w.Result().Cookies()[0].Secure)
		})
	}
}

func TestSessionsAreCheckedAndExpire(t *testing.T) {
	t.Parallel()
	clk := testenv.NewClock(t0)
	shared := websession.NewMemoryStore(clk.Now) // what replicas share (Redis)
	s := websession.New(secret.New(adminToken), websession.Options{TTL: time.Hour, Now: clk.Now, Store: shared})
	c := signIn(t, s, get(), adminToken)
	require.Equal(t, 3600, c.MaxAge)
	exp, nonce, mac := func() (string, string, string) {
		p := strings.Split(c.Value, ".")
		return p[0], p[1], p[2]
	}()

	// Any replica with the same token accepts it; another token does not.
	require.True(t, websession.New(secret.New(adminToken), websession.Options{Now: clk.Now, Store: shared}).SignedIn(get(c)), "another replica")
	require.False(t, websession.New(secret.New(adminToken+"-new"), websession.Options{Now: clk.Now, Store: shared}).SignedIn(get(c)), "the token changed")

	for name, value := range map[string]string{
		"later expiry":   "99999999999." + nonce + "." + mac,
		"another nonce":  exp + ".x" + nonce + "." + mac,
		"another mac":    exp + "." + nonce + "." + strings.Repeat("A", len(mac)),
		"no mac":         exp + "." + nonce + ".",
		"two parts":      exp + "." + nonce,
		"four parts":     c.Value + ".x",
		"expiry no int":  "soon." + nonce + "." + mac,
		"empty":          "",
		"the token":      adminToken,
		"forged, simple": "99999999999.abc.def",
	} {
		require.False(t, s.SignedIn(get(&http.Cookie{Name: websession.CookieName, Value: value})), name)
	}
	require.False(t, s.SignedIn(get(&http.Cookie{Name: "tokenrelay_operator", Value: c.Value})), "wrong cookie name")
	require.False(t, s.SignedIn(get()), "no cookie")

	clk.Advance(time.Hour - time.Second)
	require.True(t, s.SignedIn(get(c)), "a second before it expires")
	clk.Advance(time.Second)
	require.False(t, s.SignedIn(get(c)), "expired")
	require.Empty(t, s.CSRFToken(get(c)), "an expired session has no CSRF token")
}

func TestSignOutClearsTheCookie(t *testing.T) {
	t.Parallel()
	s := websession.New(secret.New(adminToken), websession.Options{})
	w := httptest.NewRecorder()
	require.NoError(t, s.SignOut(w, get()))
	cookies := w.Result().Cookies()
	require.Len(t, cookies, 1)
	require.Equal(t, websession.CookieName, cookies[0].Name)
	require.Equal(t, "/", cookies[0].Path, "the same path, or the browser keeps the session")
	require.Negative(t, cookies[0].MaxAge)
	require.Empty(t, cookies[0].Value)
}

func TestBearer(t *testing.T) {
	t.Parallel()
	s := websession.New(secret.New(adminToken), websession.Options{})
	for header, ok := range map[string]bool{
		"Bearer " + adminToken:       true,
		"":                           false,
		"Bearer ":                    false,
		"Bearer wrong":               false,
		"bearer " + adminToken:       false,
		"Basic " + adminToken:        false,
		"Bearer " + adminToken + " ": false,
	} {
		r := get()
		r.Header.Set("Authorization", header)
		require.Equal(t, ok, s.Bearer(r), "%q", header)
	}
}

func TestCSRF(t *testing.T) {
	t.Parallel()
	s := websession.New(secret.New(adminToken), websession.Options{})
	c1 := signIn(t, s, get(), adminToken)
	c2 := signIn(t, s, get(), adminToken)
	tok1, tok2 := s.CSRFToken(get(c1)), s.CSRFToken(get(c2))
	require.NotEmpty(t, tok1)
	require.NotEqual(t, tok1, tok2, "each session has its own")
	require.Equal(t, tok1, s.CSRFToken(get(c1)), "stable within a session, so that every form of it works")
	require.Empty(t, s.CSRFToken(get()), "none without a session")

	post := func(csrf string, bearer bool, cookies ...*http.Cookie) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "http://worker.example/ui/logout",
			strings.NewReader(url.Values{websession.CSRFField: {csrf}}.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if bearer {
			r.Header.Set("Authorization", "Bearer "+adminToken)
		}
		for _, c := range cookies {
			r.AddCookie(c)
		}
		return r
	}
	require.True(t, s.CSRFOK(post(tok1, false, c1)))
	require.False(t, s.CSRFOK(post("", false, c1)), "no token")
	require.False(t, s.CSRFOK(post("forged", false, c1)), "a forged token")
	require.False(t, s.CSRFOK(post(tok2, false, c1)), "another session's token")
	require.False(t, s.CSRFOK(post(tok1, false)), "a token without its session")
	require.False(t, websession.New(secret.New("other"), websession.Options{}).CSRFOK(post(tok1, false, c1)), "the token changed")
	require.True(t, s.CSRFOK(post("", true)), "a script with the bearer token needs none")
}

func TestAnEmptyTokenAcceptsNothing(t *testing.T) {
	t.Parallel()
	s := websession.New(secret.Value{}, websession.Options{})
	require.Nil(t, signIn(t, s, get(), ""))
	r := get()
	r.Header.Set("Authorization", "Bearer ")
	require.False(t, s.Bearer(r))
}

func TestSameOrigin(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, method, site, origin string
		ok                         bool
	}{
		{name: "a GET from anywhere", method: http.MethodGet, site: "cross-site", origin: "http://evil.example", ok: true},
		{name: "a HEAD", method: http.MethodHead, site: "cross-site", ok: true},
		{name: "same origin", method: http.MethodPost, site: "same-origin", origin: "http://worker.example", ok: true},
		{name: "no headers (a script)", method: http.MethodPost, ok: true},
		{name: "cross-site fetch", method: http.MethodPost, site: "cross-site"},
		{name: "same-site, other origin", method: http.MethodDelete, site: "same-site"},
		{name: "other origin", method: http.MethodPost, origin: "http://evil.example"},
		{name: "other port", method: http.MethodPost, origin: "http://worker.example:8080"},
		{name: "bad origin", method: http.MethodPost, origin: "http://[::1"},
	} {
		r := httptest.NewRequest(tc.method, "http://worker.example/asynqmon/api/queues/default:pause", nil)
		if tc.site != "" {
			r.Header.Set("Sec-Fetch-Site", tc.site)
		}
		if tc.origin != "" {
			r.Header.Set("Origin", tc.origin)
		}
		require.Equal(t, tc.ok, websession.SameOrigin(r), tc.name)
	}
}
