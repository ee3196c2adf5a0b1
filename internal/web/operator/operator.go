package operator

import (
	"bytes"
	"context"
	"embed"
	"html/template"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/buildinfo"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/internal/web/websession"
	"github.com/tokenrelay/tokenrelay/secret"
)

// Prefix is where the pages are mounted; every link they draw starts with it.
const Prefix = "/ui/"

// Credentials is what the pages read of the credential store.
type Credentials interface {
	// Scan calls fn with every credential's summary, in any order.
	Scan(ctx context.Context, fn func(store.Summary) error) error
	// Get returns one credential (store.ErrNotFound if none); the pages
	// show only its secret-free fields.
	Get(ctx context.Context, id string) (store.Credential, error)
}

// Revoker revokes a credential for an operator (key.revoked, reason
// revoked_by_operator).
type Revoker interface {
	Revoke(ctx context.Context, id, reason string) error
}

// Enabler puts a revoked credential back in service, with a new secret
// when one is given (a zero value keeps the stored keys).
type Enabler interface {
	Enable(ctx context.Context, id string, newSecret secret.Value) error
}

// Rotator replaces a credential's key at its vendor now.
type Rotator interface {
	RotateNow(ctx context.Context, id string) error
}

// RotatableVendors, if a Rotator also implements it, says which vendors can
// rotate keys, so that the action is offered only for their credentials.
type RotatableVendors interface {
	CanRotate(vendor string) bool
}

// Retrier makes a credential due for a refresh at once.
type Retrier interface {
	RetryNow(ctx context.Context, id string) error
}

// Budget is one vendor account's shared rate budget.
type Budget struct {
	// Account is the vendor instance name, or "vendor/credential" for a
	// vendor that limits each OAuth client.
	Account     string
	Limit       int
	Per         time.Duration
	Used        int
	Remaining   int
	PausedUntil time.Time // zero when not paused
	// More, on the last row of a vendor that limits each OAuth client, is
	// how many more of its accounts were active within the window but are
	// not shown (the page shows the paused and the busiest first);
	// MoreAtLeast says the count is a lower bound.
	More        int
	MoreAtLeast bool
	// Idle marks the one row of a vendor that limits each OAuth client
	// when none of its accounts was used within the window: Account is
	// the vendor instance name, Limit and Per what each account has.
	Idle bool
}

// Budgets lists the rate budgets to show.
type Budgets interface {
	Budgets(ctx context.Context) ([]Budget, error)
}

// EventLog reads recent events.
type EventLog interface {
	// Recent returns up to n of the latest events, newest first.
	Recent(ctx context.Context, n int) ([]events.Envelope, error)
}

// Deps are the pages' dependencies. Only Token and Credentials are
// required; an action whose dependency is nil is not offered.
type Deps struct {
	// Token is the admin token; empty turns the pages off (every route
	// answers 404 saying so).
	Token       secret.Value
	Credentials Credentials
	Revoke      Revoker
	Enable      Enabler
	Rotate      Rotator
	Retry       Retrier
	// Budgets, if nil, shows "no budgets configured".
	Budgets Budgets
	// Events, if nil, shows "no event stream".
	Events EventLog
	// Syncs, if nil, shows "syncs are not enabled".
	Syncs Syncs
	// Links are extra entries of the navigation bar, such as asynqmon.
	Links []Link
	// Refresh is how often the list pages reload themselves (a meta
	// refresh; ?refresh=N overrides it, 0 turns it off). Default 5s.
	Refresh time.Duration
	// PageSize is how many credentials a page shows. Default 50.
	PageSize int
	// SessionTTL is how long a sign-in lasts. Default 12h.
	SessionTTL time.Duration
	// Sessions, if set, are the sessions the pages share with the queue
	// dashboard (their Store and Throttle); nil builds them from Token,
	// SessionTTL and Clock, in memory.
	Sessions *websession.Sessions
	Logger   zerolog.Logger
	// Clock defaults to time.Now.
	Clock func() time.Time
}

// Link is an entry of the navigation bar.
type Link struct {
	Name string
	URL  string
}

//go:embed templates/*.html
var templateFS embed.FS

var templates = template.Must(template.New("").Funcs(template.FuncMap{
	"ago":   ago,
	"until": until,
	"stamp": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05Z") },
	"per":   per,
	// The build, in the footer of the pages of a signed-in operator (not
	// on the sign-in page: which version runs is no business of a visitor).
	"build": func() string { return buildinfo.Read().String() },
}).ParseFS(templateFS, "templates/*.html"))

type pages struct {
	d    Deps
	auth *websession.Sessions
}

