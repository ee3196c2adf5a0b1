// Package fhirportal is the adapter of patient-portal FHIR credentials
// (vendor kind "fhir-portal"). Each patient generates a key and secret for
// one app in the portal; the app trades them for access tokens with OAuth
// 2.0 client credentials at the FHIR server's token endpoint, configured or
// discovered from {base}.well-known/smart-configuration. One Adapter serves
// every credential of one FHIR server, thousands of them, concurrently.
//
// A patient deleting the key stops the sharing at once, and the next token
// request's 401/invalid_client is the only sign of it: Token reports it as
// class vendors.ClassRevoked wrapping vendors.ErrRevoked, a definitive
// refusal the caller must not retry and must not drop silently.
//
// The token request itself is oauth2cc's (form-encoded, client_secret_basic
// or client_secret_post). What this package adds is the discovery:
//
//   - It happens at most once per Adapter at a time, on the first Token
//     call, and its success is kept for the Adapter's life (restart, or make
//     a new Adapter, to see a moved endpoint). Concurrent first calls share
//     one request. A failure is not kept: the next Token call tries again.
//   - A failed discovery is never a revocation, whatever the status: no
//     credential was sent. It is ClassNetwork or ClassTimeout (no answer),
//     ClassServer (5xx), ClassRateLimited (429), ClassMalformed (a 2xx
//     without a usable token_endpoint) or ClassRejected (any other status, a
//     redirect, a token endpoint we refuse), with Op "discover token
//     endpoint".
//   - The secret goes only where it is safe: the discovered token_endpoint
//     must be https, or on the FHIR server's own origin (scheme, host and
//     port of BaseURL). Anything else is refused. Discovery never follows
//     redirects, so the answer comes from BaseURL's server itself.
//   - token_endpoint_auth_methods_supported picks the client authentication:
//     client_secret_basic when listed or when the list is absent (RFC 6749
//     section 2.3.1 makes Basic the one every server supports), else
//     client_secret_post. Sending the secret a way the server does not
//     accept would get invalid_client and revoke every credential falsely.
package fhirportal

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"

	"github.com/tokenrelay/tokenrelay/vendors"
	"github.com/tokenrelay/tokenrelay/vendors/oauth2cc"
)

// Kind is the vendor kind of this adapter, as in the configuration.
const Kind = "fhir-portal"

// DiscoveryPath is where the SMART configuration lives, relative to the
// FHIR base URL.
const DiscoveryPath = ".well-known/smart-configuration"

const opDiscover = "discover token endpoint"

// maxDiscoveryBody bounds how much of a SMART configuration is read.
const maxDiscoveryBody = 1 << 20

// The client authentication methods of token_endpoint_auth_methods_supported
// (RFC 7591 names) that this adapter can use.
const (
	authBasic = "client_secret_basic"
	authPost  = "client_secret_post"
)

// Options configure an Adapter.
type Options struct {
	// BaseURL is the FHIR server's base, e.g. https://fhir.portal.example/r4/.
	// Required; a missing trailing "/" is added.
	BaseURL string
	// TokenURL is the token endpoint. Default: discovered, the token_endpoint
	// of {BaseURL}.well-known/smart-configuration. A configured one is used
	// as is, with client_secret_basic, and no discovery happens.
	TokenURL string
	// Scopes are requested with every token; none by default.
	Scopes []string
	// UserAgent, when set, is sent on the discovery and token requests.
	UserAgent string
	// HTTPClient sends the requests. Default: a client with a 30 s timeout.
	// Neither discovery nor token requests follow redirects, whatever its
	// CheckRedirect.
	HTTPClient *http.Client
	// Clock gives the time a token request is sent and the base of an
	// HTTP-date Retry-After. Default time.Now.
	Clock func() time.Time
	// VendorName names the vendor in errors (vendors.Error.Vendor).
	// Default Kind ("fhir-portal").
	VendorName string
}

// Adapter gets tokens from one FHIR server for any number of patient
// credentials. It is safe for concurrent use.
type Adapter struct {
	discoveryURL string
	origin       string // scheme://host:port of BaseURL
	// token is the token source's options but TokenURL and AuthStyle.
	token     oauth2cc.Options
	discovery *vendors.Sender // never follows redirects

	mu       sync.Mutex
	endpoint *endpoint // nil until discovered
	pending  *attempt  // the discovery in flight, if any
}

// endpoint is a token endpoint and the token source that calls it.
type endpoint struct {
	url    string
	source *oauth2cc.Adapter
}

