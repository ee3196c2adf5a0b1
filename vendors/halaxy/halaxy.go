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
	"net/http"
	"net/url"
	"regexp"
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
	base     *url.URL
	tokenURL string
	client   *http.Client    // for Get
	tokens   *vendors.Sender // for Token, never following redirects
}

var _ vendors.TokenSource = (*Adapter)(nil)

// userAgentRE is the "NAME (EMAIL)" shape Halaxy asks for: a name without
// parentheses, one space, an address in parentheses.
var userAgentRE = regexp.MustCompile(`^[^()\s](?:[^()\r\n]*[^()\s])? \([^\s()@]+@[^\s()@]+\)$`)

// ValidUserAgent reports whether ua has the "NAME (EMAIL)" shape Halaxy
// asks for (the configuration checks user_agent with it).
func ValidUserAgent(ua string) bool { return userAgentRE.MatchString(ua) }

// New checks opts and makes an Adapter.
func New(opts Options) (*Adapter, error) {
	base, err := vendors.ParseBaseURL(opts.BaseURL, BaseURLAU, "use "+BaseURLAU+" or "+BaseURLEU)
	if err != nil {
		return nil, fmt.Errorf("halaxy: %w", err)
	}
	if opts.UserAgent == "" {
		return nil, errors.New(`halaxy: user_agent is required, in the shape "APP_VENDOR_NAME (APP_VENDOR_EMAIL)", e.g. "Acme Sync (ops@acme.example)"`)
	}
	if !ValidUserAgent(opts.UserAgent) {
		return nil, fmt.Errorf(`halaxy: user_agent %q is not in the shape "APP_VENDOR_NAME (APP_VENDOR_EMAIL)", e.g. "Acme Sync (ops@acme.example)"`, opts.UserAgent)
	}
	client := vendors.HTTPClient(opts.HTTPClient)
	return &Adapter{
		base:     base,
		tokenURL: base.ResolveReference(&url.URL{Path: "oauth/token"}).String(),
		client:   client,
		tokens:   vendors.NewSender(Kind, client, opts.Clock, opts.UserAgent),
	}, nil
}

// tokenRequest is Halaxy's token request body.
type tokenRequest struct {
	GrantType    string `json:"grant_type"`
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
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

	issued := a.tokens.Clock()
	ans, verr := a.tokens.Call(req, opToken, func(ans vendors.Answer) *vendors.Error {
		return a.tokens.OAuthStatusError(opToken, ans, cred.Scrubber())
	})
	if verr != nil {
		return vendors.Token{}, verr
	}
	// Halaxy's answer claims expires_in, which the caller caps; it hands out
	// no refresh token.
	tok, verr := a.tokens.ParseToken(opToken, ans, issued, vendors.TokenRules{RequireExpiresIn: true})
	if verr != nil {
		return vendors.Token{}, verr
	}
	return tok, nil
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
	req.Header.Set("User-Agent", a.tokens.UserAgent)
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
