package app

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"

	"github.com/hibiken/asynqmon"
	"github.com/rs/zerolog"

	"github.com/tokenrelay/tokenrelay/admin"
	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/websession"
)

// DashboardPath is where the worker serves asynqmon, the queue dashboard.
const DashboardPath = "/asynqmon/"

// newDashboard mounts asynqmon behind the admin token. It shows every
// queue with task payloads rendered by redactPayload, so that no secret
// reaches the page. closer closes its Redis connections.
//
// asynqmon is a single-page app whose own requests carry no Authorization
// header, so besides the bearer token (scripts) a browser signs in once
// with the form shown without a session (POST /asynqmon/login; a token in
// the URL is never accepted: URLs end up in logs and browser history).
// The session is sessions', the operator pages' too: a sign-in on either
// is a sign-in on both, and a sign-out ends both.
func newDashboard(env *Env, sessions *websession.Sessions) (h http.Handler, closer func() error) {
	token := env.Config.HTTP.AdminToken
	if token.IsZero() || env.redisConnOpt == nil {
		return admin.RequireToken(token, http.NotFoundHandler()), func() error { return nil }
	}
	mon := asynqmon.New(asynqmon.Options{
		RootPath:         strings.TrimSuffix(DashboardPath, "/"),
		RedisConnOpt:     env.redisConnOpt,
		PayloadFormatter: asynqmon.PayloadFormatterFunc(redactPayload),
		ResultFormatter:  asynqmon.ResultFormatterFunc(redactPayload),
		// The Metrics tab, queried by the worker (not the browser).
		PrometheusAddress: env.Config.HTTP.PrometheusURL,
	})
	log := env.Logger.With().Str("component", "asynqmon").Logger()
	return dashboardAuth(token, sessions, dashboardResources(mon), log, mon), mon.Close
}

// dashboardResources is the content security policy's resource part for
// asynqmon's page: its scripts from here, and the two inline ones of its
// index page by their hashes (read from the page itself, so that another
// asynqmon version keeps working); the inline styles its UI library adds;
// fonts, images and API calls from here only (its links to Google Fonts
// are blocked: the page does not tell a third party who looks at it).
func dashboardResources(mon http.Handler) string {
	rec := httptest.NewRecorder()
	mon.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, DashboardPath, nil))
	scripts := "'self'"
	for _, m := range inlineScript.FindAllStringSubmatch(rec.Body.String(), -1) {
		sum := sha256.Sum256([]byte(m[1]))
		scripts += " 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
	}
	return "default-src 'self'; script-src " + scripts + "; style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; connect-src 'self'"
}

var inlineScript = regexp.MustCompile(`(?s)<script>(.*?)</script>`)

// dashboardAuth lets through requests to next with a session (from the
// same origin) or the bearer token, and signs browsers in by the form.
// Every answer carries the operator pages' frame and content security
// headers (websession.PageHeaders) with the resources resources.
func dashboardAuth(token secret.Value, sessions *websession.Sessions, resources string, log zerolog.Logger, next http.Handler) http.Handler {
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
		case r.Method == http.MethodPost && r.URL.Path == DashboardPath+"login":
			r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
			dashboardSignIn(w, r, sessions, log, r.PostFormValue("token"))
		case r.Header.Get("Authorization") == "" && r.Method == http.MethodGet && !strings.HasPrefix(r.URL.Path, DashboardPath+"api/"):
			dashboardLoginForm(w, http.StatusUnauthorized, "")
		default:
			withBearer.ServeHTTP(w, r)
		}
	})
}

// dashboardSignIn sets the session cookie if got is the admin token (and
// the client is not throttled), and redirects to the dashboard. Each try
// is audited in the log, as the operator pages' sign-ins are.
func dashboardSignIn(w http.ResponseWriter, r *http.Request, sessions *websession.Sessions, log zerolog.Logger, got string) {
	if err := sessions.SignIn(w, r, got); err != nil {
		status, msg := websession.Refusal(w, err)
		log.Warn().Str("audit", "login").Str("who", "operator").Str("via", "asynqmon").Str("remote", r.RemoteAddr).
			Bool("ok", false).Int("status", status).Msg("queue dashboard sign-in refused")
		dashboardLoginForm(w, status, msg)
		return
	}
	log.Info().Str("audit", "login").Str("who", "operator").Str("via", "asynqmon").Str("remote", r.RemoteAddr).
		Bool("ok", true).Msg("operator signed in to the queue dashboard")
	http.Redirect(w, r, DashboardPath, http.StatusSeeOther)
}

