package redox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
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

// maxBody bounds how much of a token answer is read.
const maxBody = 1 << 20

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
	tokens            *http.Client // never following redirects
	clock             func() time.Time
	vendor            string
}

var _ vendors.TokenSource = (*Adapter)(nil)

// New checks opts and makes an Adapter.
func New(opts Options) (*Adapter, error) {
	if opts.BaseURL == "" {
		opts.BaseURL = BaseURLUS
	}
	if !strings.HasSuffix(opts.BaseURL, "/") {
		opts.BaseURL += "/"
	}
	base, err := checkURL(opts.BaseURL)
	if err != nil {
		return nil, fmt.Errorf("redox: base_url %q %w; use %s or %s", opts.BaseURL, err, BaseURLUS, BaseURLCA)
	}
	if opts.TokenURL == "" {
		opts.TokenURL = base.ResolveReference(&url.URL{Path: TokenPath}).String()
	} else if _, err := checkURL(opts.TokenURL); err != nil {
		return nil, fmt.Errorf("redox: token_url %q %w", opts.TokenURL, err)
	}
	switch {
	case opts.AssertionLifetime == 0:
		opts.AssertionLifetime = MaxAssertionLifetime
	case opts.AssertionLifetime < time.Second || opts.AssertionLifetime > MaxAssertionLifetime:
		return nil, fmt.Errorf("redox: assertion_lifetime %s is not between 1s and %s", opts.AssertionLifetime, MaxAssertionLifetime)
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.VendorName == "" {
		opts.VendorName = Kind
	}
	tokens := *opts.HTTPClient
	tokens.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &Adapter{
		tokenURL:          opts.TokenURL,
		scope:             strings.Join(opts.Scopes, " "),
		assertionLifetime: opts.AssertionLifetime,
		tokens:            &tokens,
		clock:             opts.Clock,
		vendor:            opts.VendorName,
	}, nil
}

// checkURL parses an absolute http(s) URL without query, fragment or user
// info.
func checkURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	switch {
	case err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "":
		return nil, errors.New("is not an http(s) URL")
	case u.RawQuery != "" || u.Fragment != "" || u.User != nil:
		return nil, errors.New("must not have a query, fragment or user info")
	}
	return u, nil
}

// tokenResponse is Redox's token answer; an error answer has the OAuth
// error fields instead.
type tokenResponse struct {
	AccessToken string          `json:"access_token"`
	TokenType   string          `json:"token_type"`
	ExpiresIn   json.RawMessage `json:"expires_in"`
	Scope       string          `json:"scope"`

	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
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
	now := a.clock()
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
		return vendors.Token{}, fmt.Errorf("%s: build token request: %w", a.vendor, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")

	resp, err := a.tokens.Do(req)
	if err != nil {
		return vendors.Token{}, vendors.NewTransportError(a.vendor, opToken, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		e := vendors.NewTransportError(a.vendor, opToken, err)
		e.Status = resp.StatusCode
		return vendors.Token{}, e
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return vendors.Token{}, a.statusError(resp, data, cred.ClientSecret.Reveal(), assertion)
	}
	return a.parseToken(resp, data, now)
}

// statusError classifies a non-2xx token answer. redact is what must not be
// quoted should the vendor echo it.
func (a *Adapter) statusError(resp *http.Response, data []byte, redact ...string) *vendors.Error {
	status := resp.StatusCode
	e := &vendors.Error{Vendor: a.vendor, Op: opToken, Status: status}
	var oe tokenResponse
	quote := ""
	if json.Unmarshal(data, &oe) == nil && oe.Error != "" {
		quote = oe.Error
		if oe.ErrorDescription != "" {
			quote += ": " + oe.ErrorDescription
		}
	} else {
		quote = string(data)
	}
	quote = vendors.Excerpt(quote, redact...)
	switch {
	case status == http.StatusTooManyRequests:
		e.Class = vendors.ClassRateLimited
		e.RetryAfter = vendors.ParseRetryAfter(resp.Header.Get("Retry-After"), a.clock())
	case status >= 500:
		// Even with an invalid_client code: a server in trouble is no
		// definitive refusal, and a false revocation stops the credential.
		e.Class = vendors.ClassServer
		e.RetryAfter = vendors.ParseRetryAfter(resp.Header.Get("Retry-After"), a.clock())
	case status == http.StatusUnauthorized ||
		status == http.StatusBadRequest && (oe.Error == "invalid_client" || oe.Error == "unauthorized_client"):
		e.Class = vendors.ClassRevoked
		if quote == "" {
			e.Err = vendors.ErrRevoked
		} else {
			e.Err = fmt.Errorf("%w: vendor said %q", vendors.ErrRevoked, quote)
		}
		return e
	default:
		// invalid_request (Redox's answer to a malformed request, sometimes
		// with an empty description), invalid_grant (RFC 7523 uses it for
		// JWT authorization grants, not for client authentication), other
		// 4xx and 3xx.
		e.Class = vendors.ClassRejected
	}
	if quote != "" {
		e.Err = fmt.Errorf("vendor said %q", quote)
	}
	return e
}

// parseToken reads a 2xx token answer. It never quotes the body: it holds
// the token.
func (a *Adapter) parseToken(resp *http.Response, data []byte, issued time.Time) (vendors.Token, error) {
	malformed := func(format string, args ...any) error {
		return &vendors.Error{Vendor: a.vendor, Op: opToken, Class: vendors.ClassMalformed,
			Status: resp.StatusCode, Err: fmt.Errorf(format, args...)}
	}
	var tr tokenResponse
	if err := json.Unmarshal(data, &tr); err != nil {
		return vendors.Token{}, malformed("answer is not a JSON token (%d bytes, Content-Type %q)",
			len(data), vendors.Excerpt(resp.Header.Get("Content-Type")))
	}
	if tr.AccessToken == "" {
		if tr.Error != "" {
			return vendors.Token{}, malformed("answer has no access_token but error %q", vendors.Excerpt(tr.Error))
		}
		return vendors.Token{}, malformed("answer has no access_token")
	}
	lifetime, err := parseExpiresIn(tr.ExpiresIn)
	if err != nil {
		return vendors.Token{}, malformed("%w", err)
	}
	if tr.TokenType == "" {
		tr.TokenType = "Bearer"
	}
	return vendors.Token{
		AccessToken:     secret.New(tr.AccessToken),
		TokenType:       tr.TokenType,
		ClaimedLifetime: lifetime,
		IssuedAt:        issued,
	}, nil
}

// parseExpiresIn reads expires_in: absent (0), or a positive number of
// seconds, as a JSON number or (as some servers send it) a string.
func parseExpiresIn(raw json.RawMessage) (time.Duration, error) {
	s := strings.TrimSpace(string(raw))
	if s == "" || s == "null" {
		return 0, nil
	}
	s = strings.Trim(s, `"`)
	n, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(n) || n <= 0 {
		return 0, errors.New("expires_in is not a positive number of seconds")
	}
	if n >= float64(math.MaxInt64/int64(time.Second)) {
		return math.MaxInt64, nil
	}
	return time.Duration(n * float64(time.Second)), nil
}
