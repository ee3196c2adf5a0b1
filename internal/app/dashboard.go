package app

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"time"

	"github.com/hibiken/asynqmon"
	"github.com/rs/zerolog"

	"github.com/tokenrelay/tokenrelay/internal/web/admin"
	"github.com/tokenrelay/tokenrelay/internal/web/websession"
	"github.com/tokenrelay/tokenrelay/internal/webhooks"
	"github.com/tokenrelay/tokenrelay/jobs"
	"github.com/tokenrelay/tokenrelay/secret"
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

// Payload rendering. The queue dashboard shows a task's payload by an
// allow-list: for each task type tokenrelay enqueues, the fields known to
// hold nothing secret (ids, numbers, times), each rendered by its kind;
// every other field, of any task, shows its name and not its value, and a
// payload of an unknown type or not JSON shows only its size. A field
// added to a payload later is so hidden until it is listed here.
const (
	redacted = "«redacted»"
	// maxShown caps a value shown (a header's, a path).
	maxShown = 200
)

// fieldKind says how an allowed field's value is shown.
type fieldKind int

const (
	kindID           fieldKind = iota // an id: shown if it looks like one
	kindNumber                        // a JSON number
	kindTime                          // an RFC 3339 time
	kindMethod                        // an HTTP method
	kindPath                          // a vendor API path: resource names, ids masked
	kindQuery                         // a query: names, values redacted
	kindHeaders                       // headers: names, values of safeHeaders only
	kindBody                          // a body: its size
	kindSet                           // shown only as set or not
	kindRefreshItems                  // a list of token:refresh payloads
)

// taskFields lists, per task type, the payload fields shown and how.
var taskFields = map[string]map[string]fieldKind{
	jobs.TypeTokenRefresh:      {"credential": kindID, "generation": kindNumber},
	jobs.TypeTokenRefreshBatch: {"items": kindRefreshItems},
	jobs.TypeKeyRotate:         {"credential": kindID},
	jobs.TypeVendorRequest: {"id": kindID, "vendor": kindID, "credential": kindID, "method": kindMethod,
		"path": kindPath, "query": kindQuery, "headers": kindHeaders, "body": kindBody,
		"idempotency_key": kindSet, "batch": kindID, "deadline": kindTime, "submitted_at": kindTime},
	webhooks.TypePoll: {"vendor": kindID, "resource": kindID, "slot": kindNumber},
}

// safeHeaders are the request headers whose values are shown (lowercase):
// content negotiation and caching, never credentials or cookies.
var safeHeaders = map[string]bool{"accept": true, "accept-language": true, "accept-encoding": true,
	"content-type": true, "content-language": true, "prefer": true, "cache-control": true,
	"if-match": true, "if-none-match": true, "if-modified-since": true, "x-request-id": true}

var (
	shownID      = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,128}$`)
	shownMethod  = regexp.MustCompile(`^[A-Z]{1,10}$`)
	shownSegment = regexp.MustCompile(`^\$?[A-Za-z_-]{1,64}$`)
)

// redactPayload renders a task payload (or result) for asynqmon as
// indented JSON of the fields taskFields allows for its type.
func redactPayload(taskType string, payload []byte) string {
	fields, known := taskFields[taskType]
	if !known {
		return fmt.Sprintf("«%d bytes of a %q task: not shown»", len(payload), taskType)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(payload, &m); err != nil {
		return fmt.Sprintf("«%d bytes, not a JSON object: not shown»", len(payload))
	}
	out, err := json.MarshalIndent(shownFields(m, fields), "", "  ")
	if err != nil {
		return fmt.Sprintf("«%d bytes: not shown»", len(payload))
	}
	return string(out)
}

// shownFields renders the allowed fields of m, and the others' names.
func shownFields(m map[string]json.RawMessage, fields map[string]fieldKind) map[string]any {
	out := make(map[string]any, len(m))
	for k, raw := range m {
		kind, ok := fields[k]
		if !ok {
			out[k] = redacted
			continue
		}
		out[k] = shownValue(kind, raw)
	}
	return out
}

// shownValue renders one allowed field by its kind; a value not of its
// kind is not shown.
func shownValue(kind fieldKind, raw json.RawMessage) any {
	var str string
	isString := json.Unmarshal(raw, &str) == nil
	switch kind {
	case kindID:
		if isString && shownID.MatchString(str) {
			return str
		}
	case kindMethod:
		if isString && shownMethod.MatchString(str) {
			return str
		}
	case kindTime:
		if _, err := time.Parse(time.RFC3339Nano, str); isString && err == nil {
			return str
		}
	case kindNumber:
		var n json.Number
		if json.Unmarshal(raw, &n) == nil {
			return n
		}
	case kindPath:
		if isString {
			return shownPath(str)
		}
	case kindQuery:
		var q map[string]json.RawMessage
		if json.Unmarshal(raw, &q) == nil {
			out := make(map[string]string, len(q))
			for k := range q {
				out[k] = redacted
			}
			return out
		}
	case kindHeaders:
		var h map[string]string
		if json.Unmarshal(raw, &h) == nil {
			out := make(map[string]string, len(h))
			for k, v := range h {
				out[k] = redacted
				if safeHeaders[strings.ToLower(k)] && len(v) <= maxShown && !strings.ContainsAny(v, "\r\n") {
					out[k] = v
				}
			}
			return out
		}
	case kindBody:
		if string(raw) == "null" {
			return nil
		}
		return fmt.Sprintf("«%d bytes: not shown»", len(raw))
	case kindSet:
		return "«set»"
	case kindRefreshItems:
		var items []map[string]json.RawMessage
		if json.Unmarshal(raw, &items) == nil {
			out := make([]map[string]any, len(items))
			for i, it := range items {
				out[i] = shownFields(it, taskFields[jobs.TypeTokenRefresh])
			}
			return out
		}
	}
	return redacted
}

// shownPath shows the resource names of a vendor API path and masks the
// other segments (ids of patients and records, anything else): e.g.
// "Patient/«id»/$everything".
func shownPath(p string) string {
	if len(p) > maxShown {
		return redacted
	}
	path, _, _ := strings.Cut(p, "?")
	segs := strings.Split(path, "/")
	for i, s := range segs {
		if s != "" && !shownSegment.MatchString(s) {
			segs[i] = "«id»"
		}
	}
	return strings.Join(segs, "/")
}
