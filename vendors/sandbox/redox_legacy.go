package sandbox

import (
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"
)

// The Redox API for legacy API keys, as the sandbox emulates it, under
// RedoxLegacyPath (a redox-legacy base URL is the server's URL followed by
// RedoxLegacyPath):
//
//   - POST auth/authenticate, JSON {"apiKey","secret"}: the key is a client
//     of the shared registry (AddClient(apiKey, secret)). A wrong secret or
//     an unknown or deleted key gets 401. Success answers {"accessToken",
//     "expires":"<ISO 8601 UTC time, milliseconds>","refreshToken"}: the
//     access token lives RedoxLegacyTokenLifetime (24 h; not the sandbox's
//     RealTokenLifetime, which is Halaxy's 15 minutes), and the refresh token
//     starts a new chain. Other chains of the key are left alone.
//   - POST auth/refreshToken, JSON {"apiKey","refreshToken"}: the same
//     answer. The refresh token is consumed and the answer carries the next
//     one of its chain (rotation on every use: the documented "rotate daily"
//     is the pace of a client that refreshes daily; rotating on every use is
//     the strictest reading, and what a client must survive). 401 for a
//     refresh token that is unknown (or another key's, or forgotten: only
//     the 1,000 most recent of a key are remembered), already consumed,
//     revoked, of a deleted key, or idle for RedoxLegacyRefreshIdleLimit
//     (7 days) since it was issued. The secret is not checked: a changed
//     secret does not stop a chain, a deleted key does.
//   - Reuse detection, as OAuth servers do with rotating refresh tokens (RFC
//     9700 section 4.14.2): presenting a consumed refresh token revokes its
//     chain, so the chain's current refresh token stops working too (someone
//     holds a copy of the chain, and the server cannot tell who is the
//     rightful holder). Access tokens already issued stay valid until they
//     expire, and authenticate still works: the key is not revoked.
//   - POST endpoint: the Data Model API. It needs a valid bearer token (an
//     expired, unknown, missing or revoked one gets 401 and is counted as on
//     the other APIs) and a JSON body whose Meta has DataModel, EventType and
//     Destinations with an ID each (else 400). It answers 200 with the Meta
//     echoed, a message id and a log id. Meta.Source.ID is not checked: a
//     sandbox key is its own source (sources and legacy keys are 1:1).
//
// Both token endpoints count as token calls of the API key (TokenCalls,
// TokenCallTimes) and take EndpointToken faults; the access tokens are in
// IssuedTokens, the refresh tokens in RedoxLegacyRefreshTokens. The data
// endpoint takes EndpointPatient faults. Reset does not zero
// RedoxLegacyStats.
//
// The Redox docs say an exposed API key must be treated like an exposed
// secret, so the sandbox logs the key's fingerprint, never the key.
//
// Control endpoints (besides the shared ones, which count these calls too):
//
//	GET /_sandbox/redox-legacy/settings             {"token_lifetime","refresh_idle_limit"}
//	PUT /_sandbox/redox-legacy/settings             the same, fields optional       204
//	GET /_sandbox/redox-legacy/clients/{id}/stats   RedoxLegacyStats as JSON

// RedoxLegacyPath is the base path of the emulated Redox API for legacy API
// keys: its token endpoints are RedoxLegacyPath + "auth/authenticate" and
// RedoxLegacyPath + "auth/refreshToken", its data endpoint RedoxLegacyPath +
// "endpoint".
const RedoxLegacyPath = "/redox-legacy/"

// Defaults of the Redox legacy settings, as Redox documents them.
const (
	// DefaultRedoxLegacyTokenLifetime is how long an access token lives.
	DefaultRedoxLegacyTokenLifetime = 24 * time.Hour
	// DefaultRedoxLegacyRefreshIdleLimit is how long a refresh token stays
	// usable after it was issued, if it is not used.
	DefaultRedoxLegacyRefreshIdleLimit = 7 * 24 * time.Hour
)

const apiRedoxLegacy = "redox-legacy"