var dashboardLogin = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tokenrelay queues: sign in</title>
<style>body{font:16px system-ui,sans-serif;max-width:28em;margin:4em auto}input{font:inherit;padding:.3em;width:100%;box-sizing:border-box;margin:.5em 0}</style></head>
<body><h1>tokenrelay queues</h1>
<p>The queue dashboard (asynqmon) needs the admin token (<code>http.admin_token</code>).</p>
{{if .}}<p role="alert"><strong>{{.}}</strong></p>{{end}}
<form method="post" action="` + DashboardPath + `login">
<label for="token">Admin token</label><input id="token" name="token" type="password" autocomplete="current-password" autofocus required>
<input type="submit" value="Sign in"></form></body></html>`))

func dashboardLoginForm(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("WWW-Authenticate", `Bearer realm="tokenrelay admin"`)
	w.WriteHeader(status)
	_ = dashboardLogin.Execute(w, msg)
}

// Payload rendering limits.
const (
	// bodyPreview is how much of a JSON body is shown, once its secrets are
	// redacted.
	bodyPreview = 256
	redacted    = "«redacted»"
)

// secretWords mark a JSON key or header name whose value is never shown
// (compared lowercased, without "-" and "_").
var secretWords = []string{"authorization", "auth", "cookie", "token", "secret", "password", "passwd",
	"apikey", "privatekey", "assertion", "signature", "session", "credentials", "jwt", "bearer"}

// redactPayload renders a task payload (or result) for asynqmon: indented
// JSON with the value of every secret-looking field redacted (headers such
// as Authorization and Cookie, tokens, secrets, keys, signatures), and
// request bodies cut to a short redacted preview (JSON) or their size
// (anything else). A payload that is not JSON shows only its size.
func redactPayload(_ string, payload []byte) string {
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil || dec.More() {
		return fmt.Sprintf("«%d bytes, not JSON: not shown»", len(payload))
	}
	out, err := json.MarshalIndent(redactValue("", v), "", "  ")
	if err != nil {
		return fmt.Sprintf("«%d bytes: not shown»", len(payload))
	}
	return string(out)
}

func redactValue(key string, v any) any {
	norm := strings.NewReplacer("-", "", "_", "").Replace(strings.ToLower(key))
	if key != "" && secretKey(norm) {
		return redacted
	}
	if norm == "body" || norm == "data" || norm == "payload" {
		return bodyValue(v)
	}
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = redactValue(k, e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = redactValue(key, e)
		}
		return out
	case string:
		if secretLooking(x) {
			return redacted
		}
		return x
	default:
		return v
	}
}

func secretKey(norm string) bool {
	if norm == "credential" || norm == "credentialid" {
		return false // an id, not a secret
	}
	for _, w := range secretWords {
		if strings.Contains(norm, w) {
			return true
		}
	}
	return false
}

// secretLooking spots a secret in a value whose key did not give it away:
// an Authorization header value or a JWT.
func secretLooking(s string) bool {
	l := strings.ToLower(s)
	if strings.HasPrefix(l, "bearer ") || strings.HasPrefix(l, "basic ") {
		return true
	}
	return strings.HasPrefix(s, "eyJ") && strings.Count(s, ".") >= 2
}

// bodyValue shows a request body: a JSON object or list, redacted and cut
// to bodyPreview; a string (a base64 body or text) only by its size.
func bodyValue(v any) any {
	switch x := v.(type) {
	case nil:
		return nil
	case string:
		return fmt.Sprintf("«%d characters: not shown»", len(x))
	case map[string]any, []any:
		raw, err := json.Marshal(redactValue("", x))
		if err != nil {
			return "«not shown»"
		}
		if len(raw) <= bodyPreview {
			return json.RawMessage(raw)
		}
		return fmt.Sprintf("%s… «%d bytes in all»", cutUTF8(string(raw), bodyPreview), len(raw))
	default:
		return v
	}
}

// cutUTF8 cuts s to at most n bytes without splitting a character.
func cutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }
