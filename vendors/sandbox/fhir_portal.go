package sandbox

import (
	"fmt"
	"net/http"
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
//   - GET {type} and GET {type}/{id}: the generic FHIR reads and searches
//     (paged, _lastUpdated filtering; see serveRead), as under OAuth2Path,
//     with a token of this API only.
//
// Faults for EndpointToken and EndpointPatient apply as everywhere. The
// discovery endpoint is hit only by EndpointAll faults without a ClientID
// (discovery carries no client): Fault.Endpoint has no value naming it yet.
const FHIRPortalPath = "/fhir-portal/"

// FHIRPortalMaxTokenLifetime is the longest a portal token lives: SMART
// Backend Services advises access tokens of at most 300 seconds.
const FHIRPortalMaxTokenLifetime = 300 * time.Second

const apiFHIRPortal = "fhir-portal"

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
	return []string{clientSecretBasic, clientSecretPost}
}

// routes registers the emulator's endpoints.
func (v *fhirPortalSandbox) routes(mux *http.ServeMux) {
	mux.HandleFunc("GET "+FHIRPortalPath+".well-known/smart-configuration", v.smartConfiguration)
	mux.HandleFunc("POST "+FHIRPortalPath+"token", v.token)
	mux.HandleFunc("GET "+FHIRPortalPath+"{type}", v.s.patient(v.fhir))
	mux.HandleFunc("GET "+FHIRPortalPath+"{type}/{id}", v.s.patient(v.fhir))
}

// SetFHIRPortalAuthMethods sets the client authentication methods the
// portal advertises and accepts: "client_secret_basic", "client_secret_post"
// or both; none restores the default (both). A
// token request authenticated another way is refused as a real server
// refuses it: 401 invalid_client.
func (s *Sandbox) SetFHIRPortalAuthMethods(methods ...string) error {
	for _, m := range methods {
		if m != clientSecretBasic && m != clientSecretPost {
			return fmt.Errorf("sandbox: unknown auth method %q (%s, %s)", m, clientSecretBasic, clientSecretPost)
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

// token is POST /fhir-portal/token: client credentials, the client
// authenticated by one of the methods the portal accepts, for a token of at
// most FHIRPortalMaxTokenLifetime.
func (v *fhirPortalSandbox) token(w http.ResponseWriter, r *http.Request) {
	accepts := func(method string) bool { return slices.Contains(v.methods(), method) }
	v.s.clientCredentialsToken(w, r, apiFHIRPortal, accepts, FHIRPortalMaxTokenLifetime)
}
