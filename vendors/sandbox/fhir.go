package sandbox

import (
	"net/http"
	"strings"
)

// flavor is what differs between the emulated FHIR APIs.
type flavor struct {
	api  string
	base string // URL path prefix
	// fhirHeaders: requests must send Accept: application/fhir+json and a
	// User-Agent "NAME (EMAIL)" (Halaxy).
	fhirHeaders bool
	// limiter is the API's rate limit, nil for none.
	limiter limiter
}

// patient is GET {base}Patient: a searchset Bundle of fake patients.
func (s *Sandbox) patient(fl flavor) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		now := s.clock()
		tok, _ := bearer(r)
		clientID, state := s.checkToken(fl.api, tok, now)
		if state != tokenValid {
			s.log.Info().Str("api", fl.api).Str("client_id", clientID).Str("token", fingerprint(tok)).
				Stringer("state", state).Msg("request with a bad token")
		}
		if s.applyFault(w, r, EndpointPatient, clientID, writeOutcome) {
			return
		}
		if fl.fhirHeaders {
			if status, msg := halaxyHeaderProblem(r); status != 0 {
				code := "required"
				if status == http.StatusNotAcceptable {
					code = "not-supported"
				}
				writeOutcome(w, status, code, msg)
				return
			}
		}
		if state != tokenValid {
			desc := "the access token is " + state.String()
			w.Header().Set("WWW-Authenticate", `Bearer realm="sandbox", error="invalid_token", error_description="`+desc+`"`)
			writeOutcome(w, http.StatusUnauthorized, "login", desc)
			return
		}
		if !admitHalaxy(w, fl.limiter, clientID, now) {
			return
		}
		if r.PathValue("type") != "" {
			s.serveRead(w, r, fl, now)
			return
		}
		writeJSON(w, http.StatusOK, mediaFHIR, patientBundle(baseURL(r, fl.base), now.UTC().Format("2006-01-02T15:04:05Z")))
	}
}

// bearer returns the request's bearer token.
func bearer(r *http.Request) (string, bool) {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// baseURL is the absolute URL of an API's base, as FHIR fullUrls need.
func baseURL(r *http.Request, base string) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + base
}

// writeOutcome writes a FHIR OperationOutcome error answer.
func writeOutcome(w http.ResponseWriter, status int, code, diagnostics string) {
	writeJSON(w, status, mediaFHIR, map[string]any{
		"resourceType": "OperationOutcome",
		"issue": []map[string]string{{
			"severity":    "error",
			"code":        code,
			"diagnostics": diagnostics,
		}},
	})
}

// fakePatients are the Patient resources every search returns.
var fakePatients = []map[string]any{
	{
		"resourceType": "Patient",
		"id":           "1001",
		"active":       true,
		"name":         []map[string]any{{"use": "official", "family": "Citizen", "given": []string{"Jane"}}},
		"gender":       "female",
		"birthDate":    "1984-07-12",
		"telecom":      []map[string]string{{"system": "email", "value": "jane.citizen@example.com"}},
	},
	{
		"resourceType": "Patient",
		"id":           "1002",
		"active":       true,
		"name":         []map[string]any{{"use": "official", "family": "Nguyen", "given": []string{"Minh", "Anh"}}},
		"gender":       "male",
		"birthDate":    "1991-02-03",
	},
	{
		"resourceType": "Patient",
		"id":           "1003",
		"active":       false,
		"name":         []map[string]any{{"use": "official", "family": "O'Brien", "given": []string{"Siobhan"}}},
		"gender":       "female",
		"birthDate":    "1958-11-30",
	},
}

// patientBundle is a FHIR R4B searchset Bundle of fakePatients.
func patientBundle(base, now string) map[string]any {
	entries := make([]map[string]any, 0, len(fakePatients))
	for _, p := range fakePatients {
		entries = append(entries, map[string]any{
			"fullUrl":  base + "Patient/" + p["id"].(string),
			"resource": p,
			"search":   map[string]string{"mode": "match"},
		})
	}
	return map[string]any{
		"resourceType": "Bundle",
		"id":           newToken()[:16],
		"meta":         map[string]string{"lastUpdated": now},
		"type":         "searchset",
		"total":        len(fakePatients),
		"link":         []map[string]string{{"relation": "self", "url": base + "Patient"}},
		"entry":        entries,
	}
}
