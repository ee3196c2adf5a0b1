package sandbox

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/tokenrelay/tokenrelay/internal/web/httpserver"
	"github.com/tokenrelay/tokenrelay/secret"
)

// Where each emulated API lives in the sandbox's URL space.
const (
	// HalaxyPath is the Halaxy base path: a Halaxy base URL is the server's
	// URL followed by HalaxyPath.
	HalaxyPath = "/halaxy/main/"
	// OAuth2Path is the generic OAuth 2.0 server's base path; its token
	// endpoint is OAuth2Path + "token".
	OAuth2Path = "/oauth2/"
	// ControlPath holds the control endpoints (see the package doc).
	ControlPath = "/_sandbox/"
)

// Defaults of Options.
const (
	DefaultRealTokenLifetime = 15 * time.Minute
	DefaultClaimedExpiresIn  = 3600 * time.Second
	DefaultHalaxyRateLimit   = 500
	DefaultHalaxyRateWindow  = time.Minute
)

// maxHistory bounds the per-client lists (TokenCallTimes, IssuedTokens):
// only the most recent are kept, so a long benchmark stays in bounded memory.
const maxHistory = 10000

// purgeFactor: a token expired more than purgeFactor × RealTokenLifetime ago
// (× the lifetime of the API's tokens when that is longer, as Redox legacy
// tokens' 24 hours) is forgotten (a later use of it counts as unknown, not
// expired).
const purgeFactor = 10

// API names, as in token records and logs.
const (
	apiHalaxy = "halaxy"
	apiOAuth2 = "oauth2"
)

// Options configure a Sandbox.
type Options struct {
	// Clock is the sandbox's time: token expiry, rate windows, call times.
	// Default time.Now. Fault latency is real time, not this clock.
	Clock func() time.Time
	// RealTokenLifetime is how long issued tokens really work. Default 15m.
	RealTokenLifetime time.Duration
	// ClaimedExpiresIn is the expires_in Halaxy's token answer claims.
	// Default 3600 s.
	ClaimedExpiresIn time.Duration
	// HalaxyRateLimit is how many FHIR reads one OAuth client may make to
	// the Halaxy API in a sliding HalaxyRateWindow (per client:
	// SetHalaxyRateLimit). Default 500; negative means no limit.
	HalaxyRateLimit int
	// HalaxyRateWindow is the window of HalaxyRateLimit. Default 1m.
	HalaxyRateWindow time.Duration
	// HealthSyncRateWindow is the length of HealthSync's fixed plan
	// windows, aligned on the clock's multiples of it (a whole number of
	// seconds, as X-RateLimit-Reset counts). Default HealthSyncRateWindow
	// (an hour); shorter compresses time for tests and benchmarks.
	HealthSyncRateWindow time.Duration
	// Logger gets the sandbox's log lines (requests at debug level). Default:
	// no logging.
	Logger zerolog.Logger
}

// Sandbox is the emulator. Its methods are safe for concurrent use.
type Sandbox struct {
	clock   func() time.Time
	log     zerolog.Logger
	handler http.Handler
	halaxy  flavor
	oauth2  flavor

	// One emulator per further vendor kind, each in its own file.
	redox       *redoxSandbox
	redoxLegacy *redoxLegacySandbox
	healthSync  *healthSyncSandbox
	fhirPortal  *fhirPortalSandbox

	// rates records the rate windows' decisions (ratebook.go); reads is
	// the generic FHIR reads' data (fhir_read.go).
	rates *rateBook
	reads fhirReads

	mu           sync.Mutex
	realLifetime time.Duration
	claimed      time.Duration
	clients      map[string]client
	generation   uint64
	tokens       tokenStore
	faults       []*activeFault
	stats        map[string]*clientStats
	totalCalls   int
	expiredUses  int
	expiredLog   []ExpiredUse // the most recent expiredLogSize
	unknownUses  int
	revokedUses  int
}

// ExpiredUse is one request that came with an expired token: whose, when,
// and how long after the token's real expiry.
type ExpiredUse struct {
	ClientID string
	At       time.Time
	Late     time.Duration
}

// expiredLogSize is how many expired uses ExpiredUseLog keeps.
const expiredLogSize = 20

// client is a registered OAuth client. gen changes when a client is deleted
// and added again, so the tokens of the old one stay dead.
type client struct {
	secret string
	gen    uint64
}

type clientStats struct {
	calls       int
	callTimes   []time.Time
	expiredUses int
	issued      []string
}

