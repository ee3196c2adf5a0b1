package sandbox

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Redox OAuth API keys live under RedoxPath, so a Redox base URL is the
// server's URL followed by RedoxPath:
//
//   - POST v2/auth/token: client credentials with a JWT client assertion
//     (RFC 7523, SMART Backend Services), form-encoded: grant_type=
//     client_credentials, client_assertion_type=urn:ietf:params:oauth:
//     client-assertion-type:jwt-bearer, client_assertion=<JWT>, scope
//     optional and echoed. A missing or wrong form field gets 400
//     invalid_request (unsupported_grant_type for another grant), with
//     Redox's error descriptions. The assertion is verified as Redox does,
//     and any failure gets 401 invalid_client with the reason as
//     error_description: alg RS384 or ES384 with a kid naming a public key
//     registered for the client (RegisterRedoxClient, AddRedoxKey), or
//     HS384 signed with the client's secret (AddClient; kid optional);
//     every other alg, "none" included, is refused. typ "JWT"; iss = sub =
//     a registered client (and = client_id when the form has one); aud =
//     this token URL as the request reached it (scheme and Host) or one
//     given to AddRedoxAudience; a jti never presented before by the
//     client (remembered until the assertion expires); iat within the last
//     RedoxMaxAssertionLifetime, with RedoxClockSkew both ways; exp in the
//     future (same skew) and at most RedoxMaxAssertionLifetime after iat;
//     nbf, if any, not in the future. Success answers {"access_token",
//     "token_type":"Bearer","expires_in"} for a token living
//     min(RedoxTokenLifetime, RealTokenLifetime), as expires_in says.
//     Every request is counted (TokenCalls) under the assertion's iss, and
//     recorded, decoded, in RedoxAssertions.
//   - GET fhir/R4/Patient: as under OAuth2Path, with a token of this API.
//
// A client is one of the shared registry (AddClient, DeleteClient): deleting
// it refuses its assertions and revokes its tokens at once; keys registered
// before it was deleted do not come back when it is added again. Removing a
// key (RemoveRedoxKey, or a RegisterRedoxClient without it) refuses the
// assertions signed with it from then on; the tokens they got live on.
// Faults for EndpointToken and EndpointPatient apply as everywhere.
const RedoxPath = "/redox/"

// RedoxFHIRPath is the base of the Redox FHIR API in the sandbox.
const RedoxFHIRPath = RedoxPath + "fhir/R4/"

const (
	// RedoxTokenLifetime is how long a Redox access token lives (unless
	// RealTokenLifetime is shorter).
	RedoxTokenLifetime = 5 * time.Minute
	// RedoxMaxAssertionLifetime bounds both how old an assertion's iat may
	// be and how far its exp may be after iat.
	RedoxMaxAssertionLifetime = 5 * time.Minute
	// RedoxClockSkew is the clock difference Redox tolerates on iat and exp.
	RedoxClockSkew = 10 * time.Second
)

const (
	apiRedox           = "redox"
	redoxTokenPath     = RedoxPath + "v2/auth/token"
	redoxAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
	// redoxKeyNotFound is Redox's description of an unknown client or kid.
	redoxKeyNotFound = "Public key not found, check client_id, kid and Redox dashboard settings"
	// redoxMinRSABits is the smallest RSA key RS384 accepts.
	redoxMinRSABits = 2048
)

// redoxAlgorithms are the algorithms Redox verifies.
var redoxAlgorithms = []jose.SignatureAlgorithm{jose.RS384, jose.ES384, jose.HS384}

// RedoxAssertion is a client assertion presented to the Redox token
// endpoint, as decoded before verification, and what came of it.
type RedoxAssertion struct {
	// At is when it came, by the sandbox clock.
	At time.Time
	// Header.
	Algorithm, KeyID, Type string
	// Claims; times are zero when absent.
	Issuer, Subject string
	Audience        []string
	ID              string
	IssuedAt        time.Time
	Expiry          time.Time
	NotBefore       time.Time
	// Scope is the form's scope parameter.
	Scope string
	// Refusal is why it was refused (the error_description), "" when a
	// token was issued.
	Refusal string
}

