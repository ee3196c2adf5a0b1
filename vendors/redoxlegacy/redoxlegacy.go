// Package redoxlegacy is the adapter of Redox legacy API keys (vendor kind
// "redox-legacy"): an API key and its secret exchanged for a 24-hour access
// token to the Redox Data Model API.
//
// The quirks, from Redox's "Authenticate a legacy API key" page:
//   - POST {base}auth/authenticate with JSON {"apiKey","secret"} answers
//     {"accessToken","expires","refreshToken"}, where expires is an ISO 8601
//     time ("2015-03-25T20:52:35.000Z"), not a number of seconds. The
//     adapter reports expires minus the time the request was sent as
//     vendors.Token.ClaimedLifetime, so IssuedAt + ClaimedLifetime is
//     exactly the vendor's expiry. The token lasts 24 hours; an expired one
//     gets 401.
//   - POST {base}auth/refreshToken with JSON {"apiKey","refreshToken"}
//     answers the same shape. Refresh tokens rotate (each use returns a new
//     one and consumes the old; the new one must be stored with the access
//     token in one step, which the pipeline does) and expire after 7 days
//     of inactivity (RefreshTokenIdleLimit). Redox recommends
//     re-authenticating with key and secret instead of refreshing.
//   - The API key is as sensitive as the secret: Redox says an exposed key
//     means generating a new secret. Errors never hold either, nor a token.
//   - The base URL depends on the region (BaseURLUS, BaseURLCA).
//
// # Modes
//
// ModeReauthenticate (the default, as Redox recommends) authenticates with
// key and secret on every renewal: exactly one HTTP call per Token, no
// refresh token to keep alive, and a changed secret or a deleted key is
// noticed at the next renewal. The refresh token of the answer is still
// returned, so that switching to ModeRefresh later needs no migration.
//
// ModeRefresh refreshes with the stored refresh token when there is one and
// authenticates otherwise. When Redox refuses the refresh token (a 4xx other
// than 429: expired after 7 idle days, already used, revoked by reuse
// detection, unknown), that says nothing of the key: Token then
// authenticates, once, in the same call. That is the one exception to "one
// token-endpoint call per Token": the refused refresh issued no token, so
// the authenticate is not a second grant but the only one, and its answer
// (new access and refresh token) is what the pipeline stores. A Token call
// therefore makes at most two HTTP calls, and two only after a refusal. A
// refresh that got no answer (network, timeout), a 429 or a 5xx, or an
// unusable 2xx is returned as is, without falling back: the stored refresh
// token may still be good, and if the vendor did consume it, the next
// attempt is refused and falls back then. So a credential is never lost to
// its refresh token; only the key and secret decide ErrRevoked.
//
// In ModeRefresh a changed secret goes unnoticed while the chain lives (a
// refresh does not send it), and a deleted key costs two calls to discover
// (the refresh and the authenticate are both refused).
//
// # The 7-day inactivity rule
//
// The pipeline renews at two thirds of the 24-hour lifetime, so the refresh
// token of a credential in service is never idle for 7 days. One that is
// (the credential kept failing, or tokenrelay was stopped) is refused, and
// ModeRefresh re-authenticates as above at the cost of one wasted call.
// A scheduler that wants to avoid even that renews a credential no later
// than ReauthenticateBy(the time its refresh token was issued).
package redoxlegacy

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
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
const Kind = "redox-legacy"

// Base URLs by region: Canada uses BaseURLCA, everyone else BaseURLUS.
const (
	BaseURLUS = "https://api.redoxengine.com/"
	BaseURLCA = "https://api.ca.redoxengine.com/"
)

// Mode says how Token gets a new access token.
type Mode string

// Modes.
const (
	// ModeReauthenticate authenticates with key and secret every time.
	ModeReauthenticate Mode = "reauthenticate"
	// ModeRefresh uses the stored refresh token when there is one, and
	// authenticates when there is none or Redox refuses it.
	ModeRefresh Mode = "refresh"
)

// Paths of the token endpoints, relative to the base URL.
const (
	pathAuthenticate = "auth/authenticate"
	pathRefresh      = "auth/refreshToken"
)

// opToken is vendors.Error.Op of every token failure, whichever endpoint.
const opToken = "request token"

// Options configure an Adapter.
type Options struct {
	// BaseURL is the API root. Default BaseURLUS (Canada: BaseURLCA). A
	// missing trailing slash is added.
	BaseURL string
	// Mode is how tokens are renewed. Default ModeReauthenticate.
	Mode Mode
	// HTTPClient sends the requests. Default: a client with a 30 s timeout.
	// Token requests never follow redirects, whatever its CheckRedirect: a
	// redirect must not carry the key and secret elsewhere.
	HTTPClient *http.Client
	// Clock gives the time a token request is sent. Default time.Now.
	Clock func() time.Time
	// VendorName names the vendor in errors (vendors.Error.Vendor).
	// Default Kind.
	VendorName string
	// UserAgent, when set, is sent with every token request. Default: Go's.
	UserAgent string
}

