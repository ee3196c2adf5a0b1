package redox

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/vendors"
)

// Kind is the vendor kind of this adapter, as in the configuration and, by
// default, in vendors.Error.Vendor.
const Kind = "redox"

// Base URLs by region: organisations operating in Canada use BaseURLCA,
// everyone else BaseURLUS.
const (
	BaseURLUS = "https://api.redoxengine.com/"
	BaseURLCA = "https://api.ca.redoxengine.com/"
)

// TokenPath is the token endpoint, relative to the base URL.
const TokenPath = "v2/auth/token"

// AssertionType is the client_assertion_type of a JWT client assertion
// (RFC 7523 section 2.2).
const AssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// MaxAssertionLifetime is the longest an assertion may live (exp - iat), as
// SMART Backend Services allows.
const MaxAssertionLifetime = 5 * time.Minute

// Ops, as in vendors.Error.Op.
const (
	opToken = "request token"
	opSign  = "sign client assertion"
)

// ErrBadCredential reports a credential that cannot sign a client assertion
// (no key and no secret, a key that does not parse or is not supported, a
// private key without key id). Nothing was sent to Redox; the credential's
// configuration must change.
var ErrBadCredential = errors.New("credential cannot sign a client assertion")

// Options configure an Adapter.
type Options struct {
	// BaseURL is the API base. Default BaseURLUS; Canada uses BaseURLCA. A
	// missing trailing slash is added.
	BaseURL string
	// TokenURL is the token endpoint, and the aud of the assertions.
	// Default BaseURL + TokenPath.
	TokenURL string
	// Scopes are requested as the space-separated scope parameter; none by
	// default (Redox grants the API key's access).
	Scopes []string
	// AssertionLifetime is exp - iat of the assertions. Default and maximum
	// MaxAssertionLifetime (5 minutes).
	AssertionLifetime time.Duration
	// HTTPClient sends the requests. Default: a client with a 30 s timeout.
	// Token requests never follow redirects, whatever its CheckRedirect: a
	// redirect must not carry the assertion elsewhere.
	HTTPClient *http.Client
	// Clock gives the iat of the assertions and the time a token request is
	// sent. Default time.Now.
	Clock func() time.Time
	// VendorName names the vendor in errors (vendors.Error.Vendor). Default
	// Kind ("redox").
	VendorName string
}

// Adapter gets tokens from one Redox token endpoint for any number of
// credentials. It is safe for concurrent use.
type Adapter struct {
	tokenURL          string
	scope             string
	assertionLifetime time.Duration
	tokens            *vendors.Sender // never following redirects
}

var _ vendors.TokenSource = (*Adapter)(nil)

// New checks opts and makes an Adapter.
func New(opts Options) (*Adapter, error) {
	base, err := vendors.ParseBaseURL(opts.BaseURL, BaseURLUS, "use "+BaseURLUS+" or "+BaseURLCA)
	if err != nil {
		return nil, fmt.Errorf("redox: %w", err)
	}
	if opts.TokenURL == "" {
		opts.TokenURL = base.ResolveReference(&url.URL{Path: TokenPath}).String()
	} else if _, err := vendors.ParseEndpointURL(opts.TokenURL); err != nil {
		return nil, fmt.Errorf("redox: token_url %q %w", opts.TokenURL, err)
	}
	switch {
	case opts.AssertionLifetime == 0:
		opts.AssertionLifetime = MaxAssertionLifetime
	case opts.AssertionLifetime < time.Second || opts.AssertionLifetime > MaxAssertionLifetime:
		return nil, fmt.Errorf("redox: assertion_lifetime %s is not between 1s and %s", opts.AssertionLifetime, MaxAssertionLifetime)
	}
	return &Adapter{
		tokenURL:          opts.TokenURL,
		scope:             strings.Join(opts.Scopes, " "),
		assertionLifetime: opts.AssertionLifetime,
		tokens:            vendors.NewSender(cmp.Or(opts.VendorName, Kind), opts.HTTPClient, opts.Clock, ""),
	}, nil
}

// Token signs a client assertion for cred and asks Redox for an access
// token: exactly one HTTP request, never retried, and none when the
// credential cannot sign (ErrBadCredential, see the package doc).
//
// Failures are *vendors.Error: ClassRevoked (wrapping vendors.ErrRevoked)
// for a 401 or an invalid_client / unauthorized_client error (RFC 7523
// section 3.2 and SMART answer invalid_client for an assertion the server
// will not accept: unknown client or kid, bad signature, stale iat, reused
// jti); ClassRateLimited for 429 and ClassServer for 5xx, both with the
// Retry-After; ClassMalformed for a 2xx without a usable token;
// ClassNetwork and ClassTimeout when no answer came; ClassRejected for
// anything else (invalid_request, invalid_grant, 403, a redirect). Their
// messages quote at most a sanitised excerpt of an error answer, never the
// key, the secret, the assertion or a token.
//
// ClaimedLifetime is expires_in (300 s at Redox); 0 when the answer has
// none, which leaves the lifetime to the caller's max_token_lifetime. The
// granted scope is not reported.
func (a *Adapter) Token(ctx context.Context, cred vendors.Credential) (vendors.Token, error) {
	now := a.tokens.Clock()
	assertion, err := a.assertion(cred, now)
	if err != nil {
		return vendors.Token{}, err
	}
	form := url.Values{
		"grant_type":            {"client_credentials"},
		"client_assertion_type": {AssertionType},
		"client_assertion":      {assertion},
	}
	if a.scope != "" {
		form.Set("scope", a.scope)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return vendors.Token{}, fmt.Errorf("%s: build token request: %w", a.tokens.Vendor, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")

	// A 401, or a 400 refusing the client, is ClassRevoked. Anything else
	// is ClassRejected: invalid_request (Redox's answer to a malformed
	// request, sometimes with an empty description), invalid_grant (RFC 7523
	// uses it for JWT authorization grants, not for client authentication),
	// other 4xx and 3xx. A 5xx is ClassServer even with an invalid_client
	// code. Should Redox echo the secret or the assertion, neither is quoted.
	ans, verr := a.tokens.Call(req, opToken, func(ans vendors.Answer) *vendors.Error {
		return a.tokens.OAuthStatusError(opToken, ans, cred.Scrubber(secret.New(assertion)))
	})
	if verr != nil {
		return vendors.Token{}, verr
	}
	tok, verr := a.tokens.ParseToken(opToken, ans, now, vendors.TokenRules{})
	if verr != nil {
		return vendors.Token{}, verr
	}
	return tok, nil
}
