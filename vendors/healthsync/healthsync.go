package healthsync

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

// Kind is the vendor kind of this adapter, as in the configuration and the
// default vendors.Error.Vendor.
const Kind = "healthsync"

// Base URLs. HealthSync's pages give the sandbox's host only
// (https://api-sandbox.healthsync.com); its API is taken to sit under the
// same /v1/ as production's.
const (
	BaseURLProduction = "https://api.healthsync.com/v1/"
	BaseURLSandbox    = "https://api-sandbox.healthsync.com/v1/"
)

// Mode is how a credential gets into HealthSync.
type Mode string

// The modes; see the package doc.
const (
	ModeAPIKey         Mode = "api_key"
	ModeOAuth          Mode = "oauth"
	ModeServiceAccount Mode = "service_account"
)

// APIKeyVerifyPeriod is the ClaimedLifetime of an API key's token: how long
// a successful check of the key is trusted. A day keeps the checks to about
// one and a half requests per key and day (renewal at 2/3 of it), a trifle
// of even the Plus plan's 100 an hour, while a key revoked at HealthSync is
// noticed within 16 hours; the vendor's max_token_lifetime lowers it.
const APIKeyVerifyPeriod = 24 * time.Hour

// DefaultTokenPath is where the token endpoint is, relative to the base URL,
// when Options.TokenURL is empty (the sandbox's definition).
const DefaultTokenPath = "oauth/token"

// KeyPaths are the key-management paths, relative to the base URL. An empty
// field takes its value from DefaultKeyPaths.
type KeyPaths struct {
	// Create is POSTed {"name","scopes"} and answers the new key once:
	// {"id","key","name","scopes","created_at"}.
	Create string
	// List is a GET answering {"keys":[{"id","name","scopes","created_at",
	// "last_used_at","revoked","revoked_at"}]}.
	List string
	// Revoke is DELETEd to revoke a key; "{id}" in it is replaced by the
	// key's id. Required to hold "{id}".
	Revoke string
	// Current is a GET answering the authenticating key, as one of List's.
	Current string
	// Verify is the cheap real read that checks a key (Token in ModeAPIKey,
	// VerifyKey); any 2xx JSON answer will do.
	Verify string
}

// DefaultKeyPaths are the sandbox's key-management paths and a data read
// HealthSync documents for Verify.
var DefaultKeyPaths = KeyPaths{
	Create:  "keys",
	List:    "keys",
	Revoke:  "keys/{id}",
	Current: "keys/current",
	Verify:  "records?limit=1",
}

// Options configure an Adapter.
type Options struct {
	// BaseURL is the API base. Default BaseURLProduction; BaseURLSandbox for
	// HealthSync's sandbox. A missing trailing slash is added.
	BaseURL string
	// Mode is how credentials get in. Default ModeAPIKey.
	Mode Mode
	// TokenURL is the OAuth token endpoint (ModeOAuth, ModeServiceAccount).
	// Default BaseURL + DefaultTokenPath. It may be on another host.
	TokenURL string
	// Scopes are requested, space-separated, with service-account tokens.
	// Default none (the service account's own). A refresh never asks for
	// scopes: it keeps those the user granted.
	Scopes []string
	// KeyPaths are the key-management and verification paths; each empty
	// field defaults to DefaultKeyPaths'. They must stay under BaseURL.
	KeyPaths KeyPaths
	// UserAgent, when set, is sent with every request.
	UserAgent string
	// HTTPClient sends the requests. Default: a client with a 30 s timeout.
	// Redirects are never followed, whatever its CheckRedirect: a redirect
	// must not carry a key or secret elsewhere.
	HTTPClient *http.Client
	// Clock gives the time requests are sent, and reads Retry-After and
	// X-RateLimit-Reset. Default time.Now.
	Clock func() time.Time
	// VendorName names the vendor in errors (vendors.Error.Vendor). Default
	// Kind.
	VendorName string
}

// Adapter talks to one HealthSync base URL, in one mode, for any number of
// credentials. It is safe for concurrent use.
type Adapter struct {
	base     *url.URL
	mode     Mode
	tokenURL string
	scopes   []string
	paths    KeyPaths
	sender   *vendors.Sender // never follows redirects
}