// redoxLegacyMaxRefreshTokens is how many refresh tokens are remembered per
// API key, so that a benchmark authenticating thousands of times stays in
// bounded memory. A forgotten one is refused as unknown.
const redoxLegacyMaxRefreshTokens = 1000

// RedoxLegacyRefreshState is what a refresh token of the Redox legacy API is.
type RedoxLegacyRefreshState string

// Refresh token states.
const (
	// RedoxLegacyRefreshActive: usable, once.
	RedoxLegacyRefreshActive RedoxLegacyRefreshState = "active"
	// RedoxLegacyRefreshConsumed: used; presenting it again revokes its chain.
	RedoxLegacyRefreshConsumed RedoxLegacyRefreshState = "consumed"
	// RedoxLegacyRefreshRevoked: its chain was revoked (a consumed token of
	// the chain was presented again) or its key was deleted.
	RedoxLegacyRefreshRevoked RedoxLegacyRefreshState = "revoked"
	// RedoxLegacyRefreshExpired: not used within the idle limit.
	RedoxLegacyRefreshExpired RedoxLegacyRefreshState = "expired"
)

// RedoxLegacyRefreshToken is what the sandbox knows of a refresh token it
// issued.
type RedoxLegacyRefreshToken struct {
	Token string
	// Chain numbers the chains of one API key, from 1: each successful
	// authenticate starts one, each refresh continues its chain.
	Chain int
	// IssuedAt is when it was issued (sandbox clock); ExpiresAt is IssuedAt
	// plus the refresh idle limit of that time.
	IssuedAt, ExpiresAt time.Time
	// State is its state now (sandbox clock).
	State RedoxLegacyRefreshState
}

// RedoxLegacyStats counts the Redox legacy token requests of one API key.
type RedoxLegacyStats struct {
	// Authenticate is how many auth/authenticate requests came, whatever
	// their outcome (faults included).
	Authenticate int `json:"authenticate"`
	// Refresh is how many auth/refreshToken requests came, whatever their
	// outcome (faults included).
	Refresh int `json:"refresh"`
	// RefreshRefused is how many refresh requests got 401 for their refresh
	// token (unknown, consumed, revoked, expired, or a deleted key).
	RefreshRefused int `json:"refresh_refused"`
	// Reuses is how many of those presented a consumed refresh token (and
	// so revoked its chain).
	Reuses int `json:"reuses"`
	// Chains is how many chains successful authentications started.
	Chains int `json:"chains"`
}

// redoxLegacySandbox emulates Redox legacy API keys (rotating refresh
// tokens). Its fields are guarded by the Sandbox's mutex, so that a refresh
// checks the key and rotates the token in one step.
type redoxLegacySandbox struct {
	s *Sandbox

	lifetime  time.Duration
	idleLimit time.Duration
	refresh   map[string]*redoxLegacyRefresh
	keys      map[string]*redoxLegacyKey
}

// redoxLegacyRefresh is a refresh token the sandbox issued.
type redoxLegacyRefresh struct {
	apiKey   string
	gen      uint64 // the key's generation when issued
	chain    *redoxLegacyChain
	issued   time.Time
	expires  time.Time
	consumed bool
}

type redoxLegacyChain struct {
	n       int
	revoked bool
}

// redoxLegacyKey is what the sandbox keeps per API key.
type redoxLegacyKey struct {
	tokens []string // remembered refresh tokens, oldest first
	stats  RedoxLegacyStats
}

func newRedoxLegacySandbox(s *Sandbox) *redoxLegacySandbox {
	return &redoxLegacySandbox{
		s:         s,
		lifetime:  DefaultRedoxLegacyTokenLifetime,
		idleLimit: DefaultRedoxLegacyRefreshIdleLimit,
		refresh:   make(map[string]*redoxLegacyRefresh),
		keys:      make(map[string]*redoxLegacyKey),
	}
}