// New makes a Sandbox with no clients; add them with AddClient.
func New(opts Options) *Sandbox {
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.RealTokenLifetime <= 0 {
		opts.RealTokenLifetime = DefaultRealTokenLifetime
	}
	if opts.ClaimedExpiresIn == 0 {
		opts.ClaimedExpiresIn = DefaultClaimedExpiresIn
	}
	if opts.HalaxyRateLimit == 0 {
		opts.HalaxyRateLimit = DefaultHalaxyRateLimit
	}
	if opts.HalaxyRateWindow <= 0 {
		opts.HalaxyRateWindow = DefaultHalaxyRateWindow
	}
	if opts.HealthSyncRateWindow <= 0 {
		opts.HealthSyncRateWindow = HealthSyncRateWindow
	}
	s := &Sandbox{
		clock:        opts.Clock,
		log:          opts.Logger.With().Str("component", "sandbox").Logger(),
		realLifetime: opts.RealTokenLifetime,
		claimed:      opts.ClaimedExpiresIn,
		clients:      make(map[string]client),
		tokens:       tokenStore{m: make(map[string]tokenInfo)},
		stats:        make(map[string]*clientStats),
		rates:        newRateBook(),
		reads:        fhirReads{count: DefaultFHIRResources, origin: opts.Clock()},
	}
	s.halaxy = flavor{api: apiHalaxy, base: HalaxyPath, fhirHeaders: true}
	s.halaxy.limiter = newSlidingWindow(opts.HalaxyRateLimit, opts.HalaxyRateWindow, s.rates)
	s.oauth2 = flavor{api: apiOAuth2, base: OAuth2Path}
	s.redox = newRedoxSandbox(s)
	s.redoxLegacy = newRedoxLegacySandbox(s)
	s.healthSync = newHealthSyncSandbox(s, opts.HealthSyncRateWindow)
	s.healthSync.limits.book = s.rates
	s.fhirPortal = newFHIRPortalSandbox(s)
	s.handler = s.routes()
	return s
}

func (s *Sandbox) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+HalaxyPath+"oauth/token", s.halaxyToken)
	mux.HandleFunc("GET "+HalaxyPath+"{type}", s.patient(s.halaxy))
	mux.HandleFunc("GET "+HalaxyPath+"{type}/{id}", s.patient(s.halaxy))
	mux.HandleFunc("POST "+OAuth2Path+"token", s.oauth2Token)
	mux.HandleFunc("GET "+OAuth2Path+"{type}", s.patient(s.oauth2))
	mux.HandleFunc("GET "+OAuth2Path+"{type}/{id}", s.patient(s.oauth2))
	s.redox.routes(mux)
	s.redoxLegacy.routes(mux)
	s.healthSync.routes(mux)
	s.fhirPortal.routes(mux)
	s.controlRoutes(mux)
	s.redox.controlRoutes(mux)
	s.rateControlRoutes(mux)
	s.webhookControlRoutes(mux)
	return mux
}

// Handler serves the emulated vendors and the control endpoints.
func (s *Sandbox) Handler() http.Handler { return s.handler }

// Serve listens on addr and serves until ctx is done, then shuts down.
func (s *Sandbox) Serve(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("sandbox: listen on %s: %w", addr, err)
	}
	return s.ServeListener(ctx, ln)
}

// ServeListener serves on ln until ctx is done, then shuts down. Requests
// in flight (a latency fault) are cancelled with ctx.
func (s *Sandbox) ServeListener(ctx context.Context, ln net.Listener) error {
	srv := httpserver.New(s.handler, httpserver.Timeouts{})
	srv.BaseContext = func(net.Listener) context.Context { return ctx }
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	s.log.Info().Str("addr", ln.Addr().String()).Msg("sandbox listening")
	select {
	case err := <-errc:
		return fmt.Errorf("sandbox: serve: %w", err)
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(shutdown)
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("sandbox: shut down: %w", err)
	}
	s.log.Info().Msg("sandbox stopped")
	return nil
}

// AddClient registers an OAuth client (Halaxy API key, patient-portal key)
// or changes the secret of an existing one, whose tokens stay valid.
func (s *Sandbox) AddClient(clientID, clientSecret string) {
	s.mu.Lock()
	c, ok := s.clients[clientID]
	if !ok {
		s.generation++
		c.gen = s.generation
	}
	c.secret = clientSecret
	s.clients[clientID] = c
	s.mu.Unlock()
	s.log.Info().Str("client_id", clientID).Bool("existed", ok).Msg("client added")
}

