package operator

import (
	"net/http"

	"github.com/tokenrelay/tokenrelay/internal/web/websession"
	"net/url"
	"strings"
)

// signedIn lets through requests with the bearer token or a valid session;
// a browser without either is sent to the sign-in form. Sessions and CSRF
// tokens are package websession's: the session cookie set here is the one
// the queue dashboard accepts too.
func (p *pages) signedIn(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.auth.Bearer(r) || p.auth.SignedIn(r) {
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
	if err := p.auth.SignIn(w, r, r.PostFormValue("token")); err != nil {
		status, msg := websession.Refusal(w, err)
		p.d.Logger.Warn().Str("audit", "login").Str("who", "operator").Str("remote", r.RemoteAddr).Bool("ok", false).
			Int("status", status).Msg("operator sign-in refused")
		l := p.layout(r, "Sign in", "")
		l.Error = msg
		p.render(w, status, "login.html", loginPage{layout: l, Next: next})
		return
	}
	p.d.Logger.Info().Str("audit", "login").Str("who", "operator").Str("remote", r.RemoteAddr).Bool("ok", true).Msg("operator signed in")
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// logout ends the session, on the queue dashboard too.
func (p *pages) logout(w http.ResponseWriter, r *http.Request) {
	if !p.auth.CSRFOK(r) {
		http.Error(w, "the form is stale or was not sent from these pages; reload and try again", http.StatusForbidden)
		return
	}
	if err := p.auth.SignOut(w, r); err != nil {
		p.d.Logger.Error().Err(err).Msg("operator: sign-out not recorded; the session lives until it expires")
		http.Error(w, "signing out failed (is Redis up?); try again", http.StatusServiceUnavailable)
		return
	}
	p.d.Logger.Info().Str("audit", "logout").Str("who", "operator").Str("remote", r.RemoteAddr).Msg("operator signed out")
	http.Redirect(w, r, Prefix+"login", http.StatusSeeOther)
}

// safeNext keeps a post-login redirect on these pages.
func safeNext(next string) string {
	if !strings.HasPrefix(next, Prefix) || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") {
		return Prefix + "credentials"
	}
	return next
}
