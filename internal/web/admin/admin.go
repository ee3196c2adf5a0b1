// Package admin is the worker's admin API: credentials added (one at a time
// or imported by the thousand as JSON lines), listed, rotated, revoked and
// re-enabled, and request jobs submitted and their batches followed or
// cancelled, at run time, without restarting anything, behind a bearer
// token. Secrets are accepted, never returned: listings show fingerprints,
// states, expiry and the last error. Every action is audited in the log.
// The API's JSON is package adminclient's, its Go client.
package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/tokenrelay/tokenrelay/adminclient"
	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/internal/web/websession"
	"github.com/tokenrelay/tokenrelay/secret"
)

// Store is what the admin API needs of the credential store.
type Store interface {
	Upsert(ctx context.Context, c store.NewCredential) (store.UpsertResult, error)
	Get(ctx context.Context, id string) (store.Credential, error)
	Scan(ctx context.Context, fn func(store.Summary) error) error
	Revoke(ctx context.Context, id string, gen int64, class, message string, ev events.Envelope) error
	Enable(ctx context.Context, id, clientID string, keys *store.Keys) error
}

// Deps are the admin API's dependencies.
type Deps struct {
	// Config supplies the vendors and the rules a credential must meet.
	Config *config.Config
	Store  Store
	// Token is the bearer token every request must carry; empty turns the
	// admin API off (every route answers 404 saying so).
	Token secret.Value
	// RevokeAtVendor, if set, is called before an operator's revocation
	// for vendors that can revoke a key themselves; it returns nil where
	// there is nothing to call.
	RevokeAtVendor func(ctx context.Context, c store.Credential) error
	// RotateNow, if set, queues a rotation of c's key now (see RotateNow);
	// it returns an error wrapping ErrCannotRotate for a vendor that
	// cannot rotate, and nil when one is queued already.
	RotateNow func(ctx context.Context, c store.Credential) error
	// Requests, if set, serves POST /admin/requests and the batch routes.
	Requests RequestJobs
	// Syncs, if set, serves POST /admin/syncs and the sync routes.
	Syncs SyncJobs
	// Throttle, if set, counts wrong bearer tokens per client and refuses
	// (429) a client that sent too many, as sign-ins on the operator
	// pages and the queue dashboard are (share one Throttle with them).
	Throttle *websession.Throttle
	Logger   zerolog.Logger
	// Clock defaults to time.Now.
	Clock func() time.Time
}

type api struct {
	d Deps
}

// Handler serves the admin API under /admin/.
func Handler(d Deps) http.Handler {
	if d.Clock == nil {
		d.Clock = time.Now
	}
	a := &api{d: d}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /admin/credentials", a.list)
	mux.HandleFunc("GET /admin/credentials/{id}", withID(a.get))
	mux.HandleFunc("POST /admin/credentials", a.add)
	mux.HandleFunc("POST /admin/credentials/import", a.importLines)
	mux.HandleFunc("POST /admin/credentials/{id}/revoke", withID(a.revoke))
	mux.HandleFunc("POST /admin/credentials/{id}/enable", withID(a.enable))
	mux.HandleFunc("POST /admin/credentials/{id}/rotate", withID(a.rotate))
	a.requestRoutes(mux)
	a.syncRoutes(mux)
	return a.authenticate(mux)
}

// withID refuses, 400, a request whose {id} (percent-decoded by the mux)
// is not a credential or batch id, before h looks it up.
func withID(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !config.ValidID(r.PathValue("id")) {
			writeError(w, http.StatusBadRequest, "bad_id", "an id is 1 to 64 letters, digits, _ and -")
			return
		}
		h(w, r)
	}
}

// authenticate lets through requests carrying the admin token.
func (a *api) authenticate(next http.Handler) http.Handler {
	return RequireTokenThrottled(a.d.Token, a.d.Throttle, next)
}

// RequireToken lets through requests carrying token as a bearer token
// ("Authorization: Bearer <token>"), compared in constant time; others get
// 401 with a JSON adminclient.Problem. An empty token turns the routes off: every
// request gets 404 saying so. The admin API and the queue dashboard share it.
func RequireToken(token secret.Value, next http.Handler) http.Handler {
	return RequireTokenThrottled(token, nil, next)
}

// RequireTokenThrottled is RequireToken with the wrong tokens counted per
// client by th (nil: not counted): a client that sent too many gets 429
// with Retry-After, its token not even compared.
func RequireTokenThrottled(token secret.Value, th *websession.Throttle, next http.Handler) http.Handler {
	tokenHash := sha256.Sum256([]byte(token.Reveal()))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if token.IsZero() {
			writeError(w, http.StatusNotFound, "admin_disabled", "the admin API is off: set http.admin_token in the configuration")
			return
		}
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		compare := func() bool {
			sum := sha256.Sum256([]byte(got))
			return subtle.ConstantTimeCompare(sum[:], tokenHash[:]) == 1
		}
		var err error
		switch {
		case !ok:
			err = websession.ErrWrongToken // no token tried: nothing to count
		case th != nil:
			err = th.Check(r, compare)
		case !compare():
			err = websession.ErrWrongToken
		}
		if th, ok := errors.AsType[*websession.ThrottledError](err); ok {
			secs := int((th.RetryAfter + time.Second - 1) / time.Second)
			w.Header().Set("Retry-After", strconv.Itoa(secs))
			writeError(w, http.StatusTooManyRequests, "throttled", fmt.Sprintf("too many wrong tokens from your address; try again in %ds", secs))
			return
		}
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="tokenrelay admin"`)
			writeError(w, http.StatusUnauthorized, "unauthorized", "a valid admin bearer token is required")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, adminclient.Problem{Error: code, Message: msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// storeError answers a store failure without its internals.
func (a *api) storeError(w http.ResponseWriter, r *http.Request, err error) {
	var busy *store.BusyError
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", "no credential "+r.PathValue("id"))
	case errors.Is(err, store.ErrAlreadyRevoked):
		writeError(w, http.StatusConflict, "already_revoked", "the credential is revoked already")
	case errors.As(err, &busy):
		// Another worker holds the credential (a refresh or a key rotation
		// in flight): nothing was changed; it is free again soon.
		wait := max(time.Until(busy.Until), time.Second)
		w.Header().Set("Retry-After", strconv.Itoa(int((wait+time.Second-1)/time.Second)))
		writeError(w, http.StatusConflict, "busy", fmt.Sprintf(
			"another worker is refreshing or rotating this credential's key; nothing changed: try again in %s", wait.Round(time.Second)))
	default:
		a.d.Logger.Error().Err(err).Str("path", r.URL.Path).Msg("admin: store failed")
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the credential store is unavailable; try again")
	}
}
