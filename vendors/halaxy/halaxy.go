// Package halaxy is the adapter of the Halaxy API (vendor kind "halaxy"):
// OAuth client credentials with a JSON body, FHIR R4B requests.
//
// Halaxy's quirks, from its authentication page:
//   - The token endpoint is POST {base}oauth/token with a JSON body (not the
//     form encoding of RFC 6749) and must be sent Accept: application/fhir+json.
//   - Its answer claims "expires_in": 3600, but the token is valid for 15
//     minutes only. The adapter reports the claim unchanged in
//     vendors.Token.ClaimedLifetime; the caller caps it with the vendor's
//     max_token_lifetime (15m for Halaxy), so this package stays a faithful
//     reader of what the vendor said.
//   - Every request carries User-Agent "APP_VENDOR_NAME (APP_VENDOR_EMAIL)".
//   - The base URL depends on the region (BaseURLAU, BaseURLEU).
package halaxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/vendors"
)

// Kind is the vendor kind of this adapter, as in the configuration and in
// vendors.Error.Vendor.
const Kind = "halaxy"

// Base URLs by region: EU and UK practices use BaseURLEU, everyone else
// BaseURLAU.
const (
	BaseURLAU = "https://au-api.halaxy.com/main/"
	BaseURLEU = "https://eu-api.halaxy.com/main/"
)

// MediaTypeFHIR is the only media type Halaxy serves.
const MediaTypeFHIR = "application/fhir+json"

const opToken = "request token"

// maxBody bounds how much of a token answer is read.
const maxBody = 1 << 20

// Options configure an Adapter.
type Options struct {
	// BaseURL is the API base, ending in "/main/". Default BaseURLAU. A
	// missing trailing slash is added.
	BaseURL string
	// UserAgent identifies the application to Halaxy, in the shape
	// "APP_VENDOR_NAME (APP_VENDOR_EMAIL)", e.g. "Acme Sync (ops@acme.example)".
	// Required.
	UserAgent string
	// HTTPClient sends the requests. Default: a client with a 30 s timeout.
	// Token requests never follow redirects, whatever its CheckRedirect:
	// a redirect must not carry the client secret elsewhere.
	HTTPClient *http.Client
	// Clock gives the time a token request is sent. Default time.Now.
	Clock func() time.Time
}

// Adapter talks to one Halaxy region for any number of credentials. It is
// safe for concurrent use.
type Adapter struct {
	base      *url.URL
	tokenURL  string
	userAgent string
	client    *http.Client
	tokens    *http.Client // client, never following redirects
	clock     func() time.Time
}

var _ vendors.TokenSource = (*Adapter)(nil)

// userAgentRE is the "NAME (EMAIL)" shape Halaxy asks for: a name without
// parentheses, one space, an address in parentheses.
var userAgentRE = regexp.MustCompile(`^[^()\s](?:[^()\r\n]*[^()\s])? \([^\s()@]+@[^\s()@]+\)$`)