var _ vendors.TokenSource = (*Adapter)(nil)

// New checks opts and makes an Adapter.
func New(opts Options) (*Adapter, error) {
	base, err := vendors.ParseBaseURL(opts.BaseURL, BaseURLProduction, "use "+BaseURLProduction+" or "+BaseURLSandbox)
	if err != nil {
		return nil, fmt.Errorf("healthsync: %w", err)
	}
	switch opts.Mode {
	case "":
		opts.Mode = ModeAPIKey
	case ModeAPIKey, ModeOAuth, ModeServiceAccount:
	default:
		return nil, fmt.Errorf("healthsync: unknown mode %q (one of %s, %s, %s)", opts.Mode, ModeAPIKey, ModeOAuth, ModeServiceAccount)
	}
	if opts.TokenURL == "" {
		opts.TokenURL = base.ResolveReference(&url.URL{Path: DefaultTokenPath}).String()
	}
	if u, err := vendors.ParseHTTPURL(opts.TokenURL); err != nil || u.User != nil {
		return nil, fmt.Errorf("healthsync: token_url %q %w", opts.TokenURL, vendors.ErrNotHTTPURL)
	}
	if strings.ContainsFunc(opts.UserAgent, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return nil, errors.New("healthsync: user_agent must be one line of printable text")
	}
	a := &Adapter{
		base:     base,
		mode:     opts.Mode,
		tokenURL: opts.TokenURL,
		scopes:   append([]string(nil), opts.Scopes...),
		sender:   vendors.NewSender(cmp.Or(opts.VendorName, Kind), opts.HTTPClient, opts.Clock, opts.UserAgent),
	}
	a.paths, err = a.checkPaths(opts.KeyPaths)
	if err != nil {
		return nil, err
	}
	return a, nil
}

// checkPaths fills the defaults of p and checks every path resolves under
// the base URL.
func (a *Adapter) checkPaths(p KeyPaths) (KeyPaths, error) {
	fields := []struct {
		name string
		v    *string
		def  string
	}{
		{"create", &p.Create, DefaultKeyPaths.Create},
		{"list", &p.List, DefaultKeyPaths.List},
		{"revoke", &p.Revoke, DefaultKeyPaths.Revoke},
		{"current", &p.Current, DefaultKeyPaths.Current},
		{"verify", &p.Verify, DefaultKeyPaths.Verify},
	}
	for _, f := range fields {
		if *f.v == "" {
			*f.v = f.def
		}
		if _, err := a.resolve(strings.ReplaceAll(*f.v, "{id}", "x")); err != nil {
			return KeyPaths{}, fmt.Errorf("healthsync: key_paths.%s: %w", f.name, err)
		}
	}
	if !strings.Contains(p.Revoke, "{id}") {
		return KeyPaths{}, fmt.Errorf(`healthsync: key_paths.revoke %q must hold "{id}", where the key's id goes`, p.Revoke)
	}
	return p, nil
}

// resolve turns a path relative to the base URL into a URL under it.
func (a *Adapter) resolve(path string) (string, error) {
	ref, err := url.Parse(path)
	if err == nil && !ref.IsAbs() && ref.Host == "" {
		ref, err = url.Parse(strings.TrimLeft(path, "/"))
	}
	if err != nil {
		return "", fmt.Errorf("bad path %q: %w", path, err)
	}
	u := a.base.ResolveReference(ref)
	if ref.IsAbs() || ref.Host != "" || u.Scheme != a.base.Scheme || u.Host != a.base.Host || !strings.HasPrefix(u.Path, a.base.Path) {
		return "", fmt.Errorf("path %q is not under the base URL %s", path, a.base)
	}
	return u.String(), nil
}

// Mode is the adapter's mode.
func (a *Adapter) Mode() Mode { return a.mode }

// Operations, as in vendors.Error.Op.
const (
	opToken   = "request token"
	opVerify  = "verify key"
	opCreate  = "create key"
	opList    = "list keys"
	opCurrent = "look up key"
	opRevoke  = "revoke key"
)

