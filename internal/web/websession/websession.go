// Package websession signs in the browsers of the worker's web pages: the
// operator pages (/ui/, package operator) and the queue dashboard
// (/asynqmon/, package dashboard), both behind the admin token.
//
// A browser signs in once, with the admin token sent by a form (never in
// a URL), and gets one session cookie (CookieName, Path "/") that both
// pages accept, so an operator moving from one to the other is not asked
// again. The cookie holds "<expiry unix>.<nonce>.<mac>": the MAC is keyed
// by a hash of the admin token, so that changing the token ends every
// session. The session also lives server-side, in a Store (Redis, shared
// by every worker replica): signing out deletes it there, so a copy of the
// cookie replayed after the sign-out is refused. The token itself is
// never in the cookie.
//
// Sign-in attempts, and bearer tokens, are counted per client by a
// Throttle: after a few wrong tokens a client is refused (429) for a
// while, doubling with each further failure. The cookie is HttpOnly,
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
	"encoding/hex"
	"errors"
	"fmt"
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

// Sessions signs and checks the sessions of one admin token. Sessions
// signed by one Sessions (on any replica) are accepted by every other
// built from the same token and Store.
type Sessions struct {
	off       bool // no admin token: nothing is accepted
	tokenHash [32]byte
	key       []byte // HMAC key of sessions and CSRF tokens
	ttl       time.Duration
	now       func() time.Time
	store     Store
	throttle  *Throttle
}

// Options tune Sessions. Zero values take the defaults given.
type Options struct {
	// TTL is how long a sign-in lasts (DefaultTTL).
	TTL time.Duration
	// Now is the clock (time.Now).
	Now func() time.Time
	// Store keeps the sessions signed in. Default: a MemoryStore, which
	// only this process sees; give every replica the same RedisStore.
	Store Store
	// Throttle counts wrong tokens per client. Default: a new Throttle
	// with its defaults on Now.
	Throttle *Throttle
}

// Errors of SignIn.
var (
	// ErrWrongToken: the token presented is not the admin token.
	ErrWrongToken = errors.New("websession: not the admin token")
)

// ThrottledError refuses a sign-in from a client that failed too often;
// the token was not even compared.
type ThrottledError struct {
	// RetryAfter is how long the client must wait.
	RetryAfter time.Duration
}

func (e *ThrottledError) Error() string {
	return fmt.Sprintf("websession: too many failed sign-ins; retry in %s", e.RetryAfter.Round(time.Second))
}

// New returns the sessions of the admin token. An empty token accepts no
// token and no session: with it the key would be public.
func New(token secret.Value, o Options) *Sessions {
	if o.TTL <= 0 {
		o.TTL = DefaultTTL
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Store == nil {
		o.Store = NewMemoryStore(o.Now)
	}
	if o.Throttle == nil {
		o.Throttle = NewThrottle(ThrottleOptions{Now: o.Now})
	}
	k := sha256.Sum256([]byte("tokenrelay web session\x00" + token.Reveal()))
	return &Sessions{
		off:       token.IsZero(),
		tokenHash: sha256.Sum256([]byte(token.Reveal())),
		key:       k[:],
		ttl:       o.TTL,
		now:       o.Now,
		store:     o.Store,
		throttle:  o.Throttle,
	}
}

// Throttle is the Throttle counting this Sessions' failed sign-ins, to
// share with other routes that take the admin token.
func (s *Sessions) Throttle() *Throttle { return s.throttle }

// TokenOK compares a presented token with the admin token in constant
// time (of the hashes, so that not even the length leaks). It does not
// count failures: SignIn and Bearer do.
func (s *Sessions) TokenOK(got string) bool {
	sum := sha256.Sum256([]byte(got))
	return !s.off && got != "" && subtle.ConstantTimeCompare(sum[:], s.tokenHash[:]) == 1
}

// check compares got with the admin token for the request's client,
// through the throttle: a throttled client is refused without a
// comparison, a wrong token counts against it, a right one clears it.
func (s *Sessions) check(r *http.Request, got string) error {
	return s.throttle.Check(r, func() bool { return s.TokenOK(got) })
}

// Bearer reports whether the request carries the admin token as a bearer
// header (scripts and tests; no CSRF check needed, browsers never add it).
// A wrong one counts as a failed sign-in; a throttled client's is not
// compared.
func (s *Sessions) Bearer(r *http.Request) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && s.check(r, got) == nil
}

