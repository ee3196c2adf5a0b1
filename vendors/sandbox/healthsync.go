package sandbox

// HealthSync, under HealthSyncPath (/healthsync/v1/), so a HealthSync base
// URL is server URL + HealthSyncPath. Every API request carries
// "Authorization: Bearer <API key or access token>".
//
// Accounts, plans and keys:
//
//   - An account is a HealthSync organisation. Its plan allows a number of
//     API requests per fixed clock hour (Plus 100 by default,
//     SetHealthSyncPlan; Options.HealthSyncRateWindow compresses the
//     hour); every authenticated API request of the account counts,
//     whatever key or token it carries, key management included (the
//     OAuth token endpoint does not). Answers carry X-RateLimit-Limit,
//     X-RateLimit-Remaining and X-RateLimit-Reset (unix seconds of the end
//     of the hour); past the limit, 429 with Retry-After (seconds to the
//     reset). The sandbox clock drives the windows.
//   - API keys (AddHealthSyncKey, or POST keys) carry scopes: "read",
//     "write", "delete" for every resource, or "<resource>:<action>" for one
//     ("records:read"). A key is shown once, when created.
//
// Endpoints (relative to HealthSyncPath):
//
//   - GET records and GET patients: the data reads, with ?limit=1..100
//     (default 20). Records are paged: a page with more after it says so
//     in has_more and in an RFC 8288 header Link: <URL>; rel="next" (the
//     URL carries the keyset cursor "after"); ?updated_since=<RFC 3339>
//     keeps the records changed after it (UpdateFHIRResources with type
//     "records"), and the Date header is the sandbox clock's. They need the scope "records:read" (or "patients:read")
//     or "read". An unknown, revoked or expired key or token gets 401
//     (counted as an unknown, revoked or expired use), a valid one without
//     the scope 403 insufficient_scope.
//   - Key management. HealthSync does not publish these endpoints; these are
//     the sandbox's, and the adapter keeps their paths configurable. They
//     are authenticated by a valid API key of the account (an OAuth or
//     service-account token gets 403) and count against the plan:
//     POST keys {"name","scopes"} → 201 {"id","key","name","scopes",
//     "created_at"} (scopes omitted: the authenticating key's; a key cannot
//     grant a scope it lacks: 403); GET keys → {"keys":[{"id","name",
//     "scopes","created_at","last_used_at","revoked","revoked_at"}]};
//     GET keys/current → the authenticating key, without its secret;
//     DELETE keys/{id} → 204, or 404 for a key that is unknown, of another
//     account or already revoked.
//   - POST oauth/token: RFC 6749, form-encoded, the client authenticated by
//     HTTP Basic or client_id/client_secret in the body (a public client
//     sends its client_id alone), against the shared client registry
//     (AddClient, DeleteClient). grant_type=refresh_token refreshes a user's
//     delegation (GrantHealthSync): the refresh token rotates by default
//     (SetHealthSyncRefreshRotation), and reusing a rotated one revokes the
//     whole grant (RFC 9700 section 4.14.2), as does the user withdrawing
//     consent (RevokeHealthSyncGrants); invalid_grant either way.
//     grant_type=client_credentials issues a service-account token
//     (AddHealthSyncServiceAccount; an unregistered client is a service
//     account of the account named after it, with scope "read"). Access
//     tokens live RealTokenLifetime, and say so in expires_in. Token calls,
//     issued tokens and expired uses are counted as for the other APIs.
//
// Faults: EndpointToken hits oauth/token, EndpointPatient every other
// endpoint (records, patients, keys); a fault's ClientID matches a key's id
// for requests made with that key, and the OAuth client for requests with
// its tokens.
//
// Not emulated: the real sandbox's daily data reset (the data here never
// changes), the OAuth authorization-code step (GrantHealthSync stands for a
// user's consent), and write endpoints.

