package sandbox

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// token is POST /redox/v2/auth/token (see RedoxPath).
func (v *redoxSandbox) token(w http.ResponseWriter, r *http.Request) {
	s := v.s
	r.Body = http.MaxBytesReader(w, r.Body, maxTokenBody)
	media, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	formErr := r.ParseForm()
	form := r.PostForm
	raw := form.Get("client_assertion")
	a := decodeRedoxAssertion(raw)
	a.At, a.Scope = s.clock(), form.Get("scope")
	clientID := a.Issuer
	if clientID == "" {
		clientID = form.Get("client_id")
	}
	s.countTokenCall(clientID, a.At)
	if s.applyFault(w, r, EndpointToken, clientID, writeOAuthError) {
		return
	}

	code, desc := "invalid_request", ""
	switch {
	case media != "application/x-www-form-urlencoded" || formErr != nil:
		desc = "x-www-form-urlencoded content-type required"
	case form.Get("grant_type") == "":
		desc = "Missing grant_type parameter"
	case form.Get("grant_type") != "client_credentials":
		code, desc = "unsupported_grant_type", "The grant_type parameter should equal 'client_credentials'"
	case form.Get("client_assertion_type") == "":
		desc = "Missing client assertion type"
	case form.Get("client_assertion_type") != redoxAssertionType:
		desc = "Invalid client assertion type"
	case raw == "":
		desc = "Missing client assertion"
	}
	if desc != "" {
		if raw != "" {
			a.Refusal = desc
			v.record(a)
		}
		writeOAuthError(w, http.StatusBadRequest, code, desc)
		return
	}

	now := a.At
	verified, refusal := v.verify(r, raw, form.Get("client_id"), now)
	a.Refusal = refusal
	var (
		tok      string
		lifetime time.Duration
	)
	if a.Refusal == "" {
		var err error
		if tok, lifetime, err = v.grant(verified, now); err != nil {
			a.Refusal = redoxKeyNotFound // deleted meanwhile
		}
	}
	v.record(a)
	if a.Refusal != "" {
		s.log.Debug().Str("api", apiRedox).Str("client_id", clientID).Str("alg", a.Algorithm).Str("kid", a.KeyID).
			Str("reason", a.Refusal).Msg("token refused: invalid client assertion")
		writeOAuthError(w, http.StatusUnauthorized, "invalid_client", a.Refusal)
		return
	}
	s.log.Debug().Str("api", apiRedox).Str("client_id", verified).Str("alg", a.Algorithm).Str("kid", a.KeyID).
		Str("token", fingerprint(tok)).Time("expires_at", now.Add(lifetime)).Msg("token issued")
	answer := map[string]any{
		"access_token": tok,
		"token_type":   "Bearer",
		"expires_in":   max(seconds(lifetime), 1),
	}
	if a.Scope != "" {
		answer["scope"] = a.Scope
	}
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, http.StatusOK, "application/json", answer)
}

// verify checks a client assertion as Redox does, in Redox's order: the
// JWT, the client and its key, the signature, then the claims. It returns
// the client the assertion authenticates, or why it is refused; a good
// one's jti is used up.
func (v *redoxSandbox) verify(r *http.Request, raw, formClientID string, now time.Time) (clientID, refusal string) {
	if strings.Count(raw, ".") != 2 {
		return "", "client_assertion is not a compact signed JWT"
	}
	alg, ok := redoxAlgorithm(raw)
	if !ok {
		return "", fmt.Sprintf("Unexpected alg header value %q: use RS384, ES384 or HS384", alg)
	}
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{alg})
	if err != nil || len(tok.Headers) != 1 {
		return "", "client_assertion is not a compact signed JWT"
	}
	hdr := tok.Headers[0]
	if typ, _ := hdr.ExtraHeaders[jose.HeaderType].(string); !strings.EqualFold(typ, "JWT") {
		return "", `Unexpected typ header value: it must be "JWT"`
	}
	var unverified jwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&unverified); err != nil {
		return "", "client_assertion claims are not a JSON object of JWT claims"
	}
	iss := unverified.Issuer
	if iss == "" {
		return "", "Unexpected iss claim value: it must be the client id"
	}
	key, refusal := v.verificationKey(iss, alg, hdr.KeyID)
	if refusal != "" {
		return "", refusal
	}
	var c jwt.Claims
	if err := tok.Claims(key, &c); err != nil {
		return "", "Signature verification failed"
	}

	skew, maxAge := RedoxClockSkew, RedoxMaxAssertionLifetime
	switch {
	case c.Subject != c.Issuer:
		return "", "Unexpected sub claim value: it must equal iss, the client id"
	case formClientID != "" && formClientID != c.Issuer:
		return "", "client_id does not match the assertion's iss"
	case !v.audienceOK(r, c.Audience):
		return "", "Unexpected aud claim value: it must be " + baseURL(r, redoxTokenPath)
	case c.ID == "":
		return "", "Unexpected jti claim value: a unique jti is required"
	case c.IssuedAt == nil:
		return "", "Unexpected iat claim value: iat is required"
	case c.IssuedAt.Time().Before(now.Add(-maxAge - skew)):
		return "", "Unexpected iat claim value: iat must be within the past 5 minutes (stale iat; check the system clock)"
	case c.IssuedAt.Time().After(now.Add(skew)):
		return "", "Unexpected iat claim value: iat is in the future (check the system clock)"
	case c.Expiry == nil:
		return "", "Unexpected exp claim value: exp is required"
	case !c.Expiry.Time().After(now.Add(-skew)):
		return "", "Unexpected exp claim value: the assertion has expired"
	case c.Expiry.Time().Sub(c.IssuedAt.Time()) > maxAge:
		return "", "Unexpected exp claim value: exp must be at most 5 minutes after iat"
	case c.NotBefore != nil && c.NotBefore.Time().After(now.Add(skew)):
		return "", "Unexpected nbf claim value: the assertion is not valid yet"
	case !v.useJTI(c.Issuer, c.ID, c.Expiry.Time().Add(skew), now):
		return "", "Unexpected jti claim value: this jti was already used"
	}
	return c.Issuer, ""
}