// New checks opts and makes an Adapter.
func New(opts Options) (*Adapter, error) {
	if opts.BaseURL == "" {
		opts.BaseURL = BaseURLAU
	}
	if !strings.HasSuffix(opts.BaseURL, "/") {
		opts.BaseURL += "/"
	}
	base, err := url.Parse(opts.BaseURL)
	if err != nil || (base.Scheme != "https" && base.Scheme != "http") || base.Host == "" {
		return nil, fmt.Errorf("halaxy: base_url %q is not an http(s) URL; use %s or %s", opts.BaseURL, BaseURLAU, BaseURLEU)
	}
	if base.RawQuery != "" || base.Fragment != "" || base.User != nil {
		return nil, fmt.Errorf("halaxy: base_url %q must not have a query, fragment or user info", opts.BaseURL)
	}
	if opts.UserAgent == "" {
		return nil, errors.New(`halaxy: user_agent is required, in the shape "APP_VENDOR_NAME (APP_VENDOR_EMAIL)", e.g. "Acme Sync (ops@acme.example)"`)
	}
	if !userAgentRE.MatchString(opts.UserAgent) {
		return nil, fmt.Errorf(`halaxy: user_agent %q is not in the shape "APP_VENDOR_NAME (APP_VENDOR_EMAIL)", e.g. "Acme Sync (ops@acme.example)"`, opts.UserAgent)
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	tokens := *opts.HTTPClient
	tokens.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &Adapter{
		base:      base,
		tokenURL:  base.ResolveReference(&url.URL{Path: "oauth/token"}).String(),
		userAgent: opts.UserAgent,
		client:    opts.HTTPClient,
		tokens:    &tokens,
		clock:     opts.Clock,
	}, nil
}

// tokenRequest is Halaxy's token request body.
type tokenRequest struct {
	GrantType    string `json:"grant_type"`
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
}

// tokenResponse is Halaxy's token answer; an error answer has the OAuth
// error fields instead.
type tokenResponse struct {
	TokenType   string          `json:"token_type"`
	ExpiresIn   json.RawMessage `json:"expires_in"`
	AccessToken string          `json:"access_token"`

	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
}

// Token asks Halaxy for an access token for cred: exactly one HTTP request,
// never retried. Failures are *vendors.Error: ClassRevoked (wrapping
// vendors.ErrRevoked) for a 401 or an invalid_client/unauthorized_client
// refusal, ClassRateLimited for 429, ClassServer for 5xx (both with the
// vendor's Retry-After), ClassMalformed for a 2xx without a usable token,
// ClassNetwork and ClassTimeout when no answer came, ClassRejected for any
// other status. Their messages quote at most a sanitised excerpt of an error
// answer, never the secret or a token.
func (a *Adapter) Token(ctx context.Context, cred vendors.Credential) (vendors.Token, error) {
	body, err := json.Marshal(tokenRequest{
		GrantType:    "client_credentials",
		ClientID:     cred.ClientID,
		ClientSecret: cred.ClientSecret.Reveal(),
	})
	if err != nil {
		return vendors.Token{}, fmt.Errorf("halaxy: encode token request: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.tokenURL, bytes.NewReader(body))
	if err != nil {
		return vendors.Token{}, fmt.Errorf("halaxy: build token request: %w", err)
	}
	req.Header.Set("Accept", MediaTypeFHIR)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", a.userAgent)

	issued := a.clock()
	resp, err := a.tokens.Do(req)
	if err != nil {
		return vendors.Token{}, vendors.NewTransportError(Kind, opToken, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		e := vendors.NewTransportError(Kind, opToken, err)
		e.Status = resp.StatusCode
		return vendors.Token{}, e
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return vendors.Token{}, a.statusError(resp, data, cred)
	}
	return parseToken(resp, data, issued)
}

// statusError classifies a non-2xx token answer.
func (a *Adapter) statusError(resp *http.Response, data []byte, cred vendors.Credential) *vendors.Error {
	e := &vendors.Error{Vendor: Kind, Op: opToken, Status: resp.StatusCode}
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
	quote = vendors.Excerpt(quote, cred.ClientSecret.Reveal())
	switch {
	case resp.StatusCode == http.StatusUnauthorized,
		resp.StatusCode == http.StatusBadRequest && (oe.Error == "invalid_client" || oe.Error == "unauthorized_client"):
		e.Class = vendors.ClassRevoked
		if quote == "" {
			e.Err = vendors.ErrRevoked
		} else {
			e.Err = fmt.Errorf("%w: vendor said %q", vendors.ErrRevoked, quote)
		}
		return e
	case resp.StatusCode == http.StatusTooManyRequests:
		e.Class = vendors.ClassRateLimited
		e.RetryAfter = vendors.ParseRetryAfter(resp.Header.Get("Retry-After"), a.clock())
	case resp.StatusCode >= 500:
		e.Class = vendors.ClassServer
		e.RetryAfter = vendors.ParseRetryAfter(resp.Header.Get("Retry-After"), a.clock())
	default:
		e.Class = vendors.ClassRejected
	}
	if quote != "" {
		e.Err = fmt.Errorf("vendor said %q", quote)
	}
	return e
}

// parseToken reads a 2xx token answer. It never quotes the body: it holds
// the token.
func parseToken(resp *http.Response, data []byte, issued time.Time) (vendors.Token, error) {
	malformed := func(format string, args ...any) error {
		return &vendors.Error{Vendor: Kind, Op: opToken, Class: vendors.ClassMalformed,
			Status: resp.StatusCode, Err: fmt.Errorf(format, args...)}
	}
	var tr tokenResponse
	if err := json.Unmarshal(data, &tr); err != nil {
		return vendors.Token{}, malformed("answer is not a JSON token (%d bytes, Content-Type %q)",
			len(data), resp.Header.Get("Content-Type"))
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

// parseExpiresIn reads expires_in: a positive number of seconds, as a JSON
// number or (as some servers send it) a string.
func parseExpiresIn(raw json.RawMessage) (time.Duration, error) {
	s := strings.TrimSpace(string(raw))
	if s == "" || s == "null" {
		return 0, errors.New("answer has no expires_in")
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

// Get sends GET {base}path with Halaxy's headers (Accept
// application/fhir+json, User-Agent, Authorization: Bearer token) and returns
// the answer, whatever its status; the caller closes its body. path is
// relative to the base URL ("Patient?_count=50"); an absolute URL (a FHIR
// Bundle's next link) is accepted only on the base URL's host, so the token
// never goes anywhere else. A failure to get an answer is a *vendors.Error of
// class ClassNetwork or ClassTimeout.
func (a *Adapter) Get(ctx context.Context, path string, token secret.Value) (*http.Response, error) {
	u, err := a.resolve(path)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("halaxy: build request: %w", err)
	}
	req.Header.Set("Accept", MediaTypeFHIR)
	req.Header.Set("User-Agent", a.userAgent)
	req.Header.Set("Authorization", "Bearer "+token.Reveal())
	resp, err := a.client.Do(req)
	if err != nil {
		return nil, vendors.NewTransportError(Kind, "get", err)
	}
	return resp, nil
}

// resolve turns a request path into a URL under the base.
func (a *Adapter) resolve(path string) (string, error) {
	ref, err := url.Parse(path)
	if err == nil && !ref.IsAbs() && ref.Host == "" {
		ref, err = url.Parse(strings.TrimLeft(path, "/"))
		if err == nil {
			ref = a.base.ResolveReference(ref)
		}
	}
	if err != nil {
		return "", fmt.Errorf("halaxy: bad request path %q: %w", path, err)
	}
	if ref.Scheme != a.base.Scheme || ref.Host != a.base.Host || !strings.HasPrefix(ref.Path, a.base.Path) {
		return "", fmt.Errorf("halaxy: request URL %q is not under the base URL %s", path, a.base)
	}
	return ref.String(), nil
}