// Adapter gets tokens from one Redox region for any number of legacy API
// keys. It is safe for concurrent use.
type Adapter struct {
	authURL    string
	refreshURL string
	mode       Mode
	tokens     *vendors.Sender // never follows redirects
}

var _ vendors.TokenSource = (*Adapter)(nil)

// New checks opts and makes an Adapter.
func New(opts Options) (*Adapter, error) {
	base, err := vendors.ParseBaseURL(opts.BaseURL, BaseURLUS, "use "+BaseURLUS+" or "+BaseURLCA)
	if err != nil {
		return nil, fmt.Errorf("redoxlegacy: %w", err)
	}
	switch opts.Mode {
	case "":
		opts.Mode = ModeReauthenticate
	case ModeReauthenticate, ModeRefresh:
	default:
		return nil, fmt.Errorf("redoxlegacy: unknown mode %q (%s or %s)", opts.Mode, ModeReauthenticate, ModeRefresh)
	}
	if err := vendors.CheckUserAgent(opts.UserAgent); err != nil {
		return nil, fmt.Errorf("redoxlegacy: %w", err)
	}
	return &Adapter{
		authURL:    base.ResolveReference(&url.URL{Path: pathAuthenticate}).String(),
		refreshURL: base.ResolveReference(&url.URL{Path: pathRefresh}).String(),
		mode:       opts.Mode,
		tokens:     vendors.NewSender(cmp.Or(opts.VendorName, Kind), opts.HTTPClient, opts.Clock, opts.UserAgent),
	}, nil
}

// Mode is the adapter's mode.
func (a *Adapter) Mode() Mode { return a.mode }

// authenticateRequest and refreshRequest are the token requests' bodies.
type authenticateRequest struct {
	APIKey string `json:"apiKey"`
	Secret string `json:"secret"`
}

type refreshRequest struct {
	APIKey       string `json:"apiKey"`
	RefreshToken string `json:"refreshToken"`
}

// tokenResponse is both endpoints' answer.
type tokenResponse struct {
	AccessToken  string          `json:"accessToken"`
	Expires      json.RawMessage `json:"expires"`
	RefreshToken string          `json:"refreshToken"`
}

// Token gets an access token for cred (ClientID is the API key,
// ClientSecret its secret, RefreshToken the stored refresh token): in
// ModeReauthenticate, or without a refresh token, one authenticate request;
// in ModeRefresh with a refresh token, one refresh request, followed by one
// authenticate request only if Redox refused the refresh token (see the
// package doc). Nothing is retried. The returned token carries the new
// refresh token, to be stored with the access token in one step.
//
// Failures are *vendors.Error with Op "request token": ClassRevoked
// (wrapping vendors.ErrRevoked) for a 401 from auth/authenticate (bad key
// or secret), ClassRateLimited for 429, ClassServer for 5xx (both with the
// Retry-After), ClassMalformed for a 2xx without a usable token or expiry,
// ClassNetwork and ClassTimeout when no answer came, ClassRejected for any
// other status. Their messages name the endpoint and quote at most a
// sanitised excerpt of an error answer, never the key, the secret or a
// token.
func (a *Adapter) Token(ctx context.Context, cred vendors.Credential) (vendors.Token, error) {
	tok, err := a.token(ctx, cred)
	if err != nil {
		return vendors.Token{}, err
	}
	return tok, nil
}

// token is Token with a concrete error type (nil stays nil).
func (a *Adapter) token(ctx context.Context, cred vendors.Credential) (vendors.Token, *vendors.Error) {
	if a.mode != ModeRefresh || cred.RefreshToken.IsZero() {
		return a.authenticate(ctx, cred)
	}
	tok, err := a.call(ctx, a.refreshURL, pathRefresh, refreshRequest{
		APIKey:       cred.ClientID,
		RefreshToken: cred.RefreshToken.Reveal(),
	}, cred)
	if err == nil || !refused(err) {
		return tok, err
	}
	refusal := err.Status
	tok, err = a.authenticate(ctx, cred)
	if err != nil {
		note := fmt.Sprintf("after the refresh token was refused with HTTP %d", refusal)
		if err.Err == nil {
			err.Err = errors.New(note)
		} else {
			err.Err = fmt.Errorf("%w (%s)", err.Err, note)
		}
	}
	return tok, err
}

// authenticate exchanges the key and secret for a token.
func (a *Adapter) authenticate(ctx context.Context, cred vendors.Credential) (vendors.Token, *vendors.Error) {
	return a.call(ctx, a.authURL, pathAuthenticate, authenticateRequest{
		APIKey: cred.ClientID,
		Secret: cred.ClientSecret.Reveal(),
	}, cred)
}

// refused reports whether a refresh failure is Redox refusing the refresh
// token, after which authenticating is the way on: a 4xx other than 429.
// It is not ErrRevoked: only the key and secret can be revoked.
func refused(err *vendors.Error) bool {
	return err.Status >= 400 && err.Status < 500 && err.Status != http.StatusTooManyRequests
}