// routes registers the emulator's endpoints.
func (v *redoxLegacySandbox) routes(mux *http.ServeMux) {
	mux.HandleFunc("POST "+RedoxLegacyPath+"auth/authenticate", v.authenticate)
	mux.HandleFunc("POST "+RedoxLegacyPath+"auth/refreshToken", v.refreshToken)
	mux.HandleFunc("POST "+RedoxLegacyPath+"endpoint", v.endpoint)

	mux.HandleFunc("GET "+ControlPath+"redox-legacy/settings", func(w http.ResponseWriter, r *http.Request) {
		lifetime, idle := v.s.RedoxLegacySettings()
		writeJSON(w, http.StatusOK, "application/json", redoxLegacySettingsJSON{
			TokenLifetime: lifetime.String(), RefreshIdleLimit: idle.String(),
		})
	})
	mux.HandleFunc("PUT "+ControlPath+"redox-legacy/settings", func(w http.ResponseWriter, r *http.Request) {
		var in redoxLegacySettingsJSON
		if !decode(w, r, &in) {
			return
		}
		lifetime, err := optionalDuration("token_lifetime", in.TokenLifetime)
		if err != nil {
			controlError(w, http.StatusBadRequest, err.Error())
			return
		}
		idle, err := optionalDuration("refresh_idle_limit", in.RefreshIdleLimit)
		if err != nil {
			controlError(w, http.StatusBadRequest, err.Error())
			return
		}
		if in.TokenLifetime != "" {
			v.s.SetRedoxLegacyTokenLifetime(lifetime)
		}
		if in.RefreshIdleLimit != "" {
			v.s.SetRedoxLegacyRefreshIdleLimit(idle)
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET "+ControlPath+"redox-legacy/clients/{id}/stats", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, "application/json", v.s.RedoxLegacyStats(r.PathValue("id")))
	})
}

type redoxLegacySettingsJSON struct {
	TokenLifetime    string `json:"token_lifetime,omitempty"`
	RefreshIdleLimit string `json:"refresh_idle_limit,omitempty"`
}

// SetRedoxLegacyTokenLifetime changes how long Redox legacy access tokens
// issued from now on live (default 24 h), so that tests can compress time;
// a non-positive d restores the default.
func (s *Sandbox) SetRedoxLegacyTokenLifetime(d time.Duration) {
	if d <= 0 {
		d = DefaultRedoxLegacyTokenLifetime
	}
	s.mu.Lock()
	s.redoxLegacy.lifetime = d
	s.mu.Unlock()
	s.log.Info().Dur("redox_legacy_token_lifetime", d).Msg("setting changed")
}

// SetRedoxLegacyRefreshIdleLimit changes how long Redox legacy refresh
// tokens issued from now on stay usable unused (default 7 days); a
// non-positive d restores the default.
func (s *Sandbox) SetRedoxLegacyRefreshIdleLimit(d time.Duration) {
	if d <= 0 {
		d = DefaultRedoxLegacyRefreshIdleLimit
	}
	s.mu.Lock()
	s.redoxLegacy.idleLimit = d
	s.mu.Unlock()
	s.log.Info().Dur("redox_legacy_refresh_idle_limit", d).Msg("setting changed")
}

// RedoxLegacySettings returns the Redox legacy access token lifetime and
// refresh token idle limit.
func (s *Sandbox) RedoxLegacySettings() (tokenLifetime, refreshIdleLimit time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.redoxLegacy.lifetime, s.redoxLegacy.idleLimit
}

// RedoxLegacyRefreshTokens lists the refresh tokens issued to apiKey that
// the sandbox remembers (the 1,000 most recent), oldest first, with their
// state now.
func (s *Sandbox) RedoxLegacyRefreshTokens(apiKey string) []RedoxLegacyRefreshToken {
	now := s.clock()
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.redoxLegacy
	k := v.keys[apiKey]
	if k == nil {
		return nil
	}
	out := make([]RedoxLegacyRefreshToken, 0, len(k.tokens))
	for _, tok := range k.tokens {
		rt := v.refresh[tok]
		out = append(out, RedoxLegacyRefreshToken{Token: tok, Chain: rt.chain.n, IssuedAt: rt.issued,
			ExpiresAt: rt.expires, State: v.state(rt, now)})
	}
	return out
}

// RedoxLegacyStats returns the Redox legacy counters of apiKey.
func (s *Sandbox) RedoxLegacyStats(apiKey string) RedoxLegacyStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	if k := s.redoxLegacy.keys[apiKey]; k != nil {
		return k.stats
	}
	return RedoxLegacyStats{}
}

