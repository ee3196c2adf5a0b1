package operator

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tokenrelay/tokenrelay/secret"
)

// sessionCookie holds a signed session: "<expiry unix>.<nonce>.<mac>". The
// MAC is keyed by a hash of the admin token, so changing the token ends
// every session, and any worker replica can check a session another one
// signed. The token itself is never in the cookie.
const sessionCookie = "tokenrelay_operator"

// csrfField is the form field carrying the CSRF token.
const csrfField = "csrf"

type auth struct {
	tokenHash [32]byte
	key       []byte // HMAC key of sessions and CSRF tokens
	ttl       time.Duration
	now       func() time.Time
}

func newAuth(token secret.Value, ttl time.Duration, now func() time.Time) *auth {
	a := &auth{tokenHash: sha256.Sum256([]byte(token.Reveal())), ttl: ttl, now: now}
	k := sha256.Sum256([]byte("tokenrelay operator session\x00" + token.Reveal()))
	a.key = k[:]
	return a
}

// tokenOK compares a presented token with the admin token in constant time.
func (a *auth) tokenOK(got string) bool {
	sum := sha256.Sum256([]byte(got))
	return got != "" && subtle.ConstantTimeCompare(sum[:], a.tokenHash[:]) == 1
}

func (a *auth) mac(parts ...string) string {
	m := hmac.New(sha256.New, a.key)
	m.Write([]byte(strings.Join(parts, "\x00")))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// newSession returns a fresh cookie value.
func (a *auth) newSession() string {
	n := make([]byte, 18)
	_, _ = rand.Read(n)
	nonce := base64.RawURLEncoding.EncodeToString(n)
	exp := strconv.FormatInt(a.now().Add(a.ttl).Unix(), 10)
	return exp + "." + nonce + "." + a.mac("session", exp, nonce)
}

// session returns the nonce of the request's valid session cookie.
func (a *auth) session(r *http.Request) (nonce string, ok bool) {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return "", false
	}
	parts := strings.Split(c.Value, ".")
	if len(parts) != 3 {
		return "", false
	}
	exp, err := strconv.ParseInt(parts[0], 10, 64)
	if err != nil || !a.now().Before(time.Unix(exp, 0)) {
		return "", false
	}
	if !hmac.Equal([]byte(parts[2]), []byte(a.mac("session", parts[0], parts[1]))) {
		return "", false
	}
	return parts[1], true
}

// bearer reports whether the request carries the admin token as a bearer
// header (scripts and tests; no CSRF needed, browsers never add it).
func (a *auth) bearer(r *http.Request) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && a.tokenOK(got)
}

// csrfToken is the CSRF token of the request's session ("" without one).
func (a *auth) csrfToken(r *http.Request) string {
	nonce, ok := a.session(r)
	if !ok {
		return ""
	}
	return a.mac("csrf", nonce)
}

// csrfOK checks a form's CSRF token against the session: a page of another
// site cannot read it, so it cannot post in the operator's name.
func (a *auth) csrfOK(r *http.Request) bool {
	if a.bearer(r) {
		return true
	}
	want := a.csrfToken(r)
	return want != "" && hmac.Equal([]byte(r.PostFormValue(csrfField)), []byte(want))
}

// signedIn lets through requests with the bearer token or a valid session;
// a browser without either is sent to the sign-in form.
func (p *pages) signedIn(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.auth.bearer(r) {
			next.ServeHTTP(w, r)
			return
		}
		if _, ok := p.auth.session(r); ok {
			next.ServeHTTP(w, r)
			return
		}
		if r.Method == http.MethodGet {
			http.Redirect(w, r, Prefix+"login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="tokenrelay operator"`)
		http.Error(w, "sign in with the admin token first", http.StatusUnauthorized)
	})
}

type loginPage struct {
	layout
	Next string
}

func (p *pages) loginForm(w http.ResponseWriter, r *http.Request) {
	l := p.layout(r, "Sign in", "")
	p.render(w, http.StatusOK, "login.html", loginPage{layout: l, Next: safeNext(r.URL.Query().Get("next"))})
}

// login checks the admin token from the form and sets the session cookie.
func (p *pages) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	next := safeNext(r.PostFormValue("next"))
	if !p.auth.tokenOK(r.PostFormValue("token")) {
		p.d.Logger.Warn().Str("audit", "login").Str("who", "operator").Str("remote", r.RemoteAddr).Bool("ok", false).Msg("operator sign-in refused")
		l := p.layout(r, "Sign in", "")
		l.Error = "That is not the admin token."
		p.render(w, http.StatusUnauthorized, "login.html", loginPage{layout: l, Next: next})
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: p.auth.newSession(), Path: Prefix,
		MaxAge: int(p.d.SessionTTL / time.Second), HttpOnly: true, SameSite: http.SameSiteStrictMode,
		Secure: r.TLS != nil,
	})
	p.d.Logger.Info().Str("audit", "login").Str("who", "operator").Str("remote", r.RemoteAddr).Bool("ok", true).Msg("operator signed in")
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (p *pages) logout(w http.ResponseWriter, r *http.Request) {
	if !p.auth.csrfOK(r) {
		http.Error(w, "the form is stale or was not sent from these pages; reload and try again", http.StatusForbidden)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: Prefix, MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, Prefix+"login", http.StatusSeeOther)
}

// safeNext keeps a post-login redirect on these pages.
func safeNext(next string) string {
	if !strings.HasPrefix(next, Prefix) || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") {
		return Prefix + "credentials"
	}
	return next
}
