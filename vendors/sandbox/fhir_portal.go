package sandbox

import (
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// FHIRPortalPath is the patient-portal FHIR server's base path: a portal
// base URL is the server's URL followed by FHIRPortalPath. Under it:
//
//   - GET .well-known/smart-configuration: the SMART configuration, whose
//     token_endpoint is this server's FHIRPortalPath + "token" as the
//     request reached it (scheme and Host), with grant_types_supported,
//     token_endpoint_auth_methods_supported (client_secret_basic and
//     client_secret_post; see SetFHIRPortalAuthMethods), scopes_supported
//     and capabilities. Counted by FHIRPortalDiscoveryCalls, not by the
//     token counters.
//   - POST token: OAuth 2.0 client credentials as under OAuth2Path, against
//     the shared client registry: a patient's key and secret are a client id
//     and secret (AddClient), and the patient deleting them is DeleteClient,
//     after which the next token request gets 401 invalid_client and the
//     tokens stop working. Tokens live min(FHIRPortalMaxTokenLifetime,
//     RealTokenLifetime), and expires_in says so.
//   - GET Patient: as under OAuth2Path, with a token of this API only.
//
// Faults for EndpointToken and EndpointPatient apply as everywhere. The
// discovery endpoint is hit only by EndpointAll faults without a ClientID
// (discovery carries no client): Fault.Endpoint has no value naming it yet.
const FHIRPortalPath = "/fhir-portal/"

// FHIRPortalMaxTokenLifetime is the longest a portal token lives: SMART
// Backend Services advises access tokens of at most 300 seconds.
const FHIRPortalMaxTokenLifetime = 300 * time.Second

const apiFHIRPortal = "fhir-portal"

// The client authentication methods (RFC 7591 names) the portal can
// advertise in token_endpoint_auth_methods_supported and accept.
const (
	fhirPortalBasic = "client_secret_basic"
	fhirPortalPost  = "client_secret_post"
)

// endpointDiscovery is where a fault is looked up for the discovery
// endpoint. Inject refuses it (faults.go knows token, patient and all), so
// only EndpointAll faults reach discovery until Fault.Endpoint accepts it.
const endpointDiscovery Endpoint = "discovery"

// fhirPortalScopes is the portal's scopes_supported.
var fhirPortalScopes = []string{"patient/*.read", "patient/Patient.read", "system/*.read"}

// fhirPortalSandbox emulates patient-portal FHIR credentials (SMART discovery, client credentials).
type fhirPortalSandbox struct {
	s              *Sandbox
	fhir           flavor
	discoveryCalls atomic.Int64

	mu          sync.Mutex
	authMethods []string // advertised and accepted, never empty
}

func newFHIRPortalSandbox(s *Sandbox) *fhirPortalSandbox {
	return &fhirPortalSandbox{
		s:           s,
		fhir:        flavor{api: apiFHIRPortal, base: FHIRPortalPath},
		authMethods: defaultFHIRPortalAuthMethods(),
	}
}

func defaultFHIRPortalAuthMethods() []string {
	return []string{fhirPortalBasic, fhirPortalPost}
}

// routes registers the emulator's endpoints.
func (v *fhirPortalSandbox) routes(mux *http.ServeMux) {
	mux.HandleFunc("GET "+FHIRPortalPath+".well-known/smart-configuration", v.smartConfiguration)
	mux.HandleFunc("POST "+FHIRPortalPath+"token", v.token)
	mux.HandleFunc("GET "+FHIRPortalPath+"Patient", v.s.patient(v.fhir))
}

// SetFHIRPortalAuthMethods sets the client authentication methods the
// portal advertises and accepts: "client_secret_basic", "client_secret_post"
// or both; none restores the default (both). A
// token request authenticated another way is refused as a real server
// refuses it: 401 invalid_client.
func (s *Sandbox) SetFHIRPortalAuthMethods(methods ...string) error {
	for _, m := range methods {
		if m != fhirPortalBasic && m != fhirPortalPost {
			return fmt.Errorf("sandbox: unknown auth method %q (%s, %s)", m, fhirPortalBasic, fhirPortalPost)
		}
	}
	if len(methods) == 0 {
		methods = defaultFHIRPortalAuthMethods()
	}
	v := s.fhirPortal
	v.mu.Lock()
	v.authMethods = slices.Clone(methods)
	v.mu.Unlock()
	s.log.Info().Strs("auth_methods", methods).Msg("fhir-portal setting changed")
	return nil
}

// FHIRPortalDiscoveryCalls is how many requests the portal's
// .well-known/smart-configuration has had (faults included). Reset does not
// zero it.
func (s *Sandbox) FHIRPortalDiscoveryCalls() int { return int(s.fhirPortal.discoveryCalls.Load()) }

func (v *fhirPortalSandbox) methods() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return slices.Clone(v.authMethods)
}