// attempt is one discovery that concurrent Token calls wait for. Its
// fields are written before done is closed.
type attempt struct {
	done     chan struct{}
	endpoint *endpoint
	err      error
	// abandoned: it failed because its caller's context ended, which says
	// nothing of the server: a waiter with time left tries again.
	abandoned bool
}

var _ vendors.TokenSource = (*Adapter)(nil)

// New checks opts and makes an Adapter. It sends nothing: discovery waits
// for the first Token call.
func New(opts Options) (*Adapter, error) {
	if opts.BaseURL == "" {
		return nil, errors.New("fhirportal: base_url is required (the FHIR server's base URL)")
	}
	base, err := vendors.ParseBaseURL(opts.BaseURL, "", "")
	if err != nil {
		return nil, fmt.Errorf("fhirportal: %w", err)
	}
	if err := vendors.CheckUserAgent(opts.UserAgent); err != nil {
		return nil, fmt.Errorf("fhirportal: %w", err)
	}
	client := vendors.HTTPClient(opts.HTTPClient)
	discovery := vendors.NewSender(cmp.Or(opts.VendorName, Kind), client, opts.Clock, opts.UserAgent)
	a := &Adapter{
		discoveryURL: base.JoinPath(DiscoveryPath).String(),
		origin:       origin(base),
		token: oauth2cc.Options{
			Scopes:     slices.Clone(opts.Scopes),
			UserAgent:  opts.UserAgent,
			HTTPClient: client,
			Clock:      discovery.Clock,
			VendorName: discovery.Vendor,
		},
		discovery: discovery,
	}
	if opts.TokenURL != "" {
		ep, err := a.newEndpoint(opts.TokenURL, oauth2.AuthStyleInHeader)
		if err != nil {
			return nil, fmt.Errorf("fhirportal: %w", err)
		}
		a.endpoint = ep
	}
	return a, nil
}

// Token asks the FHIR server's token endpoint for an access token for
// cred. It makes exactly one token-endpoint request, never retried; the
// first call (and the next after a failed discovery) also GETs the SMART
// configuration, a separate request to another endpoint that carries no
// credential. Failures are *vendors.Error, as oauth2cc.Adapter.Token
// classifies them (ClassRevoked wrapping vendors.ErrRevoked for a 401 or an
// invalid_client/unauthorized_client refusal), or as the package doc says
// for a failed discovery. Their messages never hold the secret or a token.
func (a *Adapter) Token(ctx context.Context, cred vendors.Credential) (vendors.Token, error) {
	ep, err := a.tokenEndpoint(ctx)
	if err != nil {
		return vendors.Token{}, err
	}
	return ep.source.Token(ctx, cred)
}

// TokenURL returns the token endpoint, configured or discovered, and ""
// while none is known yet.
func (a *Adapter) TokenURL() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.endpoint == nil {
		return ""
	}
	return a.endpoint.url
}

// tokenEndpoint returns the token endpoint, discovering it if needed: one
// discovery at a time, shared by the calls that arrive meanwhile, kept only
// when it succeeds.
func (a *Adapter) tokenEndpoint(ctx context.Context) (*endpoint, error) {
	for {
		a.mu.Lock()
		if a.endpoint != nil {
			ep := a.endpoint
			a.mu.Unlock()
			return ep, nil
		}
		at := a.pending
		lead := at == nil
		if lead {
			at = &attempt{done: make(chan struct{})}
			a.pending = at
		}
		a.mu.Unlock()

		if lead {
			return a.lead(ctx, at)
		}
		select {
		case <-at.done:
		case <-ctx.Done():
			return nil, vendors.NewTransportError(a.discovery.Vendor, opDiscover, ctx.Err())
		}
		if at.err == nil {
			return at.endpoint, nil
		}
		if !at.abandoned || ctx.Err() != nil {
			return nil, at.err
		}
	}
}

// lead runs the discovery at, which the calls arriving meanwhile wait for,
// and settles it even if discover panics.
func (a *Adapter) lead(ctx context.Context, at *attempt) (ep *endpoint, err error) {
	at.err = errors.New("fhirportal: discovery did not finish")
	defer func() {
		a.mu.Lock()
		if err == nil {
			a.endpoint = ep
		}
		a.pending = nil
		a.mu.Unlock()
		close(at.done)
	}()
	ep, err = a.discover(ctx)
	at.endpoint, at.err, at.abandoned = ep, err, err != nil && ctx.Err() != nil
	return ep, err
}

