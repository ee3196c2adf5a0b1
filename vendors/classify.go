package vendors

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/tokenrelay/tokenrelay/secret"
)

// OAuthError is the error of an OAuth 2.0 error answer (RFC 6749 section
// 5.2), with the "message" some vendors send instead of error_description.
type OAuthError struct {
	Code        string `json:"error"`
	Description string `json:"error_description"`
	Message     string `json:"message"`
}

// ParseOAuthError reads an error answer's body as an OAuth error. Code is
// "" when the body is not a JSON object with an error code.
func ParseOAuthError(body []byte) OAuthError {
	var oe OAuthError
	if json.Unmarshal(body, &oe) != nil {
		return OAuthError{}
	}
	return oe
}

// RefusesClient reports whether the code refuses the client itself:
// invalid_client or unauthorized_client.
func (oe OAuthError) RefusesClient() bool {
	return oe.Code == "invalid_client" || oe.Code == "unauthorized_client"
}

// Quote is what an Error may quote of an error answer whose body is body:
// "code: description" (the code alone without a description) when the
// answer is an OAuth error, and nothing else of it; else the body. Either
// is sanitised by Excerpt: bounded, every spelling of sc's secrets removed.
// Never pass the body of a 2xx that may hold a token: pass nil.
func (oe OAuthError) Quote(body []byte, sc *secret.Scrubber) string {
	q := string(body)
	if oe.Code != "" {
		q = oe.Code
		if oe.Description != "" {
			q += ": " + oe.Description
		}
	}
	return Excerpt(q, sc)
}

// VendorSaid is the detail of an Error quoting the vendor: `vendor said
// "quote"`, or "" when quote is empty. quote must come from Excerpt.
func VendorSaid(quote string) string {
	if quote == "" {
		return ""
	}
	return fmt.Sprintf("vendor said %q", quote)
}

// StatusError classifies a vendor's error answer to op (a status outside
// 2xx, or a 2xx that is an OAuth error):
//
//   - 429 is ClassRateLimited and 5xx ClassServer, both with the answer's
//     Retry-After (read at s.Clock()), whatever else the answer says: a
//     server in trouble is no definitive refusal, and a false revocation
//     stops the credential;
//   - else ClassRevoked, wrapping ErrRevoked, when revoked (the adapter's
//     reading of the answer: a 401, invalid_client...);
//   - else ClassRejected (other 4xx, redirects).
//
// detail, when not empty, ends the Error's message (see VendorSaid); it
// must hold no secret.
func (s *Sender) StatusError(op string, ans Answer, revoked bool, detail string) *Error {
	e := &Error{Vendor: s.Vendor, Op: op, Status: ans.Status}
	switch {
	case ans.Status == http.StatusTooManyRequests:
		e.Class = ClassRateLimited
		e.RetryAfter = ParseRetryAfter(ans.Header.Get("Retry-After"), s.Clock())
	case ans.Status >= 500:
		e.Class = ClassServer
		e.RetryAfter = ParseRetryAfter(ans.Header.Get("Retry-After"), s.Clock())
	case revoked:
		e.Class = ClassRevoked
		e.Err = ErrRevoked
		if detail != "" {
			e.Err = fmt.Errorf("%w: %s", ErrRevoked, detail)
		}
		return e
	default:
		e.Class = ClassRejected
	}
	if detail != "" {
		e.Err = errors.New(detail)
	}
	return e
}

// OAuthStatusError is StatusError for the error answer of a token endpoint
// that refuses a client as RFC 6749 section 5.2 says: a 401, or a 400 with
// invalid_client or unauthorized_client, is ClassRevoked. Its message quotes
// the answer (see OAuthError.Quote) scrubbed of sc's secrets.
func (s *Sender) OAuthStatusError(op string, ans Answer, sc *secret.Scrubber) *Error {
	oe := ParseOAuthError(ans.Body)
	revoked := ans.Status == http.StatusUnauthorized || ans.Status == http.StatusBadRequest && oe.RefusesClient()
	return s.StatusError(op, ans, revoked, VendorSaid(oe.Quote(ans.Body, sc)))
}

// Malformed reports a 2xx answer to op, of status, that the adapter cannot
// use: ClassMalformed, the message made of format and args. It must not
// quote the answer, which may hold a token.
func (s *Sender) Malformed(op string, status int, format string, args ...any) *Error {
	return &Error{Vendor: s.Vendor, Op: op, Class: ClassMalformed, Status: status, Err: fmt.Errorf(format, args...)}
}
