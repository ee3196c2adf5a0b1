package sandbox

import (
	"mime"
	"net/http"
	"net/url"
	"time"
)

// The client authentication methods of a token request (RFC 7591 names).
const (
	clientSecretBasic = "client_secret_basic"
	clientSecretPost  = "client_secret_post"
)

// oauth2Token is POST /oauth2/token: RFC 6749 client credentials.
func (s *Sandbox) oauth2Token(w http.ResponseWriter, r *http.Request) {
	s.clientCredentialsToken(w, r, apiOAuth2, nil, 0)
}

// clientCredentialsToken answers a client credentials token request (see
// readClientCredentials) for api: a token of the real token lifetime, at
// most limit when limit is positive, or 401 invalid_client. accepts, when
// not nil, says whether the client may authenticate with a method
// (clientSecretBasic, clientSecretPost); a client authenticating another
// way is refused as a bad secret is.
func (s *Sandbox) clientCredentialsToken(w http.ResponseWriter, r *http.Request, api string, accepts func(method string) bool, limit time.Duration) {
	req := readClientCredentials(w, r)
	s.countTokenCall(req.clientID, s.clock())
	if s.applyFault(w, r, EndpointToken, req.clientID, writeOAuthError) {
		return
	}
	if req.code != "" {
		writeOAuthError(w, http.StatusBadRequest, req.code, req.description)
		return
	}
	method := clientSecretPost
	if req.basic {
		method = clientSecretBasic
	}
	now := s.clock()
	var (
		tok      string
		lifetime time.Duration
		err      error = errInvalidClient
	)
	if accepts == nil || accepts(method) {
		tok, lifetime, err = s.issueAtMost(api, req.clientID, req.clientSecret, limit, now)
	}
	if err != nil {
		s.log.Debug().Str("api", api).Str("client_id", req.clientID).Str("auth_method", method).
			Msg("token refused: invalid client")
		if req.basic {
			w.Header().Set("WWW-Authenticate", `Basic realm="sandbox"`)
		}
		writeOAuthError(w, http.StatusUnauthorized, "invalid_client", "Client authentication failed")
		return
	}
	s.log.Debug().Str("api", api).Str("client_id", req.clientID).Str("token", fingerprint(tok)).
		Time("expires_at", now.Add(lifetime)).Msg("token issued")
	answer := map[string]any{
		"access_token": tok,
		"token_type":   "Bearer",
		"expires_in":   seconds(lifetime),
	}
	if req.scope != "" {
		answer["scope"] = req.scope
	}
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, http.StatusOK, "application/json", answer)
}

// clientCredentialsRequest is an RFC 6749 section 4.4 token request as the
// sandbox reads it.
type clientCredentialsRequest struct {
	clientID, clientSecret string
	// basic: the client authenticated with HTTP Basic, else in the body.
	basic bool
	scope string
	// code and description are the OAuth error of a malformed request,
	// "" for a well-formed one. The client id is read either way, so that
	// the request is counted under it.
	code, description string
}

// readClientCredentials reads a client credentials token request: a
// form-encoded body with grant_type=client_credentials, the client
// authenticated as clientAuth reads it, one way only.
func readClientCredentials(w http.ResponseWriter, r *http.Request) clientCredentialsRequest {
	r.Body = http.MaxBytesReader(w, r.Body, maxTokenBody)
	media, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	formErr := r.ParseForm()
	req := clientCredentialsRequest{scope: r.PostForm.Get("scope")}
	var both bool
	req.clientID, req.clientSecret, req.basic, both = clientAuth(r)
	switch {
	case media != "application/x-www-form-urlencoded" || formErr != nil:
		req.code, req.description = "invalid_request", "the body must be application/x-www-form-urlencoded"
	case both:
		req.code, req.description = "invalid_request", "use one client authentication method, not two"
	case r.PostForm.Get("grant_type") != "client_credentials":
		req.code, req.description = "unsupported_grant_type", "grant_type must be client_credentials"
	}
	return req
}

// clientAuth reads the client's credentials of a token request whose form
// is parsed: HTTP Basic (id and secret form-urlencoded first, RFC 6749
// section 2.3.1) or client_id and client_secret in the body; both reports
// a request that used both.
func clientAuth(r *http.Request) (id, secret string, basic, both bool) {
	bid, bsecret, basic := r.BasicAuth()
	if basic {
		uid, err1 := url.QueryUnescape(bid)
		usecret, err2 := url.QueryUnescape(bsecret)
		if err1 == nil && err2 == nil {
			bid, bsecret = uid, usecret
		}
		return bid, bsecret, true, r.PostForm.Get("client_secret") != ""
	}
	return r.PostForm.Get("client_id"), r.PostForm.Get("client_secret"), false, false
}
