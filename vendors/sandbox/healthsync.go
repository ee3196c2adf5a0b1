package sandbox

import "net/http"

// healthSyncSandbox emulates HealthSync (API keys, key management, OAuth, service accounts, hourly limits).
type healthSyncSandbox struct {
	s *Sandbox
}

func newHealthSyncSandbox(s *Sandbox) *healthSyncSandbox { return &healthSyncSandbox{s: s} }

// routes registers the emulator's endpoints.
func (v *healthSyncSandbox) routes(mux *http.ServeMux) {}
