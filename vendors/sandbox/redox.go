package sandbox

import "net/http"

// redoxSandbox emulates Redox OAuth API keys (JWT client assertions).
type redoxSandbox struct {
	s *Sandbox
}

func newRedoxSandbox(s *Sandbox) *redoxSandbox { return &redoxSandbox{s: s} }

// routes registers the emulator's endpoints.
func (v *redoxSandbox) routes(mux *http.ServeMux) {}