// key returns apiKey's record, creating it. Call with s.mu held.
func (v *redoxLegacySandbox) key(apiKey string) *redoxLegacyKey {
	k := v.keys[apiKey]
	if k == nil {
		k = &redoxLegacyKey{}
		v.keys[apiKey] = k
	}
	return k
}

// count runs fn on apiKey's counters.
func (v *redoxLegacySandbox) count(apiKey string, fn func(*RedoxLegacyStats)) {
	v.s.mu.Lock()
	fn(&v.key(apiKey).stats)
	v.s.mu.Unlock()
}

// state is what rt is at now. Call with s.mu held.
func (v *redoxLegacySandbox) state(rt *redoxLegacyRefresh, now time.Time) RedoxLegacyRefreshState {
	switch {
	case rt.consumed:
		return RedoxLegacyRefreshConsumed
	case rt.chain.revoked || v.s.clients[rt.apiKey].gen != rt.gen:
		return RedoxLegacyRefreshRevoked
	case !now.Before(rt.expires):
		return RedoxLegacyRefreshExpired
	}
	return RedoxLegacyRefreshActive
}

// redoxLegacyGrant is a token answer.
type redoxLegacyGrant struct {
	AccessToken  string `json:"accessToken"`
	Expires      string `json:"expires"`
	RefreshToken string `json:"refreshToken"`
}

// grant issues an access token and the next refresh token of chain. Call
// with s.mu held.
func (v *redoxLegacySandbox) grant(apiKey string, gen uint64, chain *redoxLegacyChain, now time.Time) redoxLegacyGrant {
	// The key is registered: authenticate checked it, and a refresh token
	// of a deleted key is refused as revoked.
	access, _ := v.s.issueTo(apiRedoxLegacy, apiKey, v.lifetime, now)
	expires := now.Add(v.lifetime)
	refresh := newToken()
	k := v.key(apiKey)
	v.refresh[refresh] = &redoxLegacyRefresh{apiKey: apiKey, gen: gen, chain: chain, issued: now,
		expires: now.Add(v.idleLimit)}
	k.tokens = append(k.tokens, refresh)
	if len(k.tokens) > redoxLegacyMaxRefreshTokens {
		delete(v.refresh, k.tokens[0])
		k.tokens = k.tokens[1:]
	}
	return redoxLegacyGrant{
		AccessToken:  access,
		Expires:      expires.UTC().Format("2006-01-02T15:04:05.000Z"),
		RefreshToken: refresh,
	}
}

// redoxLegacyTokenRequest is the body of both token endpoints: apiKey and
// secret to authenticate, apiKey and refreshToken to refresh.
type redoxLegacyTokenRequest struct {
	APIKey       string `json:"apiKey"`
	Secret       string `json:"secret"`
	RefreshToken string `json:"refreshToken"`
}

// readTokenRequest reads a token request, counts it, and applies the token
// faults; it answers 415 or 400 when the body is not JSON or lacks the
// apiKey or the secret (authenticate) or refreshToken (refresh). It reports
// whether to go on.
func (v *redoxLegacySandbox) readTokenRequest(w http.ResponseWriter, r *http.Request, refresh bool) (redoxLegacyTokenRequest, bool) {
	s := v.s
	var req redoxLegacyTokenRequest
	body, readErr := io.ReadAll(http.MaxBytesReader(w, r.Body, maxTokenBody))
	jsonErr := json.Unmarshal(body, &req)
	s.countTokenCall(req.APIKey, s.clock())
	v.count(req.APIKey, func(st *RedoxLegacyStats) {
		if refresh {
			st.Refresh++
		} else {
			st.Authenticate++
		}
	})
	if s.applyFault(w, r, EndpointToken, req.APIKey, writeRedoxLegacyError) {
		return req, false
	}
	field, value := "secret", req.Secret
	if refresh {
		field, value = "refreshToken", req.RefreshToken
	}
	switch media, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); {
	case media != "application/json":
		writeRedoxLegacyError(w, http.StatusUnsupportedMediaType, "invalid_request", "Content-Type must be application/json")
	case readErr != nil || jsonErr != nil:
		writeRedoxLegacyError(w, http.StatusBadRequest, "invalid_request", "the body must be a JSON object")
	case req.APIKey == "" || value == "":
		writeRedoxLegacyError(w, http.StatusBadRequest, "invalid_request", "apiKey and "+field+" are required")
	default:
		return req, true
	}
	return req, false
}

