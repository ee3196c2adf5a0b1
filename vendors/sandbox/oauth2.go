package sandbox

import (
	"mime"
	"net/http"
	"net/url"
)

// oauth2Token is POST /oauth2/token: RFC 6749 client credentials.
func (s *Sandbox) oauth2Token(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxTokenBody)
	media, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	formErr := r.ParseForm()

	// RFC 6749 section 2.3.1: Basic credentials are form-urlencoded first.
	basicID, basicSecret, basic := r.BasicAuth()
	if basic {
		id, err1 := url.QueryUnescape(basicID)
		sec, err2 := url.QueryUnescape(basicSecret)
		if err1 == nil && err2 == nil {
			basicID, basicSecret = id, sec
		}
	}
	clientID, clientSecret := r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	inBody := clientSecret != ""
	if basic {
		clientID = basicID
	}
	s.countTokenCall(clientID, s.clock())
	if s.applyFault(w, r, EndpointToken, clientID, writeOAuthError) {
		return
	}
	switch {
	case media != "application/x-www-form-urlencoded" || formErr != nil:
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "the body must be application/x-www-form-urlencoded")
		return
	case basic && inBody:
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "use one client authentication method, not two")
		return
	case r.PostForm.Get("grant_type") != "client_credentials":
		writeOAuthError(w, http.StatusBadRequest, "unsupported_grant_type", "grant_type must be client_credentials")
		return
	}
	if basic {
		clientSecret = basicSecret
	}
	now := s.clock()
	tok, lifetime, err := s.issue(apiOAuth2, clientID, clientSecret, now)
	if err != nil {
		s.log.Debug().Str("api", apiOAuth2).Str("client_id", clientID).Msg("token refused: invalid client")
		if basic {
			w.Header().Set("WWW-Authenticate", `Basic realm="sandbox"`)
		}
		writeOAuthError(w, http.StatusUnauthorized, "invalid_client", "Client authentication failed")
		return
	}
	s.log.Debug().Str("api", apiOAuth2).Str("client_id", clientID).Str("token", fingerprint(tok)).
		Time("expires_at", now.Add(lifetime)).Msg("token issued")
	answer := map[string]any{
		"access_token": tok,
		"token_type":   "Bearer",
		"expires_in":   seconds(lifetime),
	}
	if scope := r.PostForm.Get("scope"); scope != "" {
		answer["scope"] = scope
	}
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, http.StatusOK, "application/json", answer)
}