import (
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// HealthSyncPath is the HealthSync base path: a HealthSync base URL is the
// server's URL followed by HealthSyncPath.
const HealthSyncPath = "/healthsync/v1/"

// DefaultHealthSyncPlanLimit is the hourly request limit of an account whose
// plan was not set: HealthSync's Plus plan.
const DefaultHealthSyncPlanLimit = 100

// HealthSyncRateWindow is the length of HealthSync's fixed rate windows,
// aligned on the clock's hours (Options.HealthSyncRateWindow may shorten
// it).
const HealthSyncRateWindow = time.Hour

const (
	apiHealthSync = "healthsync"
	// healthSyncUsedKept is how many rotated refresh tokens of a grant are
	// remembered for reuse detection; older ones are forgotten (a reuse of
	// one is then an unknown token), so memory stays bounded.
	healthSyncUsedKept = 8
	// healthSyncMaxLimit is the most a data read's ?limit may ask for.
	healthSyncMaxLimit = 100
)

// hsDefaultServiceScopes are the scopes of a service account that was not
// registered with AddHealthSyncServiceAccount.
var hsDefaultServiceScopes = []string{"read"}

// HealthSyncKey is what the sandbox knows of an API key, as tests see it:
// never the key itself.
type HealthSyncKey struct {
	ID      string
	Name    string
	Account string
	Scopes  []string
	Created time.Time
	// LastUsed is the last request authenticated by the key; zero if none.
	LastUsed time.Time
	// Uses counts the requests authenticated by the key (faulted and
	// rate-limited ones included), never reset.
	Uses      int
	Revoked   bool
	RevokedAt time.Time
}

// healthSyncSandbox emulates HealthSync (API keys, key management, OAuth,
// service accounts, hourly limits).
type healthSyncSandbox struct {
	s      *Sandbox
	limits *hsFixedWindow

	mu      sync.Mutex
	seq     int                      // key creation order
	keys    map[string]*hsKey        // by secret
	keyIDs  map[string]*hsKey        // by id
	grants  map[string]*hsGrant      // by refresh token
	service map[string]hsServiceAcct // by OAuth client id
	access  map[string]hsAccess      // access tokens, by token
	// accessOrder is the access tokens in issue order, accessOrder[accessHead:]
	// still in access, so that they are forgotten as the token store forgets.
	accessOrder []issuedToken
	accessHead  int
	noRotation  bool
}

type hsKey struct {
	HealthSyncKey
	seq    int
	secret string
}

// hsFamily is one user's delegation to one OAuth client: every refresh
// token it rotates through, and the access tokens they got.
type hsFamily struct {
	account, clientID string
	scopes            []string
	revoked           bool
	used              []string // rotated-out refresh tokens still remembered
}

type hsGrant struct {
	family *hsFamily
	used   bool
}

type hsServiceAcct struct {
	account string
	scopes  []string
}

type hsAccess struct {
	account string
	scopes  []string
	family  *hsFamily // nil for a service-account token
}

func newHealthSyncSandbox(s *Sandbox, window time.Duration) *healthSyncSandbox {
	return &healthSyncSandbox{
		s:       s,
		limits:  newHSFixedWindow(DefaultHealthSyncPlanLimit, window),
		keys:    make(map[string]*hsKey),
		keyIDs:  make(map[string]*hsKey),
		grants:  make(map[string]*hsGrant),
		service: make(map[string]hsServiceAcct),
		access:  make(map[string]hsAccess),
	}
}

// routes registers the emulator's endpoints.
func (v *healthSyncSandbox) routes(mux *http.ServeMux) {
	mux.HandleFunc("POST "+HealthSyncPath+"oauth/token", v.token)
	mux.HandleFunc("GET "+HealthSyncPath+"records", v.api("records:read", false, v.records))
	mux.HandleFunc("GET "+HealthSyncPath+"patients", v.api("patients:read", false, v.list(hsFakePatients)))
	mux.HandleFunc("POST "+HealthSyncPath+"keys", v.api("", true, v.createKey))
	mux.HandleFunc("GET "+HealthSyncPath+"keys", v.api("", true, v.listKeys))
	mux.HandleFunc("GET "+HealthSyncPath+"keys/current", v.api("", true, v.currentKey))
	mux.HandleFunc("DELETE "+HealthSyncPath+"keys/{id}", v.api("", true, v.revokeKey))
	v.controlRoutes(mux)
}

// AddHealthSyncKey creates an API key of account with scopes, as a user does
// in HealthSync's settings, and returns its id and the key.
func (s *Sandbox) AddHealthSyncKey(account string, scopes []string) (keyID, key string) {
	v := s.healthSync
	v.mu.Lock()
	k := v.newKey(account, "", scopes, s.clock())
	v.mu.Unlock()
	s.log.Info().Str("account", account).Str("key_id", k.ID).Str("key", fingerprint(k.secret)).Msg("healthsync key added")
	return k.ID, k.secret
}

// HealthSyncKeys lists account's API keys, revoked ones included, oldest
// first.
func (s *Sandbox) HealthSyncKeys(account string) []HealthSyncKey {
	v := s.healthSync
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []HealthSyncKey
	for _, k := range v.accountKeys(account) {
		out = append(out, k.info())
	}
	return out
}

// RevokeHealthSyncKey revokes a key, as a user does in HealthSync's
// settings: requests with it get 401 at once. It reports whether the key
// existed and was active.
func (s *Sandbox) RevokeHealthSyncKey(keyID string) bool {
	v := s.healthSync
	v.mu.Lock()
	ok := v.revoke(keyID, "", s.clock())
	v.mu.Unlock()
	s.log.Info().Str("key_id", keyID).Bool("revoked", ok).Msg("healthsync key revoked")
	return ok
}

// SetHealthSyncPlan sets account's hourly request limit (Premium: 1000); 0
// restores the default (Plus, 100), a negative limit means none. The
// current window's count is kept.
func (s *Sandbox) SetHealthSyncPlan(account string, limit int) {
	s.healthSync.limits.setLimit(account, limit)
	s.log.Info().Str("account", account).Int("limit", limit).Msg("healthsync plan set")
}

// AddHealthSyncServiceAccount registers (or changes) an OAuth client as a
// service account of account with scopes: client_credentials tokens act for
// the account. It calls AddClient.
func (s *Sandbox) AddHealthSyncServiceAccount(account, clientID, clientSecret string, scopes []string) {
	s.AddClient(clientID, clientSecret)
	v := s.healthSync
	v.mu.Lock()
	v.service[clientID] = hsServiceAcct{account: account, scopes: slices.Clone(scopes)}
	v.mu.Unlock()
}

// GrantHealthSync stands for a user of account consenting to the OAuth
// client clientID acting for them with scopes (the authorization-code step,
// not emulated): it returns the grant's first refresh token.
func (s *Sandbox) GrantHealthSync(account, clientID string, scopes []string) (refreshToken string) {
	v := s.healthSync
	v.mu.Lock()
	rt := v.newRefreshToken(&hsFamily{account: account, clientID: clientID, scopes: slices.Clone(scopes)})
	v.mu.Unlock()
	s.log.Info().Str("account", account).Str("client_id", clientID).Str("refresh_token", fingerprint(rt)).Msg("healthsync grant")
	return rt
}

// RevokeHealthSyncGrants stands for account's user withdrawing consent from
// clientID: the grants' refresh tokens get invalid_grant and their access
// tokens 401 at once. It returns how many grants were revoked.
func (s *Sandbox) RevokeHealthSyncGrants(account, clientID string) int {
	v := s.healthSync
	v.mu.Lock()
	n := 0
	seen := map[*hsFamily]bool{}
	for _, g := range v.grants {
		f := g.family
		if f.account == account && f.clientID == clientID && !f.revoked && !seen[f] {
			seen[f] = true
			f.revoked = true
			n++
		}
	}
	v.mu.Unlock()
	s.log.Info().Str("account", account).Str("client_id", clientID).Int("grants", n).Msg("healthsync grants revoked")
	return n
}

// SetHealthSyncRefreshRotation says whether a refresh hands out a new
// refresh token and retires the one used (the default), or keeps it.
func (s *Sandbox) SetHealthSyncRefreshRotation(rotate bool) {
	v := s.healthSync
	v.mu.Lock()
	v.noRotation = !rotate
	v.mu.Unlock()
}

// hsAuth is who an API request is.
type hsAuth struct {
	state   tokenState
	account string
	scopes  []string
	keyID   string // the API key's id; "" for an access token
	// faultID is what a fault's ClientID matches: the key's id or the
	// token's OAuth client.
	faultID string
}

// authenticate looks the request's bearer up, as an API key then as an
// access token, and counts a bad one.
func (v *healthSyncSandbox) authenticate(r *http.Request, now time.Time) hsAuth {
	tok, _ := bearer(r)
	v.mu.Lock()
	if k := v.keys[tok]; k != nil && tok != "" {
		if k.Revoked {
			v.mu.Unlock()
			v.s.mu.Lock()
			v.s.revokedUses++
			v.s.mu.Unlock()
			return hsAuth{state: tokenRevoked, faultID: k.ID}
		}
		k.Uses++
		k.LastUsed = now
		a := hsAuth{state: tokenValid, account: k.Account, scopes: k.Scopes, keyID: k.ID, faultID: k.ID}
		v.mu.Unlock()
		return a
	}
	v.mu.Unlock()

	clientID, state := v.s.checkToken(apiHealthSync, tok, now)
	if state != tokenValid {
		return hsAuth{state: state, faultID: clientID}
	}
	v.mu.Lock()
	acc, ok := v.access[tok]
	revoked := ok && acc.family != nil && acc.family.revoked
	v.mu.Unlock()
	if !ok || revoked {
		v.s.mu.Lock()
		if revoked {
			state = tokenRevoked
			v.s.revokedUses++
		} else {
			state = tokenUnknown
			v.s.unknownUses++
		}
		v.s.mu.Unlock()
		return hsAuth{state: state, faultID: clientID}
	}
	return hsAuth{state: tokenValid, account: acc.account, scopes: acc.scopes, faultID: clientID}
}

// api wraps an API endpoint: authentication, faults, the hourly plan limit,
// then the scope it needs ("" for none) and whether only an API key may
// call it.
func (v *healthSyncSandbox) api(scope string, keyOnly bool, serve func(http.ResponseWriter, *http.Request, hsAuth, time.Time)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		now := v.s.clock()
		a := v.authenticate(r, now)
		if a.state != tokenValid {
			v.s.log.Info().Str("api", apiHealthSync).Str("id", a.faultID).Str("token", fingerprint(bearerOf(r))).
				Stringer("state", a.state).Msg("request with a bad key or token")
		}
		if v.s.applyFault(w, r, EndpointPatient, a.faultID, writeHealthSyncError) {
			return
		}
		if a.state != tokenValid {
			desc := "the API key or access token is " + a.state.String()
			w.Header().Set("WWW-Authenticate", `Bearer realm="healthsync", error="invalid_token", error_description="`+desc+`"`)
			writeHealthSyncError(w, http.StatusUnauthorized, "invalid_token", desc)
			return
		}
		q, reset := v.limits.takeWithReset(a.account, now)
		if q.limit >= 0 {
			h := w.Header()
			h["X-RateLimit-Limit"] = []string{strconv.Itoa(q.limit)}
			h["X-RateLimit-Remaining"] = []string{strconv.Itoa(q.remaining)}
			h["X-RateLimit-Reset"] = []string{strconv.FormatInt(reset.Unix(), 10)}
		}
		if !q.allowed {
			w.Header()["Retry-After"] = []string{retryAfterSeconds(q.retryAfter)}
			writeHealthSyncError(w, http.StatusTooManyRequests, "rate_limited", "hourly request limit of the plan reached")
			return
		}
		switch {
		case keyOnly && a.keyID == "":
			writeHealthSyncError(w, http.StatusForbidden, "forbidden", "key management needs an API key")
		case scope != "" && !hsCovers(a.scopes, scope):
			writeHealthSyncError(w, http.StatusForbidden, "insufficient_scope", "the key or token lacks the scope "+scope)
		default:
			serve(w, r, a, now)
		}
	}
}