// authenticate is POST /redox-legacy/auth/authenticate.
func (v *redoxLegacySandbox) authenticate(w http.ResponseWriter, r *http.Request) {
	s := v.s
	req, ok := v.readTokenRequest(w, r, false)
	if !ok {
		return
	}
	now := s.clock()
	s.mu.Lock()
	if !s.secretOK(req.APIKey, req.Secret) {
		s.mu.Unlock()
		s.log.Debug().Str("api", apiRedoxLegacy).Str("api_key", fingerprint(req.APIKey)).Msg("authentication refused")
		writeRedoxLegacyError(w, http.StatusUnauthorized, "invalid_client", "Invalid API key or secret")
		return
	}
	k := v.key(req.APIKey)
	k.stats.Chains++
	g := v.grant(req.APIKey, s.clients[req.APIKey].gen, &redoxLegacyChain{n: k.stats.Chains}, now)
	s.mu.Unlock()
	s.log.Debug().Str("api", apiRedoxLegacy).Str("api_key", fingerprint(req.APIKey)).
		Str("token", fingerprint(g.AccessToken)).Str("refresh_token", fingerprint(g.RefreshToken)).
		Str("expires", g.Expires).Msg("authenticated")
	writeJSON(w, http.StatusOK, "application/json", g)
}

// refreshToken is POST /redox-legacy/auth/refreshToken.
func (v *redoxLegacySandbox) refreshToken(w http.ResponseWriter, r *http.Request) {
	s := v.s
	req, ok := v.readTokenRequest(w, r, true)
	if !ok {
		return
	}
	now := s.clock()
	s.mu.Lock()
	g, refusal := v.rotate(req.APIKey, req.RefreshToken, now)
	if refusal != "" {
		st := &v.key(req.APIKey).stats
		st.RefreshRefused++
		if refusal == refusedReused {
			st.Reuses++
		}
	}
	s.mu.Unlock()
	log := s.log.Debug().Str("api", apiRedoxLegacy).Str("api_key", fingerprint(req.APIKey)).
		Str("refresh_token", fingerprint(req.RefreshToken))
	if refusal != "" {
		log.Str("reason", refusal).Msg("refresh refused")
		writeRedoxLegacyError(w, http.StatusUnauthorized, "invalid_grant", "Invalid refresh token: "+refusal)
		return
	}
	log.Str("token", fingerprint(g.AccessToken)).Str("new_refresh_token", fingerprint(g.RefreshToken)).
		Str("expires", g.Expires).Msg("refreshed")
	writeJSON(w, http.StatusOK, "application/json", g)
}

// Why a refresh token is refused, as the refusal says.
const (
	refusedUnknown = "unknown"
	refusedReused  = "already used; its chain is revoked"
	refusedRevoked = "revoked"
	refusedExpired = "expired after inactivity"
)