// smartConfiguration is the part of a SMART configuration the adapter reads.
type smartConfiguration struct {
	TokenEndpoint string   `json:"token_endpoint"`
	AuthMethods   []string `json:"token_endpoint_auth_methods_supported"`
}

// discover GETs the SMART configuration and makes the token source it
// names: one request, never retried.
func (a *Adapter) discover(ctx context.Context) (*endpoint, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.discoveryURL, nil)
	if err != nil {
		return nil, fmt.Errorf("fhirportal: build discovery request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	ans, verr := a.discovery.Do(req, opDiscover, maxDiscoveryBody+1)
	if verr != nil {
		return nil, verr
	}
	status, body := ans.Status, ans.Body
	fail := func(class string, format string, args ...any) *vendors.Error {
		return &vendors.Error{Vendor: a.discovery.Vendor, Op: opDiscover, Class: class, Status: status,
			Err: fmt.Errorf(format, args...)}
	}
	if !ans.OK() {
		// Never a revocation: no credential was sent.
		detail := fmt.Sprintf("%s answered %q", a.discoveryURL, vendors.Excerpt(string(body), nil))
		if status >= 300 && status <= 399 {
			detail = fmt.Sprintf("%s redirects to %q; discovery does not follow redirects: set token_url",
				a.discoveryURL, vendors.Excerpt(ans.Header.Get("Location"), nil))
		}
		return nil, a.discovery.StatusError(opDiscover, ans, false, detail)
	}
	if len(body) > maxDiscoveryBody {
		return nil, fail(vendors.ClassMalformed, "SMART configuration is larger than %d bytes", maxDiscoveryBody)
	}
	var doc smartConfiguration
	if err := json.Unmarshal(body, &doc); err != nil {
		// A json error names a type or a character, never the content.
		return nil, fail(vendors.ClassMalformed, "SMART configuration is not a JSON object as expected: %v", err)
	}
	if doc.TokenEndpoint == "" {
		return nil, fail(vendors.ClassMalformed, "SMART configuration has no token_endpoint")
	}
	quoted := vendors.Excerpt(doc.TokenEndpoint, nil)
	tu, err := vendors.ParseHTTPURL(doc.TokenEndpoint)
	if err != nil || tu.User != nil {
		return nil, fail(vendors.ClassMalformed, "token_endpoint %q is not an absolute http(s) URL", quoted)
	}
	if tu.Scheme != "https" && origin(tu) != a.origin {
		return nil, fail(vendors.ClassRejected,
			"token_endpoint %q is neither https nor on the FHIR server's origin %s: client secrets are not sent there (set token_url to override)",
			quoted, a.origin)
	}
	style, ok := authStyle(doc.AuthMethods)
	if !ok {
		return nil, fail(vendors.ClassRejected,
			"token endpoint accepts none of %s, %s (token_endpoint_auth_methods_supported: %q)",
			authBasic, authPost, vendors.Excerpt(strings.Join(doc.AuthMethods, " "), nil))
	}
	ep, err := a.newEndpoint(doc.TokenEndpoint, style)
	if err != nil {
		return nil, fail(vendors.ClassMalformed, "token_endpoint %q: %w", quoted, err)
	}
	return ep, nil
}

func (a *Adapter) newEndpoint(tokenURL string, style oauth2.AuthStyle) (*endpoint, error) {
	opts := a.token
	opts.TokenURL = tokenURL
	opts.AuthStyle = style
	src, err := oauth2cc.New(opts)
	if err != nil {
		return nil, err
	}
	return &endpoint{url: tokenURL, source: src}, nil
}

// authStyle picks the client authentication from a server's
// token_endpoint_auth_methods_supported: Basic when it is listed or nothing
// is, else post when that is listed. ok is false when neither is.
func authStyle(methods []string) (style oauth2.AuthStyle, ok bool) {
	switch {
	case len(methods) == 0 || slices.Contains(methods, authBasic):
		return oauth2.AuthStyleInHeader, true
	case slices.Contains(methods, authPost):
		return oauth2.AuthStyleInParams, true
	}
	return 0, false
}

// origin is the RFC 6454 origin of an http(s) URL: scheme://host:port,
// lower case, with the scheme's default port made explicit.
func origin(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	host := strings.ToLower(u.Hostname())
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return strings.ToLower(u.Scheme) + "://" + host + ":" + port
}