// smartConfiguration is GET /fhir-portal/.well-known/smart-configuration.
func (v *fhirPortalSandbox) smartConfiguration(w http.ResponseWriter, r *http.Request) {
	v.discoveryCalls.Add(1)
	if v.s.applyFault(w, r, endpointDiscovery, "", writeOutcome) {
		return
	}
	writeJSON(w, http.StatusOK, "application/json", map[string]any{
		"token_endpoint":                        baseURL(r, FHIRPortalPath) + "token",
		"grant_types_supported":                 []string{"client_credentials"},
		"token_endpoint_auth_methods_supported": v.methods(),
		"scopes_supported":                      fhirPortalScopes,
		"capabilities":                          []string{"client-confidential-symmetric"},
	})
}

// token is POST /fhir-portal/token.
func (v *fhirPortalSandbox) token(w http.ResponseWriter, r *http.Request) {
	s := v.s
	req := readClientCredentials(w, r)
	s.countTokenCall(req.clientID, s.clock())
	if s.applyFault(w, r, EndpointToken, req.clientID, writeOAuthError) {
		return
	}
	if req.code != "" {
		writeOAuthError(w, http.StatusBadRequest, req.code, req.description)
		return
	}
	method := fhirPortalPost
	if req.basic {
		method = fhirPortalBasic
	}
	now := s.clock()
	var (
		tok      string
		lifetime time.Duration
		err      error
	)
	if slices.Contains(v.methods(), method) {
		tok, lifetime, err = s.issue(apiFHIRPortal, req.clientID, req.clientSecret, now)
	} else {
		err = errInvalidClient
	}
	if err != nil {
		s.log.Debug().Str("api", apiFHIRPortal).Str("client_id", req.clientID).Str("auth_method", method).
			Msg("token refused: invalid client")
		if req.basic {
			w.Header().Set("WWW-Authenticate", `Basic realm="sandbox"`)
		}
		writeOAuthError(w, http.StatusUnauthorized, "invalid_client", "Client authentication failed")
		return
	}
	if lifetime > FHIRPortalMaxTokenLifetime {
		lifetime = FHIRPortalMaxTokenLifetime
		s.shortenToken(tok, now.Add(lifetime))
	}
	s.log.Debug().Str("api", apiFHIRPortal).Str("client_id", req.clientID).Str("token", fingerprint(tok)).
		Time("expires_at", now.Add(lifetime)).Msg("token issued")
	answer := map[string]any{
		"access_token": tok,
		"token_type":   "Bearer",
		"expires_in":   seconds(lifetime),
	}
	if req.scope != "" {
		answer["scope"] = req.scope
	}
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, http.StatusOK, "application/json", answer)
}

// shortenToken moves the expiry of a token just issued to expires. The
// issue order keeps the longer expiry, which only delays purging it.
// (Were issue given a maximum lifetime, this would go.)
func (s *Sandbox) shortenToken(tok string, expires time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if info, ok := s.tokens.get(tok); ok && expires.Before(info.expires) {
		info.expires = expires
		s.tokens.m[tok] = info
	}
}

// clientCredentialsRequest is an RFC 6749 section 4.4 token request as the
// sandbox reads it.
type clientCredentialsRequest struct {
	clientID, clientSecret string
	// basic: the client authenticated with HTTP Basic, else in the body.
	basic bool
	scope string
	// code and description are the OAuth error of a malformed request,
	// "" for a well-formed one. The client id is read either way, so that
	// the request is counted under it.
	code, description string
}

// readClientCredentials reads a client credentials token request: a
// form-encoded body with grant_type=client_credentials, the client
// authenticated by HTTP Basic (id and secret form-urlencoded first, RFC 6749
// section 2.3.1) or by client_id and client_secret in the body, not both.
// It is the request half of oauth2Token, which could use it too.
func readClientCredentials(w http.ResponseWriter, r *http.Request) clientCredentialsRequest {
	r.Body = http.MaxBytesReader(w, r.Body, maxTokenBody)
	media, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	formErr := r.ParseForm()
	req := clientCredentialsRequest{
		clientID:     r.PostForm.Get("client_id"),
		clientSecret: r.PostForm.Get("client_secret"),
		scope:        r.PostForm.Get("scope"),
	}
	inBody := req.clientSecret != ""
	if id, sec, ok := r.BasicAuth(); ok {
		if uid, err := url.QueryUnescape(id); err == nil {
			if usec, err := url.QueryUnescape(sec); err == nil {
				id, sec = uid, usec
			}
		}
		req.basic, req.clientID, req.clientSecret = true, id, sec
	}
	switch {
	case media != "application/x-www-form-urlencoded" || formErr != nil:
		req.code, req.description = "invalid_request", "the body must be application/x-www-form-urlencoded"
	case req.basic && inBody:
		req.code, req.description = "invalid_request", "use one client authentication method, not two"
	case r.PostForm.Get("grant_type") != "client_credentials":
		req.code, req.description = "unsupported_grant_type", "grant_type must be client_credentials"
	}
	return req
}