// rotate consumes a refresh token and grants the next of its chain, or says
// why it cannot. Call with s.mu held.
func (v *redoxLegacySandbox) rotate(apiKey, refresh string, now time.Time) (redoxLegacyGrant, string) {
	rt, ok := v.refresh[refresh]
	if !ok || rt.apiKey != apiKey {
		return redoxLegacyGrant{}, refusedUnknown
	}
	switch v.state(rt, now) {
	case RedoxLegacyRefreshConsumed:
		rt.chain.revoked = true
		return redoxLegacyGrant{}, refusedReused
	case RedoxLegacyRefreshRevoked:
		return redoxLegacyGrant{}, refusedRevoked
	case RedoxLegacyRefreshExpired:
		return redoxLegacyGrant{}, refusedExpired
	}
	rt.consumed = true
	return v.grant(apiKey, rt.gen, rt.chain, now), ""
}

// redoxLegacyMeta is the part of a Data Model API request the sandbox checks.
type redoxLegacyMeta struct {
	DataModel    string `json:"DataModel"`
	EventType    string `json:"EventType"`
	Destinations []struct {
		ID   string `json:"ID"`
		Name string `json:"Name,omitempty"`
	} `json:"Destinations"`
}

// endpoint is POST /redox-legacy/endpoint, the Data Model API.
func (v *redoxLegacySandbox) endpoint(w http.ResponseWriter, r *http.Request) {
	s := v.s
	now := s.clock()
	tok, _ := bearer(r)
	apiKey, state := s.checkToken(apiRedoxLegacy, tok, now)
	if state != tokenValid {
		s.log.Info().Str("api", apiRedoxLegacy).Str("api_key", fingerprint(apiKey)).Str("token", fingerprint(tok)).
			Stringer("state", state).Msg("request with a bad token")
	}
	if s.applyFault(w, r, EndpointPatient, apiKey, writeRedoxLegacyError) {
		return
	}
	if state != tokenValid {
		w.Header().Set("WWW-Authenticate", `Bearer realm="sandbox", error="invalid_token"`)
		writeRedoxLegacyError(w, http.StatusUnauthorized, "invalid_token", "the access token is "+state.String())
		return
	}
	var req struct {
		Meta *redoxLegacyMeta `json:"Meta"`
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil || json.Unmarshal(body, &req) != nil {
		writeRedoxLegacyError(w, http.StatusBadRequest, "invalid_request", "the body must be a JSON object")
		return
	}
	if missing := req.Meta.missing(); len(missing) > 0 {
		writeRedoxLegacyError(w, http.StatusBadRequest, "invalid_request", "missing "+strings.Join(missing, ", "))
		return
	}
	writeJSON(w, http.StatusOK, "application/json", map[string]any{
		"Meta": map[string]any{
			"DataModel":     req.Meta.DataModel,
			"EventType":     req.Meta.EventType,
			"EventDateTime": now.UTC().Format("2006-01-02T15:04:05.000Z"),
			"Test":          true,
			"Destinations":  req.Meta.Destinations,
			"Message":       map[string]string{"ID": newToken()[:16]},
			"Logs":          []map[string]string{{"ID": newToken()[:16], "AttemptID": newToken()[:16]}},
			"Errors":        []any{},
		},
	})
}

// missing lists the required Meta fields m lacks.
func (m *redoxLegacyMeta) missing() []string {
	if m == nil {
		return []string{"Meta"}
	}
	var out []string
	if m.DataModel == "" {
		out = append(out, "Meta.DataModel")
	}
	if m.EventType == "" {
		out = append(out, "Meta.EventType")
	}
	if len(m.Destinations) == 0 {
		out = append(out, "Meta.Destinations")
	}
	for _, d := range m.Destinations {
		if d.ID == "" {
			out = append(out, "Meta.Destinations[].ID")
			break
		}
	}
	return out
}

// writeRedoxLegacyError writes an error answer in the shape of the Data
// Model API's errors (Meta.Errors). Redox does not document the body of its
// token endpoints' errors; only the status matters to a client.
func writeRedoxLegacyError(w http.ResponseWriter, status int, code, description string) {
	if status == http.StatusUnauthorized && w.Header().Get("WWW-Authenticate") == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="sandbox"`)
	}
	writeJSON(w, status, "application/json", map[string]any{
		"Meta": map[string]any{
			"Errors": []map[string]string{{"Text": description, "Type": code}},
		},
	})
}
