package sandbox

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"
)

// FaultKind is what a fault does to a request.
type FaultKind string

// Fault kinds.
const (
	// FaultLatency delays the request by Fault.Latency (real time, not the
	// sandbox clock), then serves it normally. A client that gives up first
	// sees a timeout.
	FaultLatency FaultKind = "latency"
	// FaultServerError answers Fault.Status (default 500) with an error
	// body, and retry-after when Fault.RetryAfter is set.
	FaultServerError FaultKind = "server_error"
	// FaultMalformed answers 200 with a truncated JSON body.
	FaultMalformed FaultKind = "malformed"
	// FaultReset closes the connection with a TCP reset, without answering.
	FaultReset FaultKind = "reset"
	// FaultRateLimited answers 429 with retry-after Fault.RetryAfter
	// (rounded up to seconds, default 1 s).
	FaultRateLimited FaultKind = "rate_limited"
)

// Endpoint says which requests a fault applies to.
type Endpoint string

// Endpoints.
const (
	// EndpointToken is the token endpoints of every API (the default).
	EndpointToken Endpoint = "token"
	// EndpointPatient is the Patient endpoints.
	EndpointPatient Endpoint = "patient"
	// EndpointAll is every emulated endpoint (not the control ones).
	EndpointAll Endpoint = "all"
)

// Fault is a failure to inject into the requests of one client or all.
type Fault struct {
	// ClientID limits the fault to the requests of one client: its token
	// requests, and the requests with one of its tokens. "" means every
	// request.
	ClientID string `json:"client_id,omitempty"`
	// Endpoint is where it applies; default EndpointToken.
	Endpoint Endpoint `json:"endpoint,omitempty"`
	// Kind is what it does. Required.
	Kind FaultKind `json:"kind"`
	// Latency is FaultLatency's delay.
	Latency time.Duration `json:"latency,omitempty"`
	// Status is FaultServerError's status, default 500.
	Status int `json:"status,omitempty"`
	// RetryAfter is the retry-after of FaultRateLimited (default 1 s) and,
	// when set, of FaultServerError.
	RetryAfter time.Duration `json:"retry_after,omitempty"`
	// Times is how many requests it hits; 0 means every one until
	// ClearFaults.
	Times int `json:"times,omitempty"`
}

func (f *Fault) normalize() error {
	if f.Endpoint == "" {
		f.Endpoint = EndpointToken
	}
	switch f.Endpoint {
	case EndpointToken, EndpointPatient, EndpointAll:
	default:
		return fmt.Errorf("sandbox: unknown fault endpoint %q (token, patient, all)", f.Endpoint)
	}
	switch f.Kind {
	case FaultLatency:
		if f.Latency <= 0 {
			return errors.New("sandbox: a latency fault needs a positive latency")
		}
	case FaultServerError:
		if f.Status == 0 {
			f.Status = http.StatusInternalServerError
		}
		if f.Status < 100 || f.Status > 999 {
			return fmt.Errorf("sandbox: fault status %d is not an HTTP status", f.Status)
		}
	case FaultRateLimited:
		if f.RetryAfter == 0 {
			f.RetryAfter = time.Second
		}
	case FaultMalformed, FaultReset:
	default:
		return fmt.Errorf("sandbox: unknown fault kind %q (latency, server_error, malformed, reset, rate_limited)", f.Kind)
	}
	if f.RetryAfter < 0 || f.Times < 0 {
		return errors.New("sandbox: fault retry_after and times must not be negative")
	}
	return nil
}

type activeFault struct {
	f    Fault
	left int // requests still to hit; 0: unlimited
}

// Inject adds a fault. Faults apply in the order injected: a request gets
// the first that matches it, at most one.
func (s *Sandbox) Inject(f Fault) error {
	if err := f.normalize(); err != nil {
		return err
	}
	s.mu.Lock()
	s.faults = append(s.faults, &activeFault{f: f, left: f.Times})
	s.mu.Unlock()
	s.log.Info().Str("kind", string(f.Kind)).Str("endpoint", string(f.Endpoint)).Str("client_id", f.ClientID).
		Int("times", f.Times).Msg("fault injected")
	return nil
}

// ClearFaults removes every fault.
func (s *Sandbox) ClearFaults() {
	s.mu.Lock()
	s.faults = nil
	s.mu.Unlock()
	s.log.Info().Msg("faults cleared")
}

// Faults lists the faults still active, with Times set to the requests
// each has still to hit (0: unlimited).
func (s *Sandbox) Faults() []Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Fault, 0, len(s.faults))
	for _, af := range s.faults {
		f := af.f
		f.Times = af.left
		out = append(out, f)
	}
	return out
}

// takeFault returns the fault that hits a request, if any, and uses it up.
func (s *Sandbox) takeFault(ep Endpoint, clientID string) (Fault, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, af := range s.faults {
		if af.f.Endpoint != EndpointAll && af.f.Endpoint != ep {
			continue
		}
		if af.f.ClientID != "" && af.f.ClientID != clientID {
			continue
		}
		if af.left > 0 {
			af.left--
			if af.left == 0 {
				s.faults = append(s.faults[:i:i], s.faults[i+1:]...)
			}
		}
		return af.f, true
	}
	return Fault{}, false
}

// errorWriter writes an endpoint's error answers: OAuth-style JSON for the
// token endpoints, a FHIR OperationOutcome for the FHIR ones.
type errorWriter func(w http.ResponseWriter, status int, code, description string)

// applyFault injects the fault that hits the request, if any. It reports
// whether the request is done with (answered, reset, or abandoned by the
// client during a latency).
func (s *Sandbox) applyFault(w http.ResponseWriter, r *http.Request, ep Endpoint, clientID string, fail errorWriter) bool {
	f, ok := s.takeFault(ep, clientID)
	if !ok {
		return false
	}
	s.log.Debug().Str("kind", string(f.Kind)).Str("path", r.URL.Path).Str("client_id", clientID).Msg("fault applied")
	switch f.Kind {
	case FaultLatency:
		t := time.NewTimer(f.Latency)
		defer t.Stop()
		select {
		case <-t.C:
			return false
		case <-r.Context().Done():
			return true
		}
	case FaultServerError:
		if f.RetryAfter > 0 {
			w.Header()["retry-after"] = []string{retryAfterSeconds(f.RetryAfter)}
		}
		fail(w, f.Status, "server_error", "injected server error")
	case FaultRateLimited:
		w.Header()["retry-after"] = []string{retryAfterSeconds(f.RetryAfter)}
		fail(w, http.StatusTooManyRequests, "rate_limited", "too many requests")
	case FaultMalformed:
		if ep == EndpointPatient {
			w.Header().Set("Content-Type", mediaFHIR)
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write([]byte(`{"resourceType":"Bundle","type":"searchset","entry":[{"resource":{"resourceType":"Pat`))
			return true
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(`{"token_type":"Bearer","expires_in":36`))
	case FaultReset:
		reset(w)
	}
	return true
}

// reset closes the request's connection with a TCP RST and no answer.
func reset(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// Not hijackable (HTTP/2): abort the stream instead.
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

// retryAfterSeconds renders d as a retry-after in whole seconds, rounded up.
func retryAfterSeconds(d time.Duration) string {
	return strconv.FormatInt(int64((d+time.Second-1)/time.Second), 10)
}