// SignIn sets a new session cookie on w if got is the admin token and the
// client is not throttled. It returns ErrWrongToken, a *ThrottledError,
// or an error of the Store. Call it before writing the answer's status.
func (s *Sessions) SignIn(w http.ResponseWriter, r *http.Request, got string) error {
	if err := s.check(r, got); err != nil {
		return err
	}
	value, id := s.newSession()
	if err := s.store.Add(r.Context(), id, s.ttl); err != nil {
		return fmt.Errorf("websession: keep the session: %w", err)
	}
	http.SetCookie(w, s.cookie(r, value, int(s.ttl/time.Second)))
	return nil
}

// SignOut ends the request's session server-side, so that no copy of its
// cookie is accepted again, and clears the cookie, for every page that
// accepts it. The cookie is cleared even if the Store fails; the error
// says the session may live on until it expires.
func (s *Sessions) SignOut(w http.ResponseWriter, r *http.Request) error {
	http.SetCookie(w, s.cookie(r, "", -1))
	nonce, ok := s.verify(r)
	if !ok {
		return nil
	}
	if err := s.store.Delete(r.Context(), sessionID(nonce)); err != nil {
		return fmt.Errorf("websession: end the session: %w", err)
	}
	return nil
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

// newSession returns a fresh cookie value and the id the Store keeps.
func (s *Sessions) newSession() (value, id string) {
	nonce := rand.Text()
	exp := strconv.FormatInt(s.now().Add(s.ttl).Unix(), 10)
	return exp + "." + nonce + "." + s.mac("session", exp, nonce), sessionID(nonce)
}

// sessionID is what the Store keeps of a session: a hash of its nonce, so
// that someone reading the Store learns nothing to build a cookie with.
func sessionID(nonce string) string {
	sum := sha256.Sum256([]byte("tokenrelay web session id\x00" + nonce))
	return hex.EncodeToString(sum[:])
}

// session returns the nonce of the request's valid session: signed,
// unexpired, and not ended (in the Store). A Store that fails refuses it.
func (s *Sessions) session(r *http.Request) (nonce string, ok bool) {
	nonce, ok = s.verify(r)
	if !ok {
		return "", false
	}
	live, err := s.store.Has(r.Context(), sessionID(nonce))
	if err != nil || !live {
		return "", false
	}
	return nonce, true
}

// verify returns the nonce of the request's cookie if it is signed and
// unexpired, without asking the Store.
func (s *Sessions) verify(r *http.Request) (nonce string, ok bool) {
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

// PageHeaders sets the headers of every page behind the admin token (the
// operator pages and the queue dashboard): never cached, never framed
// (X-Frame-Options and frame-ancestors, against clickjacking), no
// referrer to other sites, no content sniffing, and the
// Content-Security-Policy made of the page's own resource directives
// (e.g. "default-src 'none'; style-src 'unsafe-inline'") and the ones
// every page shares: no frame, no plugin, no <base>, forms posting only
// here.
func PageHeaders(h http.Header, resources string) {
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Content-Security-Policy", resources+"; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
}

// Refusal turns an error of SignIn into the answer's status and a message
// for the sign-in form, and sets Retry-After on w for a throttled client:
// 429 for a *ThrottledError, 401 for ErrWrongToken, 503 for a Store
// failure.
func Refusal(w http.ResponseWriter, err error) (status int, message string) {
	if th, ok := errors.AsType[*ThrottledError](err); ok {
		secs := int((th.RetryAfter + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		return http.StatusTooManyRequests, fmt.Sprintf("Too many wrong tokens from your address: try again in %s.", (time.Duration(secs) * time.Second).String())
	}
	if errors.Is(err, ErrWrongToken) {
		return http.StatusUnauthorized, "That is not the admin token."
	}
	return http.StatusServiceUnavailable, "Sessions cannot be kept right now (is Redis up?); try again."
}