// redoxAlgorithm reads the alg of an assertion's header and says whether
// Redox verifies it.
func redoxAlgorithm(raw string) (jose.SignatureAlgorithm, bool) {
	var h struct {
		Alg string `json:"alg"`
	}
	head, _, _ := strings.Cut(raw, ".")
	if b, err := base64.RawURLEncoding.DecodeString(head); err == nil {
		_ = json.Unmarshal(b, &h)
	}
	alg := jose.SignatureAlgorithm(h.Alg)
	return alg, slices.Contains(redoxAlgorithms, alg)
}

// verificationKey finds what verifies a client's assertion: its secret for
// HS384, the public key named by kid otherwise.
func (v *redoxSandbox) verificationKey(clientID string, alg jose.SignatureAlgorithm, kid string) (any, string) {
	s := v.s
	s.mu.Lock()
	c, ok := s.clients[clientID]
	s.mu.Unlock()
	if !ok {
		return nil, redoxKeyNotFound
	}
	if alg == jose.HS384 {
		if c.secret == "" {
			return nil, "HS384 needs the API key's secret, and this key has none"
		}
		return []byte(c.secret), ""
	}
	if kid == "" {
		return nil, "JWT header kid property is required"
	}
	v.mu.Lock()
	set := v.keys[clientID]
	jwk, ok := set.keys[kid]
	v.mu.Unlock()
	if !ok || set.gen != c.gen {
		return nil, redoxKeyNotFound
	}
	if redoxKeyAlgorithm(jwk) != alg {
		return nil, fmt.Sprintf("the key of kid %q does not verify %s", kid, alg)
	}
	return jwk.Key, ""
}

// audienceOK reports whether aud names this token endpoint.
func (v *redoxSandbox) audienceOK(r *http.Request, aud jwt.Audience) bool {
	if aud.Contains(baseURL(r, redoxTokenPath)) {
		return true
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	return slices.ContainsFunc(aud, func(a string) bool { return v.audiences[a] })
}

// useJTI records a client's jti until forget, reporting false if it was
// already there. It forgets, oldest first, the jtis past their time.
func (v *redoxSandbox) useJTI(clientID, jti string, forget, now time.Time) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	for v.jtiHead < len(v.jtiOrder) && v.jtiOrder[v.jtiHead].forget.Before(now) {
		if e := v.jtiOrder[v.jtiHead]; v.jtis[e.key].Equal(e.forget) {
			delete(v.jtis, e.key)
		}
		v.jtiOrder[v.jtiHead] = redoxJTI{}
		v.jtiHead++
	}
	if v.jtiHead > 1024 && v.jtiHead*2 > len(v.jtiOrder) {
		v.jtiOrder = append([]redoxJTI(nil), v.jtiOrder[v.jtiHead:]...)
		v.jtiHead = 0
	}
	key := clientID + "\x00" + jti
	if until, seen := v.jtis[key]; seen && !until.Before(now) {
		return false
	}
	v.jtis[key] = forget
	v.jtiOrder = append(v.jtiOrder, redoxJTI{key: key, forget: forget})
	return true
}

// grant issues a Redox access token to a client whose assertion was good.
func (v *redoxSandbox) grant(clientID string, now time.Time) (string, time.Duration, error) {
	s := v.s
	s.mu.Lock()
	defer s.mu.Unlock()
	lifetime := min(RedoxTokenLifetime, s.realLifetime)
	tok, err := s.issueTo(apiRedox, clientID, lifetime, now)
	return tok, lifetime, err
}

// record keeps a presented assertion for RedoxAssertions.
func (v *redoxSandbox) record(a RedoxAssertion) {
	v.mu.Lock()
	v.assertions[a.Issuer] = appendCapped(v.assertions[a.Issuer], a)
	v.mu.Unlock()
}

// decodeRedoxAssertion reads an assertion's header and claims without
// verifying anything, as far as they can be read.
func decodeRedoxAssertion(raw string) RedoxAssertion {
	var a RedoxAssertion
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return a
	}
	var h struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
		Typ string `json:"typ"`
	}
	if b, err := base64.RawURLEncoding.DecodeString(parts[0]); err == nil {
		_ = json.Unmarshal(b, &h)
	}
	a.Algorithm, a.KeyID, a.Type = h.Alg, h.Kid, h.Typ
	var c jwt.Claims
	if b, err := base64.RawURLEncoding.DecodeString(parts[1]); err == nil {
		_ = json.Unmarshal(b, &c)
	}
	a.Issuer, a.Subject, a.Audience, a.ID = c.Issuer, c.Subject, []string(c.Audience), c.ID
	a.IssuedAt, a.Expiry, a.NotBefore = numericTime(c.IssuedAt), numericTime(c.Expiry), numericTime(c.NotBefore)
	return a
}

func numericTime(d *jwt.NumericDate) time.Time {
	if d == nil {
		return time.Time{}
	}
	return d.Time().UTC()
}
