// Package dashboard serves asynqmon, the queue dashboard, on the worker
// behind the admin token: the sign-in it needs (asynqmon's own requests
// carry no Authorization header, so a browser signs in once by a form),
// the operator pages' session (package websession: a sign-in on either is
// a sign-in on both, and a sign-out ends both), and task payloads shown by
// an allow-list (RedactPayload), so that no secret reaches the page.
package dashboard

import (
	"crypto/sha256"
	"encoding/base64"
	"html/template"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"

	"github.com/hibiken/asynq"
	"github.com/hibiken/asynqmon"
	"github.com/rs/zerolog"

	"github.com/tokenrelay/tokenrelay/internal/web/admin"
	"github.com/tokenrelay/tokenrelay/internal/web/websession"
	"github.com/tokenrelay/tokenrelay/secret"
)

// Path is where the worker serves the dashboard.
const Path = "/asynqmon/"

// Options are the dashboard's dependencies.
type Options struct {
	// Token is the admin token; empty turns the dashboard off (404).
	Token secret.Value
	// Sessions are the operator pages' sessions, shared with them.
	Sessions *websession.Sessions
	// Redis is the Redis asynq uses; nil turns the dashboard off (404).
	Redis asynq.RedisConnOpt
	// PrometheusURL, if set, feeds asynqmon's Metrics tab (queried by the
	// worker, not the browser).
	PrometheusURL string
	// Logger gets the sign-in audit lines.
	Logger zerolog.Logger
}

// New mounts asynqmon behind the admin token. It shows every queue with
// task payloads rendered by RedactPayload. closer closes its Redis
// connections.
//
// Besides the bearer token (scripts), a browser signs in once with the
// form shown without a session (POST /asynqmon/login; a token in the URL
// is never accepted: URLs end up in logs and browser history).
func New(o Options) (h http.Handler, closer func() error) {
	if o.Token.IsZero() || o.Redis == nil {
		return admin.RequireToken(o.Token, http.NotFoundHandler()), func() error { return nil }
	}
	mon := asynqmon.New(asynqmon.Options{
		RootPath:          strings.TrimSuffix(Path, "/"),
		RedisConnOpt:      o.Redis,
		PayloadFormatter:  asynqmon.PayloadFormatterFunc(RedactPayload),
		ResultFormatter:   asynqmon.ResultFormatterFunc(RedactPayload),
		PrometheusAddress: o.PrometheusURL,
	})
	log := o.Logger.With().Str("component", "asynqmon").Logger()
	return auth(o.Token, o.Sessions, pageResources(mon), log, mon), mon.Close
}

// pageResources is the content security policy's resource part for
// asynqmon's page: its scripts from here, and the two inline ones of its
// index page by their hashes (read from the page itself, so that another
// asynqmon version keeps working); the inline styles its UI library adds;
// fonts, images and API calls from here only (its links to Google Fonts
// are blocked: the page does not tell a third party who looks at it).
func pageResources(mon http.Handler) string {
	rec := httptest.NewRecorder()
	mon.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, Path, nil))
	scripts := "'self'"
	for _, m := range inlineScript.FindAllStringSubmatch(rec.Body.String(), -1) {
		sum := sha256.Sum256([]byte(m[1]))
		scripts += " 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
	}
	return "default-src 'self'; script-src " + scripts + "; style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; connect-src 'self'"
}

var inlineScript = regexp.MustCompile(`(?s)<script>(.*?)</script>`)

// auth lets through requests to next with a session (from the
// same origin) or the bearer token, and signs browsers in by the form.
// Every answer carries the operator pages' frame and content security
// headers (websession.PageHeaders), resources being its resource part.
func auth(token secret.Value, sessions *websession.Sessions, resources string, log zerolog.Logger, next http.Handler) http.Handler {
	withBearer := admin.RequireTokenThrottled(token, sessions.Throttle(), next) // scripts, and the 401 for API calls
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		websession.PageHeaders(w.Header(), resources)
		switch {
		case sessions.SignedIn(r):
			if !websession.SameOrigin(r) {
				http.Error(w, "cross-site request refused", http.StatusForbidden)
				return
			}
			next.ServeHTTP(w, r)
		case r.Method == http.MethodPost && r.URL.Path == Path+"login":
			r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
			signIn(w, r, sessions, log, r.PostFormValue("token"))
		case r.Header.Get("Authorization") == "" && r.Method == http.MethodGet && !strings.HasPrefix(r.URL.Path, Path+"api/"):
			loginForm(w, http.StatusUnauthorized, "")
		default:
			withBearer.ServeHTTP(w, r)
		}
	})
}

// signIn sets the session cookie if got is the admin token (and
// the client is not throttled), and redirects to the dashboard. Each try
// is audited in the log, as the operator pages' sign-ins are.
func signIn(w http.ResponseWriter, r *http.Request, sessions *websession.Sessions, log zerolog.Logger, got string) {
	if err := sessions.SignIn(w, r, got); err != nil {
		status, msg := websession.Refusal(w, err)
		log.Warn().Str("audit", "login").Str("who", "operator").Str("via", "asynqmon").Str("remote", r.RemoteAddr).
			Bool("ok", false).Int("status", status).Msg("queue dashboard sign-in refused")
		loginForm(w, status, msg)
		return
	}
	log.Info().Str("audit", "login").Str("who", "operator").Str("via", "asynqmon").Str("remote", r.RemoteAddr).
		Bool("ok", true).Msg("operator signed in to the queue dashboard")
	http.Redirect(w, r, Path, http.StatusSeeOther)
}

var loginPage = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tokenrelay queues: sign in</title>
<style>body{font:16px system-ui,sans-serif;max-width:28em;margin:4em auto}input{font:inherit;padding:.3em;width:100%;box-sizing:border-box;margin:.5em 0}</style></head>
<body><h1>tokenrelay queues</h1>
<p>The queue dashboard (asynqmon) needs the admin token (<code>http.admin_token</code>).</p>
{{if .}}<p role="alert"><strong>{{.}}</strong></p>{{end}}
<form method="post" action="` + Path + `login">
<label for="token">Admin token</label><input id="token" name="token" type="password" autocomplete="current-password" autofocus required>
<input type="submit" value="Sign in"></form></body></html>`))

func loginForm(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("WWW-Authenticate", `Bearer realm="tokenrelay admin"`)
	w.WriteHeader(status)
	_ = loginPage.Execute(w, msg)
}
