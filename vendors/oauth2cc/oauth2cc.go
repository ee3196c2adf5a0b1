// Package oauth2cc is the adapter of a generic OAuth 2.0 client credentials
// token endpoint (vendor kind "oauth2", RFC 6749 section 4.4): a
// form-encoded POST of grant_type=client_credentials, built on
// golang.org/x/oauth2/clientcredentials.
//
// Client authentication defaults to HTTP Basic (oauth2.AuthStyleInHeader),
// the method RFC 6749 section 2.3.1 says every server must support;
// oauth2.AuthStyleInParams is available for servers that want the id and
// secret in the body. The library's auto-detection is never used: after a
// failure it sends the request again the other way, and an adapter makes
// exactly one token-endpoint call per Token.
package oauth2cc

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/vendors"
)

// Kind is the vendor kind of this adapter, as in the configuration.
const Kind = "oauth2"

const opToken = "request token"

// Options configure an Adapter.
type Options struct {
	// TokenURL is the token endpoint. Required.
	TokenURL string
	// Scopes are requested as the space-separated scope parameter; none
	// by default.
	Scopes []string
	// UserAgent, when set, is sent on every token request.
	UserAgent string
	// AuthStyle is how the client id and secret are sent:
	// oauth2.AuthStyleInHeader (HTTP Basic, the default, also chosen for
	// oauth2.AuthStyleAutoDetect) or oauth2.AuthStyleInParams (in the body).
	AuthStyle oauth2.AuthStyle
	// HTTPClient sends the requests. Default: a client with a 30 s timeout.
	// Token requests never follow redirects, whatever its CheckRedirect.
	HTTPClient *http.Client
	// Clock gives the time a token request is sent. Default time.Now.
	Clock func() time.Time
	// VendorName names the vendor in errors (vendors.Error.Vendor).
	// Default Kind ("oauth2").
	VendorName string
}

// Adapter gets tokens from one token endpoint for any number of
// credentials. It is safe for concurrent use.
type Adapter struct {
	tokenURL  string
	scopes    []string
	authStyle oauth2.AuthStyle
	sender    *vendors.Sender // its client never follows redirects
}

var _ vendors.TokenSource = (*Adapter)(nil)

// New checks opts and makes an Adapter.
func New(opts Options) (*Adapter, error) {
	if opts.TokenURL == "" {
		return nil, errors.New("oauth2cc: token_url is required")
	}
	if _, err := vendors.ParseHTTPURL(opts.TokenURL); err != nil {
		return nil, fmt.Errorf("oauth2cc: token_url %q %w", opts.TokenURL, err)
	}
	switch opts.AuthStyle {
	case oauth2.AuthStyleAutoDetect:
		opts.AuthStyle = oauth2.AuthStyleInHeader
	case oauth2.AuthStyleInHeader, oauth2.AuthStyleInParams:
	default:
		return nil, fmt.Errorf("oauth2cc: unknown auth style %d", opts.AuthStyle)
	}
	if err := vendors.CheckUserAgent(opts.UserAgent); err != nil {
		return nil, fmt.Errorf("oauth2cc: %w", err)
	}
	return &Adapter{
		tokenURL:  opts.TokenURL,
		scopes:    append([]string(nil), opts.Scopes...),
		authStyle: opts.AuthStyle,
		sender:    vendors.NewSender(cmp.Or(opts.VendorName, Kind), opts.HTTPClient, opts.Clock, opts.UserAgent),
	}, nil
}

// Token asks the token endpoint for an access token for cred: exactly one
// HTTP request, never retried. Failures are *vendors.Error: ClassRevoked
// (wrapping vendors.ErrRevoked) for a 401 or an invalid_client /
// unauthorized_client error, ClassRateLimited for 429, ClassServer for 5xx
// (both with the Retry-After), ClassMalformed for a 2xx without a usable
// token, ClassNetwork and ClassTimeout when no answer came, ClassRejected
// for anything else. Their messages never hold the secret or a token.
//
// ClaimedLifetime is expires_in; it is 0 when the server does not send it
// (RFC 6749 makes it optional), which leaves the lifetime to the caller's
// max_token_lifetime.
func (a *Adapter) Token(ctx context.Context, cred vendors.Credential) (vendors.Token, error) {
	rec := &recorder{base: a.sender.Client.Transport, userAgent: a.sender.UserAgent}
	if rec.base == nil {
		rec.base = http.DefaultTransport // only for a caller's client without a transport
	}
	hc := *a.sender.Client // never following redirects
	hc.Transport = rec
	cfg := clientcredentials.Config{
		ClientID:     cred.ClientID,
		ClientSecret: cred.ClientSecret.Reveal(),
		TokenURL:     a.tokenURL,
		Scopes:       a.scopes,
		AuthStyle:    a.authStyle,
	}

	issued := a.sender.Clock()
	tok, err := cfg.Token(context.WithValue(ctx, oauth2.HTTPClient, &hc))
	if err != nil {
		return vendors.Token{}, a.classify(err, rec, cred)
	}
	lifetime, err := expiresIn(tok.Extra("expires_in"))
	if err != nil {
		return vendors.Token{}, a.malformed(rec, err.Error())
	}
	typ := tok.TokenType
	if typ == "" {
		typ = "Bearer"
	}
	return vendors.Token{
		AccessToken:     secret.New(tok.AccessToken),
		TokenType:       typ,
		ClaimedLifetime: lifetime,
		IssuedAt:        issued,
		RefreshToken:    secret.New(tok.RefreshToken),
	}, nil
}