// redoxSandbox emulates Redox OAuth API keys (JWT client assertions).
type redoxSandbox struct {
	s    *Sandbox
	fhir flavor

	mu         sync.Mutex
	keys       map[string]redoxKeySet // by client id
	audiences  map[string]bool        // accepted aud values besides the request's own URL
	jtis       map[string]time.Time   // client id + "\x00" + jti → when to forget it
	jtiOrder   []redoxJTI             // jtis in the order seen; jtiOrder[jtiHead:] still in jtis
	jtiHead    int
	assertions map[string][]RedoxAssertion // by iss
}

// redoxKeySet is a client's public keys, valid while the client keeps the
// generation it had when they were registered.
type redoxKeySet struct {
	gen  uint64
	keys map[string]jose.JSONWebKey // by kid
}

type redoxJTI struct {
	key    string
	forget time.Time
}

func newRedoxSandbox(s *Sandbox) *redoxSandbox {
	return &redoxSandbox{
		s:          s,
		fhir:       flavor{api: apiRedox, base: RedoxFHIRPath},
		keys:       make(map[string]redoxKeySet),
		audiences:  make(map[string]bool),
		jtis:       make(map[string]time.Time),
		assertions: make(map[string][]RedoxAssertion),
	}
}

// routes registers the emulator's endpoints.
func (v *redoxSandbox) routes(mux *http.ServeMux) {
	mux.HandleFunc("POST "+redoxTokenPath, v.token)
	mux.HandleFunc("GET "+RedoxFHIRPath+"Patient", v.s.patient(v.fhir))
}

// RegisterRedoxClient sets the public keys of a Redox OAuth API key to those
// of jwks, a JWK Set {"keys":[...]} as a JWKS URL serves it, replacing any it
// had. The client is added to the registry if it is not there (without a
// secret: AddClient sets the HS384 one). Each key must be a public RSA
// (2048 bits or more) or EC P-384 key with a kid unique in the set; its alg,
// if given, RS384 or ES384.
func (s *Sandbox) RegisterRedoxClient(clientID string, jwks []byte) error {
	if clientID == "" {
		return errors.New("sandbox: redox client id is empty")
	}
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(jwks, &set); err != nil || set.Keys == nil {
		return errors.New(`sandbox: redox JWKS is not a JWK Set {"keys":[...]}`)
	}
	keys := make(map[string]jose.JSONWebKey, len(set.Keys))
	for i, raw := range set.Keys {
		jwk, err := parseRedoxKey(raw, "")
		if err != nil {
			return fmt.Errorf("sandbox: redox JWKS key %d: %w", i, err)
		}
		if _, dup := keys[jwk.KeyID]; dup {
			return fmt.Errorf("sandbox: redox JWKS: kid %q appears twice", jwk.KeyID)
		}
		keys[jwk.KeyID] = jwk
	}
	gen := s.ensureClient(clientID)
	v := s.redox
	v.mu.Lock()
	v.keys[clientID] = redoxKeySet{gen: gen, keys: keys}
	v.mu.Unlock()
	s.log.Info().Str("api", apiRedox).Str("client_id", clientID).Int("keys", len(keys)).Msg("redox keys registered")
	return nil
}

// AddRedoxKey adds a public key (a JWK, with the same requirements as in
// RegisterRedoxClient) to a Redox OAuth API key's, or replaces the one with
// its kid. kid may be "" when the JWK has one, and must match it when both
// are given. The client is added to the registry if it is not there.
func (s *Sandbox) AddRedoxKey(clientID, kid string, publicJWK json.RawMessage) error {
	if clientID == "" {
		return errors.New("sandbox: redox client id is empty")
	}
	jwk, err := parseRedoxKey(publicJWK, kid)
	if err != nil {
		return fmt.Errorf("sandbox: redox key: %w", err)
	}
	gen := s.ensureClient(clientID)
	v := s.redox
	v.mu.Lock()
	set, ok := v.keys[clientID]
	if !ok || set.gen != gen {
		set = redoxKeySet{gen: gen, keys: make(map[string]jose.JSONWebKey)}
	}
	set.keys[jwk.KeyID] = jwk
	v.keys[clientID] = set
	v.mu.Unlock()
	s.log.Info().Str("api", apiRedox).Str("client_id", clientID).Str("kid", jwk.KeyID).Msg("redox key added")
	return nil
}

