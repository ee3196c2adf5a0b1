package sandbox

import "net/http"

// fhirPortalSandbox emulates patient-portal FHIR credentials (SMART discovery, client credentials).
type fhirPortalSandbox struct {
	s *Sandbox
}

func newFHIRPortalSandbox(s *Sandbox) *fhirPortalSandbox { return &fhirPortalSandbox{s: s} }

// routes registers the emulator's endpoints.
func (v *fhirPortalSandbox) routes(mux *http.ServeMux) {}
