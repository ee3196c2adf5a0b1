package sandbox_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/internal/testenv"
	"github.com/tokenrelay/tokenrelay/vendors/sandbox"
)

// The names of this file start with rdx: the package's other test files
// are written by others at the same time.

const (
	rdxClient = "rdx-client-1"
	// rdxSecret is the client's HS384 secret: at least 48 bytes.
	rdxSecret = "rdx-HS384-secret-0123456789abcdef0123456789abcdef"
	rdxRSAKid = "rsa-1"
	rdxECKid  = "ec-1"
)

// rdxT0 is when the clock of rdxSetup starts.
var rdxT0 = t0

// Keys are made once: RSA key generation is slow under the race detector.
var (
	rdxRSA      = sync.OnceValue(func() *rsa.PrivateKey { return rdxMust(rsa.GenerateKey(rand.Reader, 2048)) })
	rdxOtherRSA = sync.OnceValue(func() *rsa.PrivateKey { return rdxMust(rsa.GenerateKey(rand.Reader, 2048)) })
	rdxEC       = sync.OnceValue(func() *ecdsa.PrivateKey { return rdxMust(ecdsa.GenerateKey(elliptic.P384(), rand.Reader)) })
)

func rdxMust[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// rdxJWK is the JWK of key (public or private, as given).
func rdxJWK(t *testing.T, key any, kid, alg string) json.RawMessage {
	t.Helper()
	b, err := jose.JSONWebKey{Key: key, KeyID: kid, Algorithm: alg}.MarshalJSON()
	require.NoError(t, err)
	return b
}

type rdxEnv struct {
	sb    *sandbox.Sandbox
	srv   *httptest.Server
	clock *testenv.Clock
}

// rdxSetup starts a sandbox whose client rdxClient has a secret and an RSA
// and an EC key.
func rdxSetup(t *testing.T, opts sandbox.Options) rdxEnv {
	t.Helper()
	e := rdxEnv(start(t, opts))
	e.sb.AddClient(rdxClient, rdxSecret)
	require.NoError(t, e.sb.AddRedoxKey(rdxClient, rdxRSAKid, rdxJWK(t, &rdxRSA().PublicKey, "", "")))
	require.NoError(t, e.sb.AddRedoxKey(rdxClient, "", rdxJWK(t, &rdxEC().PublicKey, rdxECKid, "ES384")))
	return e
}

func (e rdxEnv) tokenURL() string { return e.srv.URL + sandbox.RedoxPath + "v2/auth/token" }

// claims are good claims for rdxClient at the sandbox's time.
func (e rdxEnv) claims() jwt.Claims {
	now := e.clock.Now()
	return jwt.Claims{
		Issuer: rdxClient, Subject: rdxClient, Audience: jwt.Audience{e.tokenURL()},
		ID: rand.Text(), IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(5 * time.Minute)),
	}
}

// rdxSign signs claims; typ "" leaves the typ header out.
func rdxSign(t *testing.T, alg jose.SignatureAlgorithm, key any, kid, typ string, claims any) string {
	t.Helper()
	opts := &jose.SignerOptions{}
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	require.NoError(t, err)
	s, err := jwt.Signed(signer).Claims(claims).Serialize()
	require.NoError(t, err)
	return s
}