// Handler serves the pages under Prefix.
func Handler(d Deps) http.Handler {
	if d.Clock == nil {
		d.Clock = time.Now
	}
	if d.Refresh == 0 {
		d.Refresh = 5 * time.Second
	}
	if d.PageSize <= 0 {
		d.PageSize = 50
	}
	if d.SessionTTL <= 0 {
		d.SessionTTL = 12 * time.Hour
	}
	auth := d.Sessions
	if auth == nil {
		auth = websession.New(d.Token, websession.Options{TTL: d.SessionTTL, Now: d.Clock})
	}
	p := &pages{d: d, auth: auth}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+Prefix+"{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, Prefix+"credentials", http.StatusSeeOther)
	})
	mux.HandleFunc("GET "+Prefix+"login", p.loginForm)
	mux.HandleFunc("POST "+Prefix+"login", p.login)
	mux.Handle("POST "+Prefix+"logout", p.signedIn(http.HandlerFunc(p.logout)))
	mux.Handle("GET "+Prefix+"credentials", p.signedIn(http.HandlerFunc(p.credentials)))
	mux.Handle("GET "+Prefix+"credentials/{id}", p.signedIn(withID(p.credential)))
	mux.Handle("GET "+Prefix+"credentials/{id}/{action}", p.signedIn(withID(p.confirm)))
	mux.Handle("POST "+Prefix+"credentials/{id}/{action}", p.signedIn(withID(p.act)))
	mux.Handle("GET "+Prefix+"budgets", p.signedIn(http.HandlerFunc(p.budgets)))
	mux.Handle("GET "+Prefix+"events", p.signedIn(http.HandlerFunc(p.events)))
	mux.Handle("GET "+Prefix+"syncs", p.signedIn(http.HandlerFunc(p.syncs)))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d.Token.IsZero() {
			http.Error(w, "the operator pages are off: set http.admin_token in the configuration", http.StatusNotFound)
			return
		}
		websession.PageHeaders(w.Header(), PageResources)
		mux.ServeHTTP(w, r)
	})
}

// PageResources is what the pages load: inline styles and their own
// images, nothing else (no script at all). websession.PageHeaders adds
// the directives every page behind the admin token shares.
const PageResources = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:"

// withID refuses, 400, a request whose {id} (percent-decoded by the mux)
// is not a credential id, before h looks it up or draws it.
func withID(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !config.ValidID(r.PathValue("id")) {
			http.Error(w, "a credential id is 1 to 64 letters, digits, _ and -", http.StatusBadRequest)
			return
		}
		h(w, r)
	})
}

// layout is what every page's frame needs.
type layout struct {
	Title   string
	Nav     string // which entry is current
	Links   []Link
	Refresh int    // seconds; 0: no meta refresh
	CSRF    string // the session's CSRF token, for forms
	Now     time.Time
	Flash   string
	Error   string
}

func (p *pages) layout(r *http.Request, title, nav string) layout {
	return layout{Title: title, Nav: nav, Links: p.d.Links, CSRF: p.auth.CSRFToken(r), Now: p.d.Clock()}
}

// refreshSeconds is the list pages' reload period: ?refresh=N, else the
// default.
func (p *pages) refreshSeconds(r *http.Request) int {
	if v := r.URL.Query().Get("refresh"); v != "" {
		if n, err := strconv.Atoi(v); err == nil && n >= 0 {
			return min(n, 3600)
		}
	}
	return int(p.d.Refresh.Round(time.Second) / time.Second)
}

// render executes a template into a buffer first, so that a failure
// answers a clean 500 instead of half a page.
func (p *pages) render(w http.ResponseWriter, status int, name string, data any) {
	var b bytes.Buffer
	if err := templates.ExecuteTemplate(&b, name, data); err != nil {
		p.d.Logger.Error().Err(err).Str("template", name).Msg("operator: render failed")
		http.Error(w, "the page could not be drawn; see the worker's log", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = b.WriteTo(w)
}

func ago(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return short(now.Sub(t)) + " ago"
}

func until(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := t.Sub(now)
	if d <= 0 {
		return short(-d) + " ago"
	}
	return "in " + short(d)
}

// short writes a duration the way a person reads it: 4.2s, 3m10s, 5h2m, 3d4h.
func short(d time.Duration) string {
	switch {
	case d < 0:
		d = -d
	}
	switch {
	case d < 10*time.Second:
		return d.Round(100 * time.Millisecond).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	case d < 48*time.Hour:
		return strings.TrimSuffix(d.Round(time.Minute).String(), "0s")
	default:
		days := d / (24 * time.Hour)
		return strconv.Itoa(int(days)) + "d" + strconv.Itoa(int((d-days*24*time.Hour)/time.Hour)) + "h"
	}
}