func bearerOf(r *http.Request) string {
	tok, _ := bearer(r)
	return tok
}

// list serves a data read: the first ?limit items.
func (v *healthSyncSandbox) list(items []map[string]any) func(http.ResponseWriter, *http.Request, hsAuth, time.Time) {
	return func(w http.ResponseWriter, r *http.Request, _ hsAuth, _ time.Time) {
		n := 20
		if s := r.URL.Query().Get("limit"); s != "" {
			var err error
			n, err = strconv.Atoi(s)
			if err != nil || n < 1 || n > healthSyncMaxLimit {
				writeHealthSyncError(w, http.StatusBadRequest, "invalid_request", "limit must be 1 to 100")
				return
			}
		}
		n = min(n, len(items))
		writeJSON(w, http.StatusOK, "application/json", map[string]any{"data": items[:n], "has_more": n < len(items)})
	}
}

// records serves GET records: the synthetic data of type "records" (the
// first three are hsFakeRecords), paged as the FHIR searches are, with a
// Link header to the next page.
func (v *healthSyncSandbox) records(w http.ResponseWriter, r *http.Request, _ hsAuth, now time.Time) {
	q := r.URL.Query()
	if l := q.Get("limit"); l != "" {
		q.Set("_count", l)
	}
	sr, problem := parseSearch(q, "records", "updated_since")
	if problem != "" {
		writeHealthSyncError(w, http.StatusBadRequest, "invalid_request", strings.ReplaceAll(problem, "_count", "limit"))
		return
	}
	if a := q.Get("after"); a != "" {
		n, err := strconv.Atoi(a)
		if err != nil || n < -1 {
			writeHealthSyncError(w, http.StatusBadRequest, "invalid_request", "after must be a cursor from a Link header")
			return
		}
		sr.after = n
	}
	idx, metas, more, _ := v.s.reads.run(sr)
	data := make([]map[string]any, 0, len(idx))
	for k, i := range idx {
		rec := map[string]any{"id": "rec_" + strconv.Itoa(1001+i), "patient_id": "pat_1001", "type": "visit_note",
			"created_at": "2025-01-06T09:30:00Z"}
		if i < len(hsFakeRecords) {
			maps.Copy(rec, hsFakeRecords[i])
		}
		rec["version"], rec["updated_at"] = metas[k].version, metas[k].at.UTC().Format(fhirInstant)
		data = append(data, rec)
	}
	w.Header().Set("Date", now.UTC().Format(http.TimeFormat))
	if more {
		next := url.Values{}
		for k, vals := range r.URL.Query() {
			if k != "after" {
				next[k] = vals
			}
		}
		next.Set("limit", strconv.Itoa(sr.count))
		next.Set("after", strconv.Itoa(idx[len(idx)-1]))
		w.Header().Set("Link", "<"+baseURL(r, HealthSyncPath)+"records?"+next.Encode()+`>; rel="next"`)
	}
	writeJSON(w, http.StatusOK, "application/json", map[string]any{"data": data, "has_more": more})
}

