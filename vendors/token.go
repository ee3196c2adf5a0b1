package vendors

import (
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/tokenrelay/tokenrelay/secret"
)

// ParseExpiresIn reads the expires_in of a token answer (RFC 6749 section
// 5.1): a JSON number of seconds or, as some servers send it, a string of
// one. ok is false, with no error, when the answer has none (absent or
// null); err says why any other value is not a positive number of seconds.
func ParseExpiresIn(raw json.RawMessage) (d time.Duration, ok bool, err error) {
	s := strings.TrimSpace(string(raw))
	if s == "" || s == "null" {
		return 0, false, nil
	}
	n, err := strconv.ParseFloat(strings.Trim(s, `"`), 64)
	if err != nil {
		return 0, true, errors.New("expires_in is not a positive number of seconds")
	}
	d, err = Seconds(n)
	return d, true, err
}

// Seconds turns a vendor's number of seconds into a Duration, saturating at
// the longest one. It is an error unless n is a positive number.
func Seconds(n float64) (time.Duration, error) {
	switch {
	case math.IsNaN(n) || n <= 0:
		return 0, errors.New("expires_in is not a positive number of seconds")
	case n >= float64(math.MaxInt64/int64(time.Second)):
		return math.MaxInt64, nil
	}
	return time.Duration(n * float64(time.Second)), nil
}

// TokenRules say what ParseToken asks of a token answer beyond an
// access_token.
type TokenRules struct {
	// RequireExpiresIn: an answer without expires_in is malformed. Else its
	// ClaimedLifetime is 0, which leaves the lifetime to the caller's
	// max_token_lifetime.
	RequireExpiresIn bool
	// RefreshToken: read refresh_token (a string) into Token.RefreshToken.
	// Else it is not looked at.
	RefreshToken bool
}

// tokenAnswer is an OAuth 2.0 token answer; a 2xx error answer has the
// error code instead.
type tokenAnswer struct {
	AccessToken  string          `json:"access_token"`
	TokenType    string          `json:"token_type"`
	ExpiresIn    json.RawMessage `json:"expires_in"`
	RefreshToken json.RawMessage `json:"refresh_token"`
	Error        string          `json:"error"`
}

// ParseToken reads a 2xx JSON answer of an OAuth 2.0 token endpoint (RFC
// 6749 section 5.1) to a request of op sent at issued: access_token
// (required), token_type ("Bearer" when absent), expires_in (see
// ParseExpiresIn and rules) and, as rules say, refresh_token. An answer it
// cannot use is a ClassMalformed *Error, which never quotes the answer (it
// holds the token).
func (s *Sender) ParseToken(op string, ans Answer, issued time.Time, rules TokenRules) (Token, *Error) {
	var ta tokenAnswer
	var refresh string
	err := json.Unmarshal(ans.Body, &ta)
	if err == nil && rules.RefreshToken && len(ta.RefreshToken) > 0 {
		err = json.Unmarshal(ta.RefreshToken, &refresh)
	}
	if err != nil {
		return Token{}, s.Malformed(op, ans.Status, "answer is not a JSON token (%d bytes, Content-Type %q)",
			len(ans.Body), Excerpt(ans.Header.Get("Content-Type"), nil))
	}
	if ta.AccessToken == "" {
		if ta.Error != "" {
			return Token{}, s.Malformed(op, ans.Status, "answer has no access_token but error %q", Excerpt(ta.Error, nil))
		}
		return Token{}, s.Malformed(op, ans.Status, "answer has no access_token")
	}
	lifetime, ok, err := ParseExpiresIn(ta.ExpiresIn)
	switch {
	case err != nil:
		return Token{}, s.Malformed(op, ans.Status, "%w", err)
	case !ok && rules.RequireExpiresIn:
		return Token{}, s.Malformed(op, ans.Status, "answer has no expires_in")
	}
	if ta.TokenType == "" {
		ta.TokenType = "Bearer"
	}
	return Token{
		AccessToken:     secret.New(ta.AccessToken),
		TokenType:       ta.TokenType,
		ClaimedLifetime: lifetime,
		IssuedAt:        issued,
		RefreshToken:    secret.New(refresh),
	}, nil
}
