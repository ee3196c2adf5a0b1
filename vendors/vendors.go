// Package vendors defines the one small interface every vendor adapter
// implements (getting a token for a credential) and the error classes the
// rest of tokenrelay acts on. Each vendor kind lives in its own
// subpackage; vendors/kind describes every kind (how to build its adapter
// and the rules that differ by kind) in one registry, and the sandbox that
// emulates them all is vendors/sandbox.
//
// It also holds what the adapters share: the checks of their options
// (ParseBaseURL, CheckUserAgent, HTTPClient), the sending of a request once
// with the classification of what comes back (Sender, StatusError,
// OAuthStatusError, NewTransportError) and the reading of an OAuth token
// answer (ParseToken, ParseExpiresIn). Each adapter keeps its own quirks:
// which refusals revoke, what its answers look like.
//
// This package knows HTTP and vendor quirks only: it never imports jobs,
// events or the credential store.
package vendors

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tokenrelay/tokenrelay/secret"
)

// Credential is what an adapter needs to ask a vendor for a token.
type Credential struct {
	// ID is tokenrelay's id of the credential (never sent to the vendor).
	ID string
	// ClientID is the vendor's client id (Halaxy "Client ID", OAuth client_id).
	ClientID string
	// ClientSecret is the vendor's client secret (redox-legacy: the API
	// key's secret; redox: an HS384 signing secret).
	ClientSecret secret.Value
	// PrivateKey is a PEM private key signing client assertions (redox).
	PrivateKey secret.Value
	// KeyID is the kid of PrivateKey.
	KeyID string
	// APIKey is a static API key (healthsync).
	APIKey secret.Value
	// RefreshToken is the refresh token stored from the last grant, for
	// vendors that hand one out; zero otherwise.
	RefreshToken secret.Value
}

// Scrubber redacts the credential's secrets, in every spelling, from a
// vendor's text (see secret.Scrubber): its client secret, also inside the
// HTTP Basic credential it makes with the client id, private key (and each
// of its lines), API key and refresh token, and extra (an access token, a
// signed assertion). Build one where an error is quoted, not per request.
func (c Credential) Scrubber(extra ...secret.Value) *secret.Scrubber {
	return secret.NewScrubber(c.ClientSecret, c.PrivateKey, c.APIKey, c.RefreshToken).
		AddBasic(c.ClientID, c.ClientSecret).Add(extra...)
}

// Token is what a vendor's token endpoint granted.
type Token struct {
	AccessToken secret.Value
	// TokenType is the token's type as the vendor says it, usually "Bearer".
	TokenType string
	// ClaimedLifetime is what the vendor said the token lives (expires_in).
	// The caller caps it with the vendor's max_token_lifetime: some vendors
	// (Halaxy) claim more than they honour.
	ClaimedLifetime time.Duration
	// IssuedAt is when the token request was sent (a safe lower bound of
	// the vendor's issue time).
	IssuedAt time.Time
	// RefreshToken is set by vendors that hand one out.
	RefreshToken secret.Value
}

// TokenSource gets a new access token for a credential. Implementations make
// exactly one token-endpoint call per invocation (no retries of their own:
// retrying is the caller's decision) and classify failures with the errors
// below.
type TokenSource interface {
	Token(ctx context.Context, cred Credential) (Token, error)
}

// ErrRevoked reports a definitive refusal by the vendor: the credential is
// unknown, deleted or invalid (OAuth invalid_client, 401 from the token
// endpoint). Retrying cannot help.
var ErrRevoked = errors.New("credential refused by vendor")

// Error classes, as carried by Error.Class and used in events, logs and
// metrics. They are stable strings.
const (
	ClassRevoked     = "invalid_client"     // definitive refusal
	ClassNetwork     = "network"            // connect, reset, EOF
	ClassTimeout     = "timeout"            // the call took too long
	ClassServer      = "server_error"       // 5xx
	ClassRateLimited = "rate_limited"       // 429
	ClassMalformed   = "malformed_response" // a 2xx we cannot use
	ClassRejected    = "rejected"           // other 4xx
)

// Error is a classified failure of a vendor call. Its message never contains
// a secret; it may contain a short, sanitised excerpt of the vendor's answer.
type Error struct {
	// Vendor is the vendor kind, e.g. "halaxy".
	Vendor string
	// Op is what was being done, e.g. "request token".
	Op string
	// Class is one of the Class constants.
	Class string
	// Status is the HTTP status, 0 when there was no response.
	Status int
	// RetryAfter is the vendor's Retry-After, 0 when absent.
	RetryAfter time.Duration
	// Err is the underlying error; ErrRevoked for definitive refusals.
	Err error
}

func (e *Error) Error() string {
	s := fmt.Sprintf("%s: %s: %s", e.Vendor, e.Op, e.Class)
	if e.Status != 0 {
		s += fmt.Sprintf(" (HTTP %d)", e.Status)
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// Classify returns the class of err: the Class of an *Error in its chain,
// ClassTimeout for a context deadline, ClassNetwork otherwise.
func Classify(err error) string {
	var ve *Error
	if errors.As(err, &ve) {
		return ve.Class
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return ClassTimeout
	}
	return ClassNetwork
}

// IsRevoked reports whether err is a definitive refusal of the credential.
func IsRevoked(err error) bool { return errors.Is(err, ErrRevoked) }

// RetryAfter returns the wait the vendor asked for in err, or 0.
func RetryAfter(err error) time.Duration {
	var ve *Error
	if errors.As(err, &ve) {
		return ve.RetryAfter
	}
	return 0
}