// hsKeyJSON is a key in the key-management answers.
type hsKeyJSON struct {
	ID         string     `json:"id"`
	Key        string     `json:"key,omitempty"`
	Name       string     `json:"name"`
	Scopes     []string   `json:"scopes"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
	Revoked    bool       `json:"revoked"`
	RevokedAt  *time.Time `json:"revoked_at,omitempty"`
}

// hsResourceRE is a resource name in a scope.
var hsResourceRE = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// hsValidScope reports whether s is "read", "write", "delete" or
// "<resource>:<one of those>".
func hsValidScope(s string) bool {
	action := s
	if res, act, ok := strings.Cut(s, ":"); ok {
		if !hsResourceRE.MatchString(res) {
			return false
		}
		action = act
	}
	return action == "read" || action == "write" || action == "delete"
}

// hsCovers reports whether the scopes have grant want: want itself, or its
// action for every resource ("read" covers "records:read").
func hsCovers(have []string, want string) bool {
	_, action, scoped := strings.Cut(want, ":")
	for _, h := range have {
		if h == want || scoped && h == action {
			return true
		}
	}
	return false
}

// writeHealthSyncError writes HealthSync's error answer.
func writeHealthSyncError(w http.ResponseWriter, status int, code, message string) {
	writeJSON(w, status, "application/json", map[string]string{"error": code, "message": message})
}

// hsFakeRecords and hsFakePatients are what the data reads return.
var (
	hsFakeRecords = []map[string]any{
		{"id": "rec_1001", "patient_id": "pat_1001", "type": "visit_note", "created_at": "2025-01-06T09:30:00Z"},
		{"id": "rec_1002", "patient_id": "pat_1002", "type": "lab_result", "created_at": "2025-01-07T14:05:00Z"},
		{"id": "rec_1003", "patient_id": "pat_1001", "type": "document", "created_at": "2025-02-11T11:45:00Z"},
	}
	hsFakePatients = []map[string]any{
		{"id": "pat_1001", "first_name": "Jane", "last_name": "Citizen", "birth_date": "1984-07-12"},
		{"id": "pat_1002", "first_name": "Minh", "last_name": "Nguyen", "birth_date": "1991-02-03"},
	}
)
