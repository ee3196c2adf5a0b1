// Package websession signs in the browsers of the worker's web pages: the
// operator pages (/ui/) and the queue dashboard (/asynqmon/), both behind
// the admin token.
//
// A browser signs in once, with the admin token, and gets one session
// cookie (CookieName, Path "/") that both pages accept, so an operator
// moving from one to the other is not asked again. The cookie holds
// "<expiry unix>.<nonce>.<mac>": the MAC is keyed by a hash of the admin
// token, so that changing the token ends every session and any worker
// replica can check a session another one signed, without shared state.
// The token itself is never in the cookie. The cookie is HttpOnly,
// SameSite=Strict, and Secure when the request came over TLS (directly or
// through a proxy that says so with X-Forwarded-Proto).
//
// Forms that change something carry a CSRF token derived from the
// session's nonce (CSRFToken, CSRFOK); pages whose requests cannot carry
// one (a single-page app) check SameOrigin instead. Scripts skip both by
// sending the token as a bearer header (Bearer), which browsers never add
// on their own.
package websession

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

// CookieName is the session cookie's name, on Path "/" so that it reaches
// every page that accepts it.
const CookieName = "tokenrelay_session"

// DefaultTTL is how long a sign-in lasts unless New is told otherwise.
const DefaultTTL = 12 * time.Hour

// CSRFField is the form field carrying the CSRF token.
const CSRFField = "csrf"

// Sessions signs and checks the sessions of one admin token. It holds no
// state besides its key: sessions signed by one Sessions (on any replica)
// are accepted by every other built from the same token.
type Sessions struct {
	off       bool // no admin token: nothing is accepted
	tokenHash [32]byte
	key       []byte // HMAC key of sessions and CSRF tokens
	ttl       time.Duration
	now       func() time.Time
}

// New returns the sessions of the admin token. ttl is how long a sign-in
// lasts (DefaultTTL if <= 0); now defaults to time.Now. An empty token
// accepts no token and no session: with it the key would be public.
func New(token secret.Value, ttl time.Duration, now func() time.Time) *Sessions {
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	if now == nil {
		now = time.Now
	}
	k := sha256.Sum256([]byte("tokenrelay web session\x00" + token.Reveal()))
	return &Sessions{
		off:       token.IsZero(),
		tokenHash: sha256.Sum256([]byte(token.Reveal())),
		key:       k[:],
		ttl:       ttl,
		now:       now,
	}
}

// TokenOK compares a presented token with the admin token in constant
// time (of the hashes, so that not even the length leaks).
func (s *Sessions) TokenOK(got string) bool {
	sum := sha256.Sum256([]byte(got))
	return !s.off && got != "" && subtle.ConstantTimeCompare(sum[:], s.tokenHash[:]) == 1
}

// Bearer reports whether the request carries the admin token as a bearer
// header (scripts and tests; no CSRF check needed, browsers never add it).
func (s *Sessions) Bearer(r *http.Request) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && s.TokenOK(got)
}

// SignIn sets a new session cookie on w if got is the admin token, and
// reports whether it was. Call it before writing the answer's status.
func (s *Sessions) SignIn(w http.ResponseWriter, r *http.Request, got string) bool {
	if !s.TokenOK(got) {
		return false
	}
	http.SetCookie(w, s.cookie(r, s.newSession(), int(s.ttl/time.Second)))
	return true
}

// SignOut clears the session cookie, for every page that accepts it.
func (s *Sessions) SignOut(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, s.cookie(r, "", -1))
}

func (s *Sessions) cookie(r *http.Request, value string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name: CookieName, Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: overTLS(r),
	}
}

// overTLS reports whether the browser reached us over TLS: directly, or
// through a proxy that terminated it. Trusting the header is safe here: it
// can only make the cookie stricter.
func overTLS(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	proto, _, _ := strings.Cut(r.Header.Get("X-Forwarded-Proto"), ",")
	return strings.EqualFold(strings.TrimSpace(proto), "https")
}

// SignedIn reports whether the request carries a valid, unexpired session.
func (s *Sessions) SignedIn(r *http.Request) bool {
	_, ok := s.session(r)
	return ok
}

// CSRFToken is the CSRF token of the request's session ("" without one),
// for the forms of a page.
func (s *Sessions) CSRFToken(r *http.Request) string {
	nonce, ok := s.session(r)
	if !ok {
		return ""
	}
	return s.mac("csrf", nonce)
}

// CSRFOK checks a form's CSRF token (field CSRFField) against the
// request's session: a page of another site cannot read it, so it cannot
// post in the operator's name. A bearer request needs none.
func (s *Sessions) CSRFOK(r *http.Request) bool {
	if s.Bearer(r) {
		return true
	}
	want := s.CSRFToken(r)
	return want != "" && hmac.Equal([]byte(r.PostFormValue(CSRFField)), []byte(want))
}

// SameOrigin rejects a state-changing request a browser sent from another
// site, for pages whose requests carry no CSRF token (the SameSite cookie
// already keeps such requests out of modern browsers).
func SameOrigin(r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" {
		return false
	}
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		return err == nil && u.Host == r.Host
	}
	return true
}

func (s *Sessions) mac(parts ...string) string {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(strings.Join(parts, "\x00")))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// newSession returns a fresh cookie value.
func (s *Sessions) newSession() string {
	nonce := rand.Text()
	exp := strconv.FormatInt(s.now().Add(s.ttl).Unix(), 10)
	return exp + "." + nonce + "." + s.mac("session", exp, nonce)
}

// session returns the nonce of the request's valid session.
func (s *Sessions) session(r *http.Request) (nonce string, ok bool) {
	if s.off {
		return "", false
	}
	c, err := r.Cookie(CookieName)
	if err != nil {
		return "", false
	}
	parts := strings.Split(c.Value, ".")
	if len(parts) != 3 {
		return "", false
	}
	exp, err := strconv.ParseInt(parts[0], 10, 64)
	if err != nil || !s.now().Before(time.Unix(exp, 0)) {
		return "", false
	}
	if !hmac.Equal([]byte(parts[2]), []byte(s.mac("session", parts[0], parts[1]))) {
		return "", false
	}
	return parts[1], true
}
