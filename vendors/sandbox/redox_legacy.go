package sandbox

import "net/http"

// redoxLegacySandbox emulates Redox legacy API keys (rotating refresh tokens).
type redoxLegacySandbox struct {
	s *Sandbox
}

func newRedoxLegacySandbox(s *Sandbox) *redoxLegacySandbox { return &redoxLegacySandbox{s: s} }

// routes registers the emulator's endpoints.
func (v *redoxLegacySandbox) routes(mux *http.ServeMux) {}