// rdxUnsigned is an alg "none" JWT of claims.
func rdxUnsigned(t *testing.T, claims any) string {
	t.Helper()
	payload, err := json.Marshal(claims)
	require.NoError(t, err)
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"none","typ":"JWT","kid":"`+rdxRSAKid+`"}`)) + "." + enc(payload) + "."
}

func rdxForm(assertion string) url.Values {
	return url.Values{
		"grant_type":            {"client_credentials"},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
		"client_assertion":      {assertion},
	}
}

// post sends a token request; its body is closed at the end of the test.
func (e rdxEnv) post(t *testing.T, form url.Values, contentType string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.tokenURL(), strings.NewReader(form.Encode()))
	require.NoError(t, err)
	req.Header.Set("Content-Type", contentType)
	resp, err := e.srv.Client().Do(req)
	require.NoError(t, err)
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func (e rdxEnv) token(t *testing.T, assertion string) *http.Response {
	t.Helper()
	return e.post(t, rdxForm(assertion), "application/x-www-form-urlencoded")
}

func (e rdxEnv) patient(t *testing.T, path, token string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, e.srv.URL+path+"Patient", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/fhir+json")
	resp, err := e.srv.Client().Do(req)
	require.NoError(t, err)
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

type rdxAnswer struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
	Scope       string `json:"scope"`
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

func rdxDecode(t *testing.T, resp *http.Response) rdxAnswer {
	t.Helper()
	var a rdxAnswer
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&a))
	return a
}

func TestRedoxToken(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		sign func(t *testing.T, c jwt.Claims) string
		alg  string
		kid  string
	}{
		{"RS384", func(t *testing.T, c jwt.Claims) string {
			return rdxSign(t, jose.RS384, rdxRSA(), rdxRSAKid, "JWT", c)
		}, "RS384", rdxRSAKid},
		{"ES384", func(t *testing.T, c jwt.Claims) string {
			return rdxSign(t, jose.ES384, rdxEC(), rdxECKid, "JWT", c)
		}, "ES384", rdxECKid},
		{"HS384 without kid", func(t *testing.T, c jwt.Claims) string {
			return rdxSign(t, jose.HS384, []byte(rdxSecret), "", "JWT", c)
		}, "HS384", ""},
		{"HS384 with any kid", func(t *testing.T, c jwt.Claims) string {
			return rdxSign(t, jose.HS384, []byte(rdxSecret), "whatever", "JWT", c)
		}, "HS384", "whatever"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := rdxSetup(t, sandbox.Options{})
			c := e.claims()
			form := rdxForm(tt.sign(t, c))
			form.Set("scope", "system/*.read")
			resp := e.post(t, form, "application/x-www-form-urlencoded")
			require.Equal(t, http.StatusOK, resp.StatusCode)
			require.Equal(t, "no-store", resp.Header.Get("Cache-Control"))
			a := rdxDecode(t, resp)
			require.Equal(t, rdxAnswer{AccessToken: a.AccessToken, TokenType: "Bearer", ExpiresIn: 300, Scope: "system/*.read"}, a)
			require.Equal(t, []string{a.AccessToken}, e.sb.IssuedTokens(rdxClient))
			require.Equal(t, 1, e.sb.TokenCalls(rdxClient))
			require.Equal(t, []sandbox.RedoxAssertion{{
				At: rdxT0, Algorithm: tt.alg, KeyID: tt.kid, Type: "JWT", Issuer: rdxClient, Subject: rdxClient,
				Audience: []string{e.tokenURL()}, ID: c.ID, IssuedAt: rdxT0, Expiry: rdxT0.Add(5 * time.Minute),
				Scope: "system/*.read",
			}}, e.sb.RedoxAssertions(rdxClient))

			// The token works on the Redox API only, for 5 minutes (not
			// the 15 of RealTokenLifetime).
			require.Equal(t, http.StatusOK, e.patient(t, sandbox.RedoxFHIRPath, a.AccessToken).StatusCode)
			require.Equal(t, http.StatusUnauthorized, e.patient(t, sandbox.OAuth2Path, a.AccessToken).StatusCode)
			e.clock.Advance(5*time.Minute - time.Second)
			require.Equal(t, http.StatusOK, e.patient(t, sandbox.RedoxFHIRPath, a.AccessToken).StatusCode)
			e.clock.Advance(time.Second)
			require.Equal(t, http.StatusUnauthorized, e.patient(t, sandbox.RedoxFHIRPath, a.AccessToken).StatusCode)
			require.Equal(t, 1, e.sb.ExpiredUsesBy(rdxClient))
		})
	}
}

func TestRedoxTokenLifetimeFollowsRealLifetime(t *testing.T) {
	t.Parallel()
	e := rdxSetup(t, sandbox.Options{RealTokenLifetime: time.Minute})
	resp := e.token(t, rdxSign(t, jose.RS384, rdxRSA(), rdxRSAKid, "JWT", e.claims()))
	require.Equal(t, http.StatusOK, resp.StatusCode)
	a := rdxDecode(t, resp)
	require.EqualValues(t, 60, a.ExpiresIn, "expires_in says the truth")
	e.clock.Advance(time.Minute)
	require.Equal(t, http.StatusUnauthorized, e.patient(t, sandbox.RedoxFHIRPath, a.AccessToken).StatusCode)
}

func TestRedoxAssertionRefusals(t *testing.T) {
	t.Parallel()
	rs := func(t *testing.T, c any) string { return rdxSign(t, jose.RS384, rdxRSA(), rdxRSAKid, "JWT", c) }
	edit := func(f func(*jwt.Claims, time.Time)) func(*testing.T, rdxEnv) string {
		return func(t *testing.T, e rdxEnv) string {
			c := e.claims()
			f(&c, e.clock.Now())
			return rs(t, c)
		}
	}
	date := jwt.NewNumericDate
	tests := []struct {
		name      string
		assertion func(t *testing.T, e rdxEnv) string
		clientID  string // the form's client_id, if any
		want      string
	}{
		{"alg none", func(t *testing.T, e rdxEnv) string { return rdxUnsigned(t, e.claims()) }, "", `alg header value "none"`},
		{"HS256", func(t *testing.T, e rdxEnv) string {
			return rdxSign(t, jose.HS256, []byte(rdxSecret), "", "JWT", e.claims())
		}, "", `alg header value "HS256"`},
		{"RS256", func(t *testing.T, e rdxEnv) string {
			return rdxSign(t, jose.RS256, rdxRSA(), rdxRSAKid, "JWT", e.claims())
		}, "", `alg header value "RS256"`},
		{"not a JWT", func(*testing.T, rdxEnv) string { return "not-a-jwt" }, "", "not a compact signed JWT"},
		{"no typ", func(t *testing.T, e rdxEnv) string {
			return rdxSign(t, jose.RS384, rdxRSA(), rdxRSAKid, "", e.claims())
		}, "", "typ header"},
		{"no kid", func(t *testing.T, e rdxEnv) string {
			return rdxSign(t, jose.RS384, rdxRSA(), "", "JWT", e.claims())
		}, "", "JWT header kid property is required"},
		{"unknown kid", func(t *testing.T, e rdxEnv) string {
			return rdxSign(t, jose.RS384, rdxRSA(), "rsa-0", "JWT", e.claims())
		}, "", "Public key not found"},
		{"wrong key", func(t *testing.T, e rdxEnv) string {
			return rdxSign(t, jose.RS384, rdxOtherRSA(), rdxRSAKid, "JWT", e.claims())
		}, "", "Signature verification failed"},
		{"EC signature with the RSA kid", func(t *testing.T, e rdxEnv) string {
			return rdxSign(t, jose.ES384, rdxEC(), rdxRSAKid, "JWT", e.claims())
		}, "", `kid "rsa-1" does not verify ES384`},
		{"wrong secret", func(t *testing.T, e rdxEnv) string {
			return rdxSign(t, jose.HS384, []byte(strings.ToUpper(rdxSecret)), "", "JWT", e.claims())
		}, "", "Signature verification failed"},
		{"unknown client", edit(func(c *jwt.Claims, _ time.Time) { c.Issuer, c.Subject = "nobody", "nobody" }), "", "Public key not found"},
		{"no iss", edit(func(c *jwt.Claims, _ time.Time) { c.Issuer = "" }), "", "iss claim"},
		{"sub is not iss", edit(func(c *jwt.Claims, _ time.Time) { c.Subject = "someone-else" }), "", "sub claim"},
		{"client_id is not iss", edit(func(*jwt.Claims, time.Time) {}), "someone-else", "client_id does not match"},
		{"aud of the real Redox", edit(func(c *jwt.Claims, _ time.Time) {
			c.Audience = jwt.Audience{"https://api.redoxengine.com/v2/auth/token"}
		}), "", "aud claim"},
		{"no aud", edit(func(c *jwt.Claims, _ time.Time) { c.Audience = nil }), "", "aud claim"},
		{"no jti", edit(func(c *jwt.Claims, _ time.Time) { c.ID = "" }), "", "jti claim"},
		{"no iat", edit(func(c *jwt.Claims, _ time.Time) { c.IssuedAt = nil }), "", "iat is required"},
		{"stale iat", edit(func(c *jwt.Claims, now time.Time) {
			c.IssuedAt, c.Expiry = date(now.Add(-5*time.Minute-11*time.Second)), date(now.Add(time.Minute))
		}), "", "stale iat"},
		{"iat in the future", edit(func(c *jwt.Claims, now time.Time) { c.IssuedAt = date(now.Add(11 * time.Second)) }), "", "iat is in the future"},
		{"no exp", edit(func(c *jwt.Claims, _ time.Time) { c.Expiry = nil }), "", "exp is required"},
		{"expired", edit(func(c *jwt.Claims, now time.Time) {
			c.IssuedAt, c.Expiry = date(now.Add(-time.Minute)), date(now.Add(-10*time.Second))
		}), "", "has expired"},
		{"exp too far", edit(func(c *jwt.Claims, now time.Time) { c.Expiry = date(now.Add(5*time.Minute + time.Second)) }), "", "at most 5 minutes after iat"},
		{"nbf in the future", edit(func(c *jwt.Claims, now time.Time) { c.NotBefore = date(now.Add(time.Minute)) }), "", "nbf claim"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := rdxSetup(t, sandbox.Options{})
			form := rdxForm(tt.assertion(t, e))
			if tt.clientID != "" {
				form.Set("client_id", tt.clientID)
			}
			resp := e.post(t, form, "application/x-www-form-urlencoded")
			require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
			require.NotEmpty(t, resp.Header.Get("WWW-Authenticate"))
			a := rdxDecode(t, resp)
			require.Equal(t, "invalid_client", a.Error)
			require.Contains(t, a.Description, tt.want)
			require.Equal(t, 1, e.sb.TotalTokenCalls())
			require.Empty(t, e.sb.IssuedTokens(rdxClient))
		})
	}
}

func TestRedoxAssertionLimitsAccepted(t *testing.T) {
	t.Parallel()
	date := jwt.NewNumericDate
	tests := []struct {
		name string
		edit func(c *jwt.Claims, now time.Time)
	}{
		{"iat 10 s ahead", func(c *jwt.Claims, now time.Time) {
			c.IssuedAt, c.Expiry = date(now.Add(10*time.Second)), date(now.Add(5*time.Minute+10*time.Second))
		}},
		{"iat 4m59s old", func(c *jwt.Claims, now time.Time) {
			c.IssuedAt, c.Expiry = date(now.Add(-4*time.Minute-59*time.Second)), date(now.Add(time.Second))
		}},
		{"exp 9 s ago", func(c *jwt.Claims, now time.Time) {
			c.IssuedAt, c.Expiry = date(now.Add(-time.Minute)), date(now.Add(-9*time.Second))
		}},
		{"aud among several", func(c *jwt.Claims, _ time.Time) {
			c.Audience = append(jwt.Audience{"https://x.example/"}, c.Audience...)
		}},
		{"nbf now", func(c *jwt.Claims, now time.Time) { c.NotBefore = date(now) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := rdxSetup(t, sandbox.Options{})
			c := e.claims()
			tt.edit(&c, e.clock.Now())
			resp := e.token(t, rdxSign(t, jose.ES384, rdxEC(), rdxECKid, "jwt", c))
			require.Equal(t, http.StatusOK, resp.StatusCode, "%+v", rdxDecode(t, resp))
		})
	}
}

func TestRedoxJTIReplay(t *testing.T) {
	t.Parallel()
	e := rdxSetup(t, sandbox.Options{})
	c := e.claims()
	assertion := rdxSign(t, jose.HS384, []byte(rdxSecret), "", "JWT", c)
	require.Equal(t, http.StatusOK, e.token(t, assertion).StatusCode)

	resp := e.token(t, assertion)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	require.Contains(t, rdxDecode(t, resp).Description, "already used")

	// The same jti signed anew is still used up; another client's is its own.
	require.Equal(t, http.StatusUnauthorized, e.token(t, rdxSign(t, jose.RS384, rdxRSA(), rdxRSAKid, "JWT", c)).StatusCode)
	e.sb.AddClient("rdx-client-2", rdxSecret)
	c.Issuer, c.Subject = "rdx-client-2", "rdx-client-2"
	require.Equal(t, http.StatusOK, e.token(t, rdxSign(t, jose.HS384, []byte(rdxSecret), "", "JWT", c)).StatusCode)

	// Replayed once expired, it is refused as expired.
	e.clock.Advance(6 * time.Minute)
	resp = e.token(t, assertion)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	require.Contains(t, rdxDecode(t, resp).Description, "stale iat")

	got := e.sb.RedoxAssertions(rdxClient)
	require.Len(t, got, 4)
	require.Equal(t, []string{"", "Unexpected jti claim value: this jti was already used"}, []string{got[0].Refusal, got[1].Refusal})
}

func TestRedoxBadRequests(t *testing.T) {
	t.Parallel()
	type form = map[string]string
	tests := []struct {
		name        string
		contentType string
		fields      form
		code, want  string
	}{
		{"json body", "application/json", nil, "invalid_request", "x-www-form-urlencoded content-type required"},
		{"no grant_type", "", form{"grant_type": ""}, "invalid_request", "Missing grant_type parameter"},
		{"password grant", "", form{"grant_type": "password"}, "unsupported_grant_type", "should equal 'client_credentials'"},
		{"no assertion type", "", form{"client_assertion_type": ""}, "invalid_request", "Missing client assertion type"},
		{"saml assertion type", "", form{"client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:saml2-bearer"},
			"invalid_request", "Invalid client assertion type"},
		{"no assertion", "", form{"client_assertion": ""}, "invalid_request", "Missing client assertion"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := rdxSetup(t, sandbox.Options{})
			f := rdxForm(rdxSign(t, jose.RS384, rdxRSA(), rdxRSAKid, "JWT", e.claims()))
			for k, v := range tt.fields {
				f.Set(k, v)
			}
			ct := tt.contentType
			if ct == "" {
				ct = "application/x-www-form-urlencoded"
			}
			resp := e.post(t, f, ct)
			require.Equal(t, http.StatusBadRequest, resp.StatusCode)
			a := rdxDecode(t, resp)
			require.Equal(t, tt.code, a.Error)
			require.Contains(t, a.Description, tt.want)
			require.Equal(t, 1, e.sb.TotalTokenCalls())
		})
	}
}

func TestRedoxKeyRegistry(t *testing.T) {
	t.Parallel()
	e := rdxSetup(t, sandbox.Options{})
	require.Equal(t, []string{rdxECKid, rdxRSAKid}, e.sb.RedoxKeyIDs(rdxClient))
	rsaPub := rdxJWK(t, &rdxRSA().PublicKey, rdxRSAKid, "")
	set := func(keys ...json.RawMessage) []byte {
		b, err := json.Marshal(map[string]any{"keys": keys})
		require.NoError(t, err)
		return b
	}
	small := rdxMust(rsa.GenerateKey(rand.Reader, 1024))
	p256 := rdxMust(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
	bad := []struct {
		name string
		jwks []byte
		want string
	}{
		{"not a set", []byte(`[{"kty":"RSA"}]`), "not a JWK Set"},
		{"no keys member", []byte(`{}`), "not a JWK Set"},
		{"not a JWK", set(json.RawMessage(`{"kty":"XYZ","kid":"a"}`)), "not a JWK"},
		{"private key", set(rdxJWK(t, rdxRSA(), "priv", "")), "not a public key"},
		{"symmetric key", set(rdxJWK(t, []byte(rdxSecret), "oct", "")), "not a public key"},
		{"no kid", set(rdxJWK(t, &rdxRSA().PublicKey, "", "")), "no kid"},
		{"kid twice", set(rsaPub, rdxJWK(t, &rdxEC().PublicKey, rdxRSAKid, "")), "appears twice"},
		{"small RSA", set(rdxJWK(t, &small.PublicKey, "small", "")), "neither"},
		{"P-256", set(rdxJWK(t, &p256.PublicKey, "p256", "")), "neither"},
		{"alg mismatch", set(rdxJWK(t, &rdxRSA().PublicKey, "r", "ES384")), `has alg "ES384"`},
	}
	for _, tt := range bad {
		require.ErrorContains(t, e.sb.RegisterRedoxClient(rdxClient, tt.jwks), tt.want, tt.name)
	}
	require.ErrorContains(t, e.sb.AddRedoxKey(rdxClient, "other", rsaPub), "does not match")
	require.ErrorContains(t, e.sb.RegisterRedoxClient("", set()), "client id is empty")
	require.Equal(t, []string{rdxECKid, rdxRSAKid}, e.sb.RedoxKeyIDs(rdxClient), "refused registrations change nothing")

	// Registering a set replaces the keys.
	require.NoError(t, e.sb.RegisterRedoxClient(rdxClient, set(rsaPub)))
	require.Equal(t, []string{rdxRSAKid}, e.sb.RedoxKeyIDs(rdxClient))
	resp := e.token(t, rdxSign(t, jose.ES384, rdxEC(), rdxECKid, "JWT", e.claims()))
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	require.Contains(t, rdxDecode(t, resp).Description, "Public key not found")
	require.Equal(t, http.StatusOK, e.token(t, rdxSign(t, jose.RS384, rdxRSA(), rdxRSAKid, "JWT", e.claims())).StatusCode)

	// A removed key is refused, the tokens it got live on.
	resp = e.token(t, rdxSign(t, jose.RS384, rdxRSA(), rdxRSAKid, "JWT", e.claims()))
	require.Equal(t, http.StatusOK, resp.StatusCode)
	tok := rdxDecode(t, resp).AccessToken
	e.sb.RemoveRedoxKey(rdxClient, rdxRSAKid)
	require.Empty(t, e.sb.RedoxKeyIDs(rdxClient))
	require.Equal(t, http.StatusUnauthorized, e.token(t, rdxSign(t, jose.RS384, rdxRSA(), rdxRSAKid, "JWT", e.claims())).StatusCode)
	require.Equal(t, http.StatusOK, e.patient(t, sandbox.RedoxFHIRPath, tok).StatusCode)

	// A client deleted and added again has lost its keys; its tokens are revoked.
	require.NoError(t, e.sb.AddRedoxKey(rdxClient, rdxRSAKid, rsaPub))
	e.sb.DeleteClient(rdxClient)
	require.Equal(t, http.StatusUnauthorized, e.patient(t, sandbox.RedoxFHIRPath, tok).StatusCode)
	require.Equal(t, 1, e.sb.RevokedUses())
	e.sb.AddClient(rdxClient, rdxSecret)
	require.Empty(t, e.sb.RedoxKeyIDs(rdxClient))
	require.Equal(t, http.StatusUnauthorized, e.token(t, rdxSign(t, jose.RS384, rdxRSA(), rdxRSAKid, "JWT", e.claims())).StatusCode)

	// Registering a client that was never added adds it, without a secret.
	require.NoError(t, e.sb.RegisterRedoxClient("rdx-new", set(rsaPub)))
	require.Contains(t, e.sb.Clients(), "rdx-new")
	c := e.claims()
	c.Issuer, c.Subject = "rdx-new", "rdx-new"
	require.Equal(t, http.StatusOK, e.token(t, rdxSign(t, jose.RS384, rdxRSA(), rdxRSAKid, "JWT", c)).StatusCode)
	c.ID = rand.Text()
	resp = e.token(t, rdxSign(t, jose.HS384, []byte(rdxSecret), "", "JWT", c))
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	require.Contains(t, rdxDecode(t, resp).Description, "has none")
}

func TestRedoxPublicAudience(t *testing.T) {
	t.Parallel()
	e := rdxSetup(t, sandbox.Options{})
	const public = "https://sandbox.example/redox/v2/auth/token"
	c := e.claims()
	c.Audience = jwt.Audience{public}
	require.Equal(t, http.StatusUnauthorized, e.token(t, rdxSign(t, jose.RS384, rdxRSA(), rdxRSAKid, "JWT", c)).StatusCode)
	e.sb.AddRedoxAudience(public)
	c.ID = rand.Text()
	require.Equal(t, http.StatusOK, e.token(t, rdxSign(t, jose.RS384, rdxRSA(), rdxRSAKid, "JWT", c)).StatusCode)
}

func TestRedoxFaults(t *testing.T) {
	t.Parallel()
	e := rdxSetup(t, sandbox.Options{})
	require.NoError(t, e.sb.Inject(sandbox.Fault{ClientID: rdxClient, Kind: sandbox.FaultRateLimited, RetryAfter: 7 * time.Second, Times: 1}))
	resp := e.token(t, rdxSign(t, jose.RS384, rdxRSA(), rdxRSAKid, "JWT", e.claims()))
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	require.Equal(t, "7", resp.Header.Get("retry-after"))
	require.Equal(t, 1, e.sb.TokenCalls(rdxClient), "a faulted request counts under the assertion's iss")
	require.Empty(t, e.sb.RedoxAssertions(rdxClient), "the assertion was not looked at")

	resp = e.token(t, rdxSign(t, jose.RS384, rdxRSA(), rdxRSAKid, "JWT", e.claims()))
	require.Equal(t, http.StatusOK, resp.StatusCode)
	tok := rdxDecode(t, resp).AccessToken
	require.NoError(t, e.sb.Inject(sandbox.Fault{Endpoint: sandbox.EndpointPatient, ClientID: rdxClient, Kind: sandbox.FaultServerError, Status: 503}))
	resp = e.patient(t, sandbox.RedoxFHIRPath, tok)
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	require.Equal(t, "application/fhir+json", resp.Header.Get("Content-Type"))
}