// DeleteClient removes a client, as deleting the key at the vendor does:
// its token requests get invalid_client and its tokens stop working at once.
func (s *Sandbox) DeleteClient(clientID string) {
	s.mu.Lock()
	_, ok := s.clients[clientID]
	delete(s.clients, clientID)
	s.mu.Unlock()
	s.log.Info().Str("client_id", clientID).Bool("existed", ok).Msg("client deleted")
}

// Clients lists the registered client ids, in no order.
func (s *Sandbox) Clients() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, 0, len(s.clients))
	for id := range s.clients {
		ids = append(ids, id)
	}
	return ids
}

// SetRealTokenLifetime changes how long tokens issued from now on really
// work; a non-positive d restores the default. Tokens already issued keep
// their expiry.
func (s *Sandbox) SetRealTokenLifetime(d time.Duration) {
	if d <= 0 {
		d = DefaultRealTokenLifetime
	}
	s.mu.Lock()
	s.realLifetime = d
	s.mu.Unlock()
	s.log.Info().Dur("real_token_lifetime", d).Msg("setting changed")
}

// SetClaimedExpiresIn changes the expires_in Halaxy's token answers claim.
// Any value is sent as is (rounded to seconds), zero and negative ones
// included, to emulate a broken vendor.
func (s *Sandbox) SetClaimedExpiresIn(d time.Duration) {
	s.mu.Lock()
	s.claimed = d
	s.mu.Unlock()
	s.log.Info().Dur("claimed_expires_in", d).Msg("setting changed")
}

// Settings returns the current real token lifetime and claimed expires_in.
func (s *Sandbox) Settings() (realTokenLifetime, claimedExpiresIn time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.realLifetime, s.claimed
}

// TokenCalls is how many token requests came for clientID (whatever their
// outcome, faults included; "" counts those without a client id).
func (s *Sandbox) TokenCalls(clientID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.stats[clientID]; st != nil {
		return st.calls
	}
	return 0
}

// TokenCallTimes is when (by the sandbox clock) token requests came for
// clientID, oldest first; only the most recent 10,000 are kept.
func (s *Sandbox) TokenCallTimes(clientID string) []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.stats[clientID]; st != nil {
		return tail(st.callTimes)
	}
	return nil
}

// TotalTokenCalls is how many token requests came, for every client.
func (s *Sandbox) TotalTokenCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.totalCalls
}

// ExpiredUses is how many requests came with an expired token.
func (s *Sandbox) ExpiredUses() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.expiredUses
}

// ExpiredUseLog is the most recent requests (up to 20) that came with an
// expired token, oldest first: a test that finds any says which and how
// late.
func (s *Sandbox) ExpiredUseLog() []ExpiredUse {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.expiredLog)
}

// ExpiredUsesBy is how many requests came with an expired token of clientID.
func (s *Sandbox) ExpiredUsesBy(clientID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.stats[clientID]; st != nil {
		return st.expiredUses
	}
	return 0
}

// UnknownUses is how many requests came with a token the API never issued
// (or forgot: expired more than 10 lifetimes ago), or with none.
func (s *Sandbox) UnknownUses() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.unknownUses
}

// RevokedUses is how many requests came with a token of a deleted client.
func (s *Sandbox) RevokedUses() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.revokedUses
}

// IssuedTokens lists the access tokens issued to clientID, oldest first
// (the most recent 10,000), so that tests can check none reached a log.
func (s *Sandbox) IssuedTokens(clientID string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.stats[clientID]; st != nil {
		return tail(st.issued)
	}
	return nil
}

// Reset zeroes the counters and empties the per-client lists and the rate
// records. Clients, tokens, faults and settings are kept.
func (s *Sandbox) Reset() {
	s.mu.Lock()
	s.stats = make(map[string]*clientStats)
	s.totalCalls, s.expiredUses, s.unknownUses, s.revokedUses = 0, 0, 0, 0
	s.mu.Unlock()
	s.ClearRateRecord()
}

// statsOf returns clientID's stats, creating them. Call with s.mu held.
func (s *Sandbox) statsOf(clientID string) *clientStats {
	st := s.stats[clientID]
	if st == nil {
		st = &clientStats{}
		s.stats[clientID] = st
	}
	return st
}