// classify turns the library's error into a *vendors.Error. It never wraps
// the library's error itself: oauth2.RetrieveError's message holds the
// response body.
func (a *Adapter) classify(err error, rec *recorder, cred vendors.Credential) *vendors.Error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.Response != nil {
		return a.statusError(re, cred)
	}
	if rec.readErr != nil {
		e := vendors.NewTransportError(a.sender.Vendor, opToken, rec.readErr)
		e.Status = rec.status
		return e
	}
	if rec.status == 0 {
		// No answer: the error is the HTTP client's, which names the URL and
		// the cause but no secret (the credentials are in a header or the body).
		return vendors.NewTransportError(a.sender.Vendor, opToken, err)
	}
	// An answer came and the library could not use it.
	return a.malformed(rec, "answer is not a usable token")
}

// statusError classifies an error answer: a 5xx is ClassServer even with an
// invalid_client code (a server in trouble is no definitive refusal, and a
// false revocation stops the credential); a 401 or invalid_client /
// unauthorized_client is ClassRevoked; other 4xx and 3xx, and a 2xx
// carrying another OAuth error code, are ClassRejected.
func (a *Adapter) statusError(re *oauth2.RetrieveError, cred vendors.Credential) *vendors.Error {
	ans := vendors.Answer{Status: re.Response.StatusCode, Header: re.Response.Header, Body: re.Body}
	oe := vendors.OAuthError{Code: re.ErrorCode, Description: re.ErrorDescription}
	body := ans.Body
	if ans.OK() {
		body = nil // it may hold a token
	}
	revoked := ans.Status == http.StatusUnauthorized || oe.RefusesClient()
	return a.sender.StatusError(opToken, ans, revoked, vendors.VendorSaid(oe.Quote(body, cred.Scrubber())))
}

// malformed reports a 2xx answer without a usable token. It never quotes
// the body, which may hold the token.
func (a *Adapter) malformed(rec *recorder, why string) *vendors.Error {
	media, _, _ := mime.ParseMediaType(rec.header.Get("Content-Type"))
	detail := why
	switch {
	case media == "application/x-www-form-urlencoded" || media == "text/plain":
		detail += " (form-encoded answer)"
	case rec.body.Len() > 0 && !json.Valid(rec.body.Bytes()):
		detail += " (answer is not valid JSON)"
	}
	return a.sender.Malformed(opToken, rec.status, "%s", detail)
}

// expiresIn reads the expires_in the library kept in the token's extra
// fields: a JSON number, an int64 or float64 parsed from a form-encoded
// answer, or a string (some servers quote it).
func expiresIn(v any) (time.Duration, error) {
	var n float64
	switch v := v.(type) {
	case nil:
		return 0, nil
	case float64:
		n = v
	case int64: // a form-encoded answer
		n = float64(v)
	case json.Number:
		f, err := v.Float64()
		if err != nil {
			return 0, errors.New("expires_in is not a number")
		}
		n = f
	case string:
		if v == "" {
			return 0, nil
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil {
			return 0, errors.New("expires_in is not a number")
		}
		n = f
	default:
		return 0, errors.New("expires_in is not a number")
	}
	return vendors.Seconds(n)
}

// recorder is the transport of one Token call: it adds the User-Agent and
// remembers what came back, so that a failure can be told apart as "no
// answer" (network, timeout) or "an answer we cannot use" (malformed),
// which the library's plain errors do not say.
type recorder struct {
	base      http.RoundTripper
	userAgent string

	status  int
	header  http.Header
	body    bytes.Buffer // what the library read, to describe a malformed answer
	readErr error        // a failure while reading the answer
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	if r.userAgent != "" {
		req = req.Clone(req.Context())
		req.Header.Set("User-Agent", r.userAgent)
	}
	resp, err := r.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	r.status = resp.StatusCode
	r.header = resp.Header
	resp.Body = &recordingBody{ReadCloser: resp.Body, r: r}
	return resp, nil
}

type recordingBody struct {
	io.ReadCloser
	r *recorder
}

func (b *recordingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.r.body.Write(p[:n])
	if err != nil && !errors.Is(err, io.EOF) {
		b.r.readErr = err
	}
	return n, err
}
