package sandbox

import (
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"regexp"
	"strings"
	"time"
)

const mediaFHIR = "application/fhir+json"

// maxTokenBody bounds a token request's body.
const maxTokenBody = 64 << 10

// userAgentRE is Halaxy's "APP_VENDOR_NAME (APP_VENDOR_EMAIL)".
var userAgentRE = regexp.MustCompile(`^[^()\s](?:[^()\r\n]*[^()\s])? \([^\s()@]+@[^\s()@]+\)$`)

// halaxyToken is POST /halaxy/main/oauth/token.
func (s *Sandbox) halaxyToken(w http.ResponseWriter, r *http.Request) {
	body, readErr := io.ReadAll(http.MaxBytesReader(w, r.Body, maxTokenBody))
	var req struct {
		GrantType    string `json:"grant_type"`
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
	}
	jsonErr := json.Unmarshal(body, &req)
	s.countTokenCall(req.ClientID, s.clock())
	if s.applyFault(w, r, EndpointToken, req.ClientID, writeOAuthError) {
		return
	}
	if status, msg := halaxyHeaderProblem(r); status != 0 {
		writeOAuthError(w, status, "invalid_request", msg)
		return
	}
	if media, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); media != "application/json" {
		writeOAuthError(w, http.StatusUnsupportedMediaType, "invalid_request", "Content-Type must be application/json")
		return
	}
	if readErr != nil || jsonErr != nil {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "the body must be a JSON object")
		return
	}
	if req.GrantType != "client_credentials" {
		writeOAuthError(w, http.StatusBadRequest, "unsupported_grant_type", "grant_type must be client_credentials")
		return
	}
	now := s.clock()
	tok, lifetime, err := s.issue(apiHalaxy, req.ClientID, req.ClientSecret, now)
	if err != nil {
		s.log.Debug().Str("api", apiHalaxy).Str("client_id", req.ClientID).Msg("token refused: invalid client")
		writeOAuthError(w, http.StatusUnauthorized, "invalid_client", "Client authentication failed")
		return
	}
	_, claimed := s.Settings()
	s.log.Debug().Str("api", apiHalaxy).Str("client_id", req.ClientID).Str("token", fingerprint(tok)).
		Time("expires_at", now.Add(lifetime)).Msg("token issued")
	writeJSON(w, http.StatusOK, "application/json", map[string]any{
		"token_type":   "Bearer",
		"expires_in":   seconds(claimed),
		"access_token": tok,
	})
}

// halaxyHeaderProblem says what is wrong, if anything, with the headers
// Halaxy requires on every request: the status to answer (0 if nothing)
// and why.
func halaxyHeaderProblem(r *http.Request) (int, string) {
	switch {
	case !acceptsFHIR(r):
		return http.StatusNotAcceptable, "Accept must be " + mediaFHIR
	case !userAgentRE.MatchString(r.UserAgent()):
		return http.StatusBadRequest, `User-Agent must identify the application as "APP_VENDOR_NAME (APP_VENDOR_EMAIL)"`
	}
	return 0, ""
}

// acceptsFHIR reports whether the request's Accept names application/fhir+json.
func acceptsFHIR(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept") {
		for part := range strings.SplitSeq(v, ",") {
			media, _, _ := strings.Cut(part, ";")
			if strings.EqualFold(strings.TrimSpace(media), mediaFHIR) {
				return true
			}
		}
	}
	return false
}

// writeOAuthError writes an RFC 6749 section 5.2 error answer.
func writeOAuthError(w http.ResponseWriter, status int, code, description string) {
	if status == http.StatusUnauthorized && w.Header().Get("WWW-Authenticate") == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="sandbox"`)
	}
	writeJSON(w, status, "application/json", map[string]string{"error": code, "error_description": description})
}

func writeJSON(w http.ResponseWriter, status int, contentType string, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// seconds renders d as whole seconds, rounded to the nearest.
func seconds(d time.Duration) int64 { return d.Round(time.Second).Milliseconds() / 1000 }
