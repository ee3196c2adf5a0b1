package sandbox

// HealthSync's OAuth token endpoint as the sandbox serves it: delegated
// refresh tokens (rotating or not) and service accounts.

import (
	"mime"
	"net/http"
	"slices"
	"strings"
	"time"
)

// newRefreshToken adds a refresh token to family. Call with v.mu held.
func (v *healthSyncSandbox) newRefreshToken(f *hsFamily) string {
	rt := "hsr_" + newToken()
	v.grants[rt] = &hsGrant{family: f}
	return rt
}

// retire marks a used refresh token, remembering the last few for reuse
// detection. Call with v.mu held.
func (v *healthSyncSandbox) retire(rt string, g *hsGrant) {
	g.used = true
	f := g.family
	f.used = append(f.used, rt)
	if len(f.used) > healthSyncUsedKept {
		delete(v.grants, f.used[0])
		f.used = slices.Delete(f.used, 0, 1)
	}
}

// addAccess remembers what an access token may do, and forgets those
// long expired. Call with v.mu held.
func (v *healthSyncSandbox) addAccess(tok string, a hsAccess, now time.Time, lifetime time.Duration) {
	v.access[tok] = a
	v.accessOrder = append(v.accessOrder, issuedToken{token: tok, expires: now.Add(lifetime)})
	forget(v.access, &v.accessOrder, &v.accessHead, now.Add(-purgeFactor*lifetime))
}

// token is POST oauth/token.
func (v *healthSyncSandbox) token(w http.ResponseWriter, r *http.Request) {
	now := v.s.clock()
	r.Body = http.MaxBytesReader(w, r.Body, maxTokenBody)
	media, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	formErr := r.ParseForm()
	clientID, clientSecret, basic, both := clientAuth(r)
	v.s.countTokenCall(clientID, now)
	if v.s.applyFault(w, r, EndpointToken, clientID, writeOAuthError) {
		return
	}
	switch {
	case media != "application/x-www-form-urlencoded" || formErr != nil:
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "the body must be application/x-www-form-urlencoded")
		return
	case both:
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "use one client authentication method, not two")
		return
	}
	var (
		status int
		answer map[string]any
		desc   string
	)
	switch grant := r.PostForm.Get("grant_type"); grant {
	case "refresh_token":
		status, answer, desc = v.refresh(clientID, clientSecret, r.PostForm.Get("refresh_token"), now)
	case "client_credentials":
		status, answer, desc = v.serviceToken(clientID, clientSecret, r.PostForm.Get("scope"), now)
	default:
		writeOAuthError(w, http.StatusBadRequest, "unsupported_grant_type", "grant_type must be refresh_token or client_credentials")
		return
	}
	if status != http.StatusOK {
		code, _ := answer["error"].(string)
		v.s.log.Debug().Str("api", apiHealthSync).Str("client_id", clientID).Str("error", code).Msg("token refused")
		if status == http.StatusUnauthorized && basic {
			w.Header().Set("WWW-Authenticate", `Basic realm="healthsync"`)
		}
		writeOAuthError(w, status, code, desc)
		return
	}
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, http.StatusOK, "application/json", answer)
}

func oauthRefusal(status int, code, desc string) (int, map[string]any, string) {
	return status, map[string]any{"error": code}, desc
}

// refresh is the refresh_token grant.
func (v *healthSyncSandbox) refresh(clientID, clientSecret, rt string, now time.Time) (int, map[string]any, string) {
	if rt == "" {
		return oauthRefusal(http.StatusBadRequest, "invalid_request", "refresh_token is required")
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.clientOK(clientID, clientSecret) {
		return oauthRefusal(http.StatusUnauthorized, "invalid_client", "Client authentication failed")
	}
	g := v.grants[rt]
	switch {
	case g == nil || g.family.clientID != clientID:
		return oauthRefusal(http.StatusBadRequest, "invalid_grant", "unknown refresh token")
	case g.family.revoked:
		return oauthRefusal(http.StatusBadRequest, "invalid_grant", "the grant was revoked")
	case g.used:
		g.family.revoked = true
		v.s.log.Info().Str("api", apiHealthSync).Str("client_id", clientID).Str("refresh_token", fingerprint(rt)).
			Msg("rotated refresh token reused; grant revoked")
		return oauthRefusal(http.StatusBadRequest, "invalid_grant", "refresh token already used; the grant is revoked")
	}
	tok, lifetime, err := v.s.issue(apiHealthSync, clientID, clientSecret, now)
	if err != nil {
		return oauthRefusal(http.StatusUnauthorized, "invalid_client", "Client authentication failed")
	}
	f := g.family
	v.addAccess(tok, hsAccess{account: f.account, scopes: f.scopes, family: f}, now, lifetime)
	answer := map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": seconds(lifetime),
		"scope": strings.Join(f.scopes, " ")}
	if !v.noRotation {
		v.retire(rt, g)
		answer["refresh_token"] = v.newRefreshToken(f)
	}
	v.s.log.Debug().Str("api", apiHealthSync).Str("client_id", clientID).Str("token", fingerprint(tok)).
		Bool("rotated", !v.noRotation).Time("expires_at", now.Add(lifetime)).Msg("token refreshed")
	return http.StatusOK, answer, ""
}

// serviceToken is the client_credentials grant of a service account.
func (v *healthSyncSandbox) serviceToken(clientID, clientSecret, scope string, now time.Time) (int, map[string]any, string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	sa, ok := v.service[clientID]
	if !ok {
		sa = hsServiceAcct{account: clientID, scopes: hsDefaultServiceScopes}
	}
	scopes := sa.scopes
	if scope != "" {
		scopes = strings.Fields(scope)
		for _, sc := range scopes {
			if !hsCovers(sa.scopes, sc) {
				return oauthRefusal(http.StatusBadRequest, "invalid_scope", "the service account lacks the scope "+sc)
			}
		}
	}
	tok, lifetime, err := v.s.issue(apiHealthSync, clientID, clientSecret, now)
	if err != nil {
		return oauthRefusal(http.StatusUnauthorized, "invalid_client", "Client authentication failed")
	}
	v.addAccess(tok, hsAccess{account: sa.account, scopes: scopes}, now, lifetime)
	v.s.log.Debug().Str("api", apiHealthSync).Str("client_id", clientID).Str("token", fingerprint(tok)).
		Time("expires_at", now.Add(lifetime)).Msg("service-account token issued")
	return http.StatusOK, map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": seconds(lifetime),
		"scope": strings.Join(scopes, " ")}, ""
}

// clientOK checks an OAuth client's credentials against the shared registry.
func (v *healthSyncSandbox) clientOK(id, secret string) bool {
	v.s.mu.Lock()
	defer v.s.mu.Unlock()
	return v.s.secretOK(id, secret)
}