// countTokenCall records a token request of clientID.
func (s *Sandbox) countTokenCall(clientID string, now time.Time) {
	s.mu.Lock()
	s.totalCalls++
	st := s.statsOf(clientID)
	st.calls++
	st.callTimes = appendCapped(st.callTimes, now)
	s.mu.Unlock()
}

var errInvalidClient = errors.New("client authentication failed")

// issue checks a client's credentials and issues a token for api that
// lives the real token lifetime. It returns the token and how long it
// really lives.
func (s *Sandbox) issue(api, clientID, clientSecret string, now time.Time) (string, time.Duration, error) {
	return s.issueAtMost(api, clientID, clientSecret, 0, now)
}

// issueAtMost is issue of a token living at most limit (when positive).
func (s *Sandbox) issueAtMost(api, clientID, clientSecret string, limit time.Duration, now time.Time) (string, time.Duration, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.secretOK(clientID, clientSecret) {
		return "", 0, errInvalidClient
	}
	lifetime := s.realLifetime
	if limit > 0 {
		lifetime = min(lifetime, limit)
	}
	tok, err := s.issueTo(api, clientID, lifetime, now)
	return tok, lifetime, err
}

// secretOK checks a client's credentials against the registry. Call with
// s.mu held.
func (s *Sandbox) secretOK(clientID, clientSecret string) bool {
	c, ok := s.clients[clientID]
	return ok && clientID != "" && subtle.ConstantTimeCompare([]byte(c.secret), []byte(clientSecret)) == 1
}

// issueTo issues an access token of api to a registered client, living
// lifetime from now, and counts it in IssuedTokens. It checks no secret:
// the caller has authenticated the client its API's way. It fails with
// errInvalidClient only for a client not (or no longer) registered. Call
// with s.mu held.
func (s *Sandbox) issueTo(api, clientID string, lifetime time.Duration, now time.Time) (string, error) {
	c, ok := s.clients[clientID]
	if !ok {
		return "", errInvalidClient
	}
	tok := newToken()
	s.tokens.add(tok, tokenInfo{clientID: clientID, api: api, gen: c.gen, expires: now.Add(lifetime)})
	// Keep what expired less than purgeFactor lifetimes ago, by the longer of
	// this token's lifetime and the real one: issuing short-lived tokens of
	// one API must not forget those of the others early.
	s.tokens.purge(now, purgeFactor*max(lifetime, s.realLifetime))
	st := s.statsOf(clientID)
	st.issued = appendCapped(st.issued, tok)
	return tok, nil
}

// tokenState is what a bearer token presented to an API is.
type tokenState int

const (
	tokenValid tokenState = iota
	tokenMissing
	tokenUnknown
	tokenExpired
	tokenRevoked
)

func (t tokenState) String() string {
	return [...]string{"valid", "missing", "unknown", "expired", "revoked"}[t]
}

// checkToken looks a presented token up and counts a bad one.
func (s *Sandbox) checkToken(api, tok string, now time.Time) (clientID string, state tokenState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	info, ok := s.tokens.get(tok)
	switch {
	case tok == "":
		state = tokenMissing
	case !ok || info.api != api:
		state = tokenUnknown
	case s.clients[info.clientID].gen != info.gen:
		clientID, state = info.clientID, tokenRevoked
	case !now.Before(info.expires):
		clientID, state = info.clientID, tokenExpired
	default:
		return info.clientID, tokenValid
	}
	switch state {
	case tokenMissing, tokenUnknown:
		s.unknownUses++
	case tokenRevoked:
		s.revokedUses++
	case tokenExpired:
		s.expiredUses++
		s.expiredLog = append(s.expiredLog, ExpiredUse{ClientID: clientID, At: now, Late: now.Sub(info.expires)})
		if len(s.expiredLog) > expiredLogSize {
			s.expiredLog = s.expiredLog[1:]
		}
		s.statsOf(clientID).expiredUses++
	}
	return clientID, state
}

// newToken makes a random access token.
func newToken() string {
	var b [24]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// fingerprint is how logs name a token.
func fingerprint(tok string) string { return secret.New(tok).Fingerprint() }

func appendCapped[T any](s []T, v T) []T {
	s = append(s, v)
	if len(s) >= 2*maxHistory {
		s = append([]T(nil), s[len(s)-maxHistory:]...)
	}
	return s
}

func tail[T any](s []T) []T {
	if len(s) > maxHistory {
		s = s[len(s)-maxHistory:]
	}
	return append([]T(nil), s...)
}