// call sends one token request to endpoint (named path in errors) and reads
// the answer.
func (a *Adapter) call(ctx context.Context, endpoint, path string, body any, cred vendors.Credential) (vendors.Token, *vendors.Error) {
	data, err := json.Marshal(body)
	if err != nil {
		return vendors.Token{}, &vendors.Error{Vendor: a.tokens.Vendor, Op: opToken, Class: vendors.ClassRejected,
			Err: fmt.Errorf("%s: encode request: %w", path, err)}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(data))
	if err != nil {
		return vendors.Token{}, &vendors.Error{Vendor: a.tokens.Vendor, Op: opToken, Class: vendors.ClassRejected,
			Err: fmt.Errorf("%s: build request: %w", path, err)}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")

	issued := a.tokens.Clock()
	// The key, secret and refresh token are in the body, never in the URL
	// that a transport error names.
	ans, verr := a.tokens.Call(req, opToken, func(ans vendors.Answer) *vendors.Error {
		return a.statusError(ans, path, cred)
	})
	if verr != nil {
		return vendors.Token{}, verr
	}
	return a.parseToken(ans, path, issued)
}

// statusError classifies a non-2xx token answer: only a 401 from
// auth/authenticate (bad key or secret) is a revocation.
func (a *Adapter) statusError(ans vendors.Answer, path string, cred vendors.Credential) *vendors.Error {
	quote := vendors.Excerpt(errorText(ans.Body), cred.Scrubber(secret.New(cred.ClientID))) // the client id is the API key
	detail := path
	if quote != "" {
		detail = path + ": " + vendors.VendorSaid(quote)
	}
	revoked := ans.Status == http.StatusUnauthorized && path == pathAuthenticate
	return a.tokens.StatusError(opToken, ans, revoked, detail)
}

// errorAnswer is the error answers' shapes: the Data Model API's
// Meta.Errors, and the OAuth and generic ones. Redox does not document
// those of its token endpoints.
type errorAnswer struct {
	Meta struct {
		Errors []struct {
			Text string `json:"Text"`
		} `json:"Errors"`
	} `json:"Meta"`
	vendors.OAuthError
}

// errorText is the message of an error answer: its error texts when it has
// a known shape, else the answer itself. The caller sanitises it.
func errorText(answer []byte) string {
	var ea errorAnswer
	if json.Unmarshal(answer, &ea) != nil {
		return string(answer)
	}
	var texts []string
	for _, e := range ea.Meta.Errors {
		if e.Text != "" {
			texts = append(texts, e.Text)
		}
	}
	switch {
	case len(texts) > 0:
		return strings.Join(texts, "; ")
	case ea.Code != "" && ea.Description != "":
		return ea.Code + ": " + ea.Description
	case ea.Code != "":
		return ea.Code
	case ea.Message != "":
		return ea.Message
	}
	return string(answer)
}

// parseToken reads a 2xx token answer. It never quotes the body: it holds
// the tokens.
func (a *Adapter) parseToken(ans vendors.Answer, path string, issued time.Time) (vendors.Token, *vendors.Error) {
	malformed := func(format string, args ...any) *vendors.Error {
		return a.tokens.Malformed(opToken, ans.Status, "%s: %w", path, fmt.Errorf(format, args...))
	}
	var tr tokenResponse
	if err := json.Unmarshal(ans.Body, &tr); err != nil {
		return vendors.Token{}, malformed("answer is not a JSON token (%d bytes, Content-Type %q)",
			len(ans.Body), vendors.Excerpt(ans.Header.Get("Content-Type"), nil))
	}
	if tr.AccessToken == "" {
		return vendors.Token{}, malformed("answer has no accessToken")
	}
	expires, err := parseExpires(tr.Expires)
	if err != nil {
		return vendors.Token{}, malformed("%w", err)
	}
	if !expires.After(issued) {
		return vendors.Token{}, malformed("expires %s is not after the request was sent (%s)",
			expires.UTC().Format(time.RFC3339), issued.UTC().Format(time.RFC3339))
	}
	return vendors.Token{
		AccessToken:     secret.New(tr.AccessToken),
		TokenType:       "Bearer",
		ClaimedLifetime: expires.Sub(issued),
		IssuedAt:        issued,
		RefreshToken:    secret.New(tr.RefreshToken),
	}, nil
}

// parseExpires reads expires: an ISO 8601 date and time as a JSON string,
// with a zone ("2015-03-25T20:52:35.000Z") or, read as UTC, without one.
func parseExpires(raw json.RawMessage) (time.Time, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return time.Time{}, errors.New("answer has no expires")
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return time.Time{}, errors.New("expires is not a string")
	}
	s = strings.TrimSpace(s)
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.ParseInLocation("2006-01-02T15:04:05.999999999", s, time.UTC); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("expires %q is not an ISO 8601 time", vendors.Excerpt(s, nil))
}
