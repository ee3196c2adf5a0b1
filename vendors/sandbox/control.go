package sandbox

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"time"
)

// The control endpoints: the Go methods as JSON over HTTP, for other
// processes (cmd/sandbox, a benchmark). The package doc lists them.
func (s *Sandbox) controlRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET "+ControlPath+"clients", func(w http.ResponseWriter, r *http.Request) {
		ids := s.Clients()
		sort.Strings(ids)
		writeJSON(w, http.StatusOK, "application/json", ids)
	})
	mux.HandleFunc("POST "+ControlPath+"clients", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			ClientID     string `json:"client_id"`
			ClientSecret string `json:"client_secret"`
		}
		if !decode(w, r, &in) {
			return
		}
		if in.ClientID == "" || in.ClientSecret == "" {
			controlError(w, http.StatusBadRequest, "client_id and client_secret are required")
			return
		}
		s.AddClient(in.ClientID, in.ClientSecret)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("DELETE "+ControlPath+"clients/{id}", func(w http.ResponseWriter, r *http.Request) {
		s.DeleteClient(r.PathValue("id"))
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET "+ControlPath+"clients/{id}/stats", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		times := s.TokenCallTimes(id)
		if times == nil {
			times = []time.Time{}
		}
		issued := s.IssuedTokens(id)
		if issued == nil {
			issued = []string{}
		}
		writeJSON(w, http.StatusOK, "application/json", map[string]any{
			"token_calls":      s.TokenCalls(id),
			"token_call_times": times,
			"expired_uses":     s.ExpiredUsesBy(id),
			"issued_tokens":    issued,
		})
	})
	mux.HandleFunc("GET "+ControlPath+"settings", func(w http.ResponseWriter, r *http.Request) {
		lifetime, claimed := s.Settings()
		writeJSON(w, http.StatusOK, "application/json", settingsJSON{
			RealTokenLifetime: lifetime.String(), ClaimedExpiresIn: claimed.String(),
		})
	})
	mux.HandleFunc("PUT "+ControlPath+"settings", func(w http.ResponseWriter, r *http.Request) {
		var in settingsJSON
		if !decode(w, r, &in) {
			return
		}
		lifetime, err := optionalDuration("real_token_lifetime", in.RealTokenLifetime)
		if err != nil {
			controlError(w, http.StatusBadRequest, err.Error())
			return
		}
		claimed, err := optionalDuration("claimed_expires_in", in.ClaimedExpiresIn)
		if err != nil {
			controlError(w, http.StatusBadRequest, err.Error())
			return
		}
		if in.RealTokenLifetime != "" {
			s.SetRealTokenLifetime(lifetime)
		}
		if in.ClaimedExpiresIn != "" {
			s.SetClaimedExpiresIn(claimed)
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET "+ControlPath+"faults", func(w http.ResponseWriter, r *http.Request) {
		faults := s.Faults()
		out := make([]faultJSON, 0, len(faults))
		for _, f := range faults {
			out = append(out, toFaultJSON(f))
		}
		writeJSON(w, http.StatusOK, "application/json", out)
	})
	mux.HandleFunc("POST "+ControlPath+"faults", func(w http.ResponseWriter, r *http.Request) {
		var in faultJSON
		if !decode(w, r, &in) {
			return
		}
		f, err := in.fault()
		if err == nil {
			err = s.Inject(f)
		}
		if err != nil {
			controlError(w, http.StatusBadRequest, err.Error())
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("DELETE "+ControlPath+"faults", func(w http.ResponseWriter, r *http.Request) {
		s.ClearFaults()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET "+ControlPath+"stats", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, "application/json", s.statsJSON())
	})
	mux.HandleFunc("POST "+ControlPath+"reset", func(w http.ResponseWriter, r *http.Request) {
		s.Reset()
		w.WriteHeader(http.StatusNoContent)
	})
}

type settingsJSON struct {
	RealTokenLifetime string `json:"real_token_lifetime,omitempty"`
	ClaimedExpiresIn  string `json:"claimed_expires_in,omitempty"`
}

// faultJSON is Fault with durations as Go duration strings.
type faultJSON struct {
	ClientID   string    `json:"client_id,omitempty"`
	Endpoint   Endpoint  `json:"endpoint,omitempty"`
	Kind       FaultKind `json:"kind"`
	Latency    string    `json:"latency,omitempty"`
	Status     int       `json:"status,omitempty"`
	RetryAfter string    `json:"retry_after,omitempty"`
	Times      int       `json:"times,omitempty"`
}

func (in faultJSON) fault() (Fault, error) {
	latency, err := optionalDuration("latency", in.Latency)
	if err != nil {
		return Fault{}, err
	}
	retryAfter, err := optionalDuration("retry_after", in.RetryAfter)
	if err != nil {
		return Fault{}, err
	}
	return Fault{ClientID: in.ClientID, Endpoint: in.Endpoint, Kind: in.Kind, Latency: latency,
		Status: in.Status, RetryAfter: retryAfter, Times: in.Times}, nil
}

func toFaultJSON(f Fault) faultJSON {
	out := faultJSON{ClientID: f.ClientID, Endpoint: f.Endpoint, Kind: f.Kind, Status: f.Status, Times: f.Times}
	if f.Latency != 0 {
		out.Latency = f.Latency.String()
	}
	if f.RetryAfter != 0 {
		out.RetryAfter = f.RetryAfter.String()
	}
	return out
}

type clientStatsJSON struct {
	TokenCalls   int `json:"token_calls"`
	ExpiredUses  int `json:"expired_uses"`
	IssuedTokens int `json:"issued_tokens"`
}

func (s *Sandbox) statsJSON() map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	clients := make(map[string]clientStatsJSON, len(s.stats))
	for id, st := range s.stats {
		clients[id] = clientStatsJSON{TokenCalls: st.calls, ExpiredUses: st.expiredUses, IssuedTokens: len(tail(st.issued))}
	}
	return map[string]any{
		"total_token_calls": s.totalCalls,
		"expired_uses":      s.expiredUses,
		"unknown_uses":      s.unknownUses,
		"revoked_uses":      s.revokedUses,
		"remembered_tokens": s.tokens.len(),
		"clients":           clients,
	}
}

func optionalDuration(field, v string) (time.Duration, error) {
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%s: %q is not a duration like \"15m\" or \"7s\"", field, v)
	}
	return d, nil
}

// decode reads a JSON request body into v, answering 400 when it cannot.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		controlError(w, http.StatusBadRequest, "bad JSON body: "+err.Error())
		return false
	}
	return true
}

func controlError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, "application/json", map[string]string{"error": msg})
}