// Token gets a token for cred, by the adapter's mode (see the package doc):
// exactly one HTTP request, never retried, or none when cred lacks what the
// mode needs (a ClassRejected error).
func (a *Adapter) Token(ctx context.Context, cred vendors.Credential) (vendors.Token, error) {
	switch a.mode {
	case ModeOAuth:
		return a.refresh(ctx, cred)
	case ModeServiceAccount:
		return a.serviceToken(ctx, cred)
	default:
		return a.keyToken(ctx, cred)
	}
}

// keyToken is Token for an API key: the key itself, once a read with it
// succeeded.
func (a *Adapter) keyToken(ctx context.Context, cred vendors.Credential) (vendors.Token, error) {
	if cred.APIKey.IsZero() {
		return vendors.Token{}, a.missing(opVerify, "api_key")
	}
	issued := a.sender.Clock()
	if err := a.verify(ctx, cred.APIKey); err != nil {
		return vendors.Token{}, err
	}
	return vendors.Token{
		AccessToken:     cred.APIKey,
		TokenType:       "Bearer",
		ClaimedLifetime: APIKeyVerifyPeriod,
		IssuedAt:        issued,
	}, nil
}

// refresh is Token for a user's delegation: the refresh_token grant.
func (a *Adapter) refresh(ctx context.Context, cred vendors.Credential) (vendors.Token, error) {
	switch {
	case cred.ClientID == "":
		return vendors.Token{}, a.missing(opToken, "client_id")
	case cred.RefreshToken.IsZero():
		return vendors.Token{}, a.missing(opToken, "refresh token (the user's consent has not been stored)")
	}
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {cred.RefreshToken.Reveal()}}
	tok, err := a.tokenCall(ctx, cred, form, true)
	if err != nil {
		return vendors.Token{}, err
	}
	if tok.RefreshToken.Equal(cred.RefreshToken) {
		tok.RefreshToken = secret.Value{} // not rotated: the store keeps its own
	}
	return tok, nil
}

// serviceToken is Token for a service account: the client_credentials grant.
func (a *Adapter) serviceToken(ctx context.Context, cred vendors.Credential) (vendors.Token, error) {
	switch {
	case cred.ClientID == "":
		return vendors.Token{}, a.missing(opToken, "client_id")
	case cred.ClientSecret.IsZero():
		return vendors.Token{}, a.missing(opToken, "client_secret")
	}
	form := url.Values{"grant_type": {"client_credentials"}}
	if len(a.scopes) > 0 {
		form.Set("scope", strings.Join(a.scopes, " "))
	}
	tok, err := a.tokenCall(ctx, cred, form, false)
	if err != nil {
		return vendors.Token{}, err
	}
	tok.RefreshToken = secret.Value{} // a service account re-authenticates
	return tok, nil
}

// missing reports a credential without what the mode needs; no request was
// sent.
func (a *Adapter) missing(op, what string) *vendors.Error {
	return &vendors.Error{Vendor: a.sender.Vendor, Op: op, Class: vendors.ClassRejected,
		Err: fmt.Errorf("credential has no %s for mode %s", what, a.mode)}
}

// tokenCall posts form to the token endpoint, the client authenticated by
// HTTP Basic (form-urlencoded first, RFC 6749 section 2.3.1) or, for a
// public client without a secret, by client_id in the body. isRefresh makes
// invalid_grant a definitive refusal.
func (a *Adapter) tokenCall(ctx context.Context, cred vendors.Credential, form url.Values, isRefresh bool) (vendors.Token, error) {
	if cred.ClientSecret.IsZero() {
		form.Set("client_id", cred.ClientID)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return vendors.Token{}, fmt.Errorf("healthsync: build token request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if !cred.ClientSecret.IsZero() {
		req.SetBasicAuth(url.QueryEscape(cred.ClientID), url.QueryEscape(cred.ClientSecret.Reveal()))
	}
	issued := a.sender.Clock()
	ans, verr := a.send(req, opToken, isRefresh, cred.Scrubber())
	if verr != nil {
		return vendors.Token{}, verr
	}
	// expires_in is required: without it the pipeline would renew in a loop.
	tok, verr := a.sender.ParseToken(opToken, ans, issued, vendors.TokenRules{RequireExpiresIn: true, RefreshToken: true})
	if verr != nil {
		return vendors.Token{}, verr
	}
	return tok, nil
}