// RemoveRedoxKey removes a public key of a Redox OAuth API key: assertions
// signed with it are refused from now on. Tokens they got stay valid.
func (s *Sandbox) RemoveRedoxKey(clientID, kid string) {
	v := s.redox
	v.mu.Lock()
	_, ok := v.keys[clientID].keys[kid]
	delete(v.keys[clientID].keys, kid)
	v.mu.Unlock()
	s.log.Info().Str("api", apiRedox).Str("client_id", clientID).Str("kid", kid).Bool("existed", ok).Msg("redox key removed")
}

// RedoxKeyIDs lists the kids of the public keys a Redox client has, sorted.
func (s *Sandbox) RedoxKeyIDs(clientID string) []string {
	gen, ok := s.clientGen(clientID)
	v := s.redox
	v.mu.Lock()
	defer v.mu.Unlock()
	set := v.keys[clientID]
	if !ok || set.gen != gen {
		return nil
	}
	ids := make([]string, 0, len(set.keys))
	for kid := range set.keys {
		ids = append(ids, kid)
	}
	slices.Sort(ids)
	return ids
}

// AddRedoxAudience makes tokenURL an accepted aud of the assertions, besides
// the token URL as each request reaches the sandbox: for a sandbox behind a
// proxy, whose clients sign for the public URL.
func (s *Sandbox) AddRedoxAudience(tokenURL string) {
	v := s.redox
	v.mu.Lock()
	v.audiences[tokenURL] = true
	v.mu.Unlock()
}

// RedoxAssertions lists the assertions presented with clientID as iss (""
// for those without a readable iss), oldest first, the most recent 10,000.
func (s *Sandbox) RedoxAssertions(clientID string) []RedoxAssertion {
	v := s.redox
	v.mu.Lock()
	defer v.mu.Unlock()
	if list := v.assertions[clientID]; list != nil {
		return tail(list)
	}
	return nil
}

// ensureClient adds clientID to the registry, without a secret, if it is
// not there, and returns its generation.
func (s *Sandbox) ensureClient(clientID string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.clients[clientID]
	if !ok {
		s.generation++
		c.gen = s.generation
		s.clients[clientID] = c
	}
	return c.gen
}

// clientGen returns a registered client's generation.
func (s *Sandbox) clientGen(clientID string) (uint64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.clients[clientID]
	return c.gen, ok
}

// parseRedoxKey reads a public JWK Redox can verify with. kid, when not
// empty, is the key's kid.
func parseRedoxKey(raw []byte, kid string) (jose.JSONWebKey, error) {
	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON(raw); err != nil {
		return jwk, errors.New("not a JWK")
	}
	switch {
	case kid != "" && jwk.KeyID != "" && kid != jwk.KeyID:
		return jwk, fmt.Errorf("kid %q does not match the JWK's kid %q", kid, jwk.KeyID)
	case kid != "":
		jwk.KeyID = kid
	case jwk.KeyID == "":
		return jwk, errors.New("the JWK has no kid")
	}
	if !jwk.IsPublic() {
		return jwk, fmt.Errorf("kid %q is not a public key", jwk.KeyID)
	}
	want := redoxKeyAlgorithm(jwk)
	switch {
	case want == "":
		return jwk, fmt.Errorf("kid %q is neither an RSA key of %d bits or more nor an EC P-384 key", jwk.KeyID, redoxMinRSABits)
	case jwk.Algorithm != "" && jwk.Algorithm != string(want):
		return jwk, fmt.Errorf("kid %q has alg %q; its key signs %s", jwk.KeyID, jwk.Algorithm, want)
	}
	return jwk, nil
}

// redoxKeyAlgorithm is the algorithm a public key verifies, "" if none
// Redox accepts.
func redoxKeyAlgorithm(jwk jose.JSONWebKey) jose.SignatureAlgorithm {
	switch k := jwk.Key.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() >= redoxMinRSABits {
			return jose.RS384
		}
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P384() {
			return jose.ES384
		}
	}
	return ""
}
