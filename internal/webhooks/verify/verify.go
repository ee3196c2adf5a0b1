// Package verify checks that a webhook delivery comes from its vendor: the
// Standard Webhooks signature (HMAC-SHA256 over "id.timestamp.body", several
// signatures for secret rotation, a timestamp tolerance both ways), a static
// token in a header (Halaxy's authentication header, Redox's
// verification-token), a plain HMAC-SHA256 of the body in a header, or
// nothing at all when that is explicitly configured. Every comparison runs
// in constant time, and no error ever holds a secret or a signature.
package verify

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Errors a Verifier returns, checked with errors.Is.
var (
	// ErrMissingSignature: the header carrying the signature or token (or a
	// Standard Webhooks id or timestamp) is absent.
	ErrMissingSignature = errors.New("verify: signature missing")
	// ErrBadSignature: no signature or token matches any configured secret.
	ErrBadSignature = errors.New("verify: signature does not match")
	// ErrStale: the signed timestamp is further from now than the tolerance,
	// either way (a replay, or a clock far off).
	ErrStale = errors.New("verify: timestamp outside the tolerance")
)

// Verifier checks one delivery: its headers and raw body, at time now.
type Verifier interface {
	Verify(h http.Header, body []byte, now time.Time) error
}

// IDSigner is a Verifier whose signature covers a delivery id carried in a
// header (Standard Webhooks signs "id.timestamp.body"). Only such an id may
// name a delivery: an id the signature does not cover can be changed by
// whoever replays a captured delivery, to have it taken for a new one.
type IDSigner interface {
	Verifier
	// SignedID is the delivery id of a delivery that passed Verify; "" when
	// it carries none.
	SignedID(h http.Header) string
}

// Standard Webhooks header names.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// DefaultTolerance is the Standard Webhooks timestamp tolerance.
const DefaultTolerance = 5 * time.Minute

// maxSignatures bounds how many space-separated signatures are tried, so a
// forged header cannot make verification expensive.
const maxSignatures = 16

// StandardWebhooks verifies the Standard Webhooks scheme. Build it with
// NewStandardWebhooks.
type StandardWebhooks struct {
	keys      [][]byte
	tolerance time.Duration
}

var _ IDSigner = (*StandardWebhooks)(nil)

// NewStandardWebhooks makes a verifier accepting a signature by any of
// secrets (each "whsec_<base64>", or the base64 alone), with a timestamp at
// most tolerance from now either way (0: DefaultTolerance).
func NewStandardWebhooks(secrets []string, tolerance time.Duration) (*StandardWebhooks, error) {
	if len(secrets) == 0 {
		return nil, errors.New("verify: standard-webhooks needs a secret")
	}
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	v := &StandardWebhooks{tolerance: tolerance}
	for i, s := range secrets {
		key, err := DecodeStandardSecret(s)
		if err != nil {
			return nil, fmt.Errorf("verify: standard-webhooks secret %d: %w", i+1, err)
		}
		v.keys = append(v.keys, key)
	}
	return v, nil
}

// DecodeStandardSecret turns a Standard Webhooks secret ("whsec_<base64>")
// into the HMAC key. The error never holds the secret.
func DecodeStandardSecret(s string) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, "whsec_"))
	if err != nil || len(key) == 0 {
		return nil, errors.New(`not "whsec_" followed by base64`)
	}
	return key, nil
}

// SignStandard is the Standard Webhooks signature header value ("v1,<base64>")
// of a delivery, as a sender computes it.
func SignStandard(key []byte, id string, timestamp int64, body []byte) string {
	return "v1," + base64.StdEncoding.EncodeToString(standardMAC(key, id, strconv.FormatInt(timestamp, 10), body))
}

func standardMAC(key []byte, id, timestamp string, body []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write([]byte(timestamp))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// Verify implements Verifier.
func (v *StandardWebhooks) Verify(h http.Header, body []byte, now time.Time) error {
	id, ts, sigs := h.Get(HeaderID), h.Get(HeaderTimestamp), h.Get(HeaderSignature)
	if id == "" || ts == "" || sigs == "" {
		return ErrMissingSignature
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: webhook-timestamp is not unix seconds", ErrBadSignature)
	}
	if d := now.Sub(time.Unix(sec, 0)); d > v.tolerance || d < -v.tolerance || sec > maxUnix || sec < -maxUnix {
		return ErrStale
	}
	var candidates [][]byte
	for i, s := range strings.Fields(sigs) {
		if i == maxSignatures {
			break
		}
		version, sig, ok := strings.Cut(s, ",")
		if !ok || version != "v1" {
			continue // other versions (v1a asymmetric) are not ours to check
		}
		raw, err := base64.StdEncoding.Strict().DecodeString(sig) // canonical only: one encoding per MAC
		if err != nil {
			continue
		}
		candidates = append(candidates, raw)
	}
	for _, key := range v.keys {
		want := standardMAC(key, id, ts, body)
		for _, c := range candidates {
			if hmac.Equal(want, c) {
				return nil
			}
		}
	}
	return ErrBadSignature
}

// SignedID implements IDSigner: the webhook-id, which the signature covers.
func (v *StandardWebhooks) SignedID(h http.Header) string { return h.Get(HeaderID) }

// maxUnix keeps time.Unix arithmetic away from overflow.
const maxUnix = 1 << 40

// Token compares a header with one of several static tokens (Halaxy's
// authentication header, Redox's verification-token). A header value
// "Bearer <token>" also matches <token>.
type Token struct {
	header string
	tokens [][]byte
}

var _ Verifier = (*Token)(nil)

// NewToken makes a verifier of the static token in header.
func NewToken(header string, tokens []string) (*Token, error) {
	if header == "" || len(tokens) == 0 {
		return nil, errors.New("verify: token needs a header and a token")
	}
	v := &Token{header: header}
	for _, t := range tokens {
		if t == "" {
			return nil, errors.New("verify: empty token")
		}
		v.tokens = append(v.tokens, []byte(t))
	}
	return v, nil
}

// Verify implements Verifier.
func (v *Token) Verify(h http.Header, _ []byte, _ time.Time) error {
	got := h.Get(v.header)
	if got == "" {
		return ErrMissingSignature
	}
	return v.Match(got)
}

// Match compares a presented token with the configured ones (Redox's
// verification handshake carries it in the body or the query).
func (v *Token) Match(got string) error {
	candidates := []string{got}
	if scheme, rest, ok := strings.Cut(got, " "); ok && strings.EqualFold(scheme, "Bearer") {
		candidates = append(candidates, strings.TrimSpace(rest))
	}
	match := 0
	for _, want := range v.tokens {
		for _, c := range candidates {
			match |= subtle.ConstantTimeCompare(want, []byte(c))
		}
	}
	if match == 1 {
		return nil
	}
	return ErrBadSignature
}

// HMACSHA256 checks the HMAC-SHA256 of the body, keyed with one of several
// secrets, found in a header as hex or base64, optionally after "sha256=".
type HMACSHA256 struct {
	header string
	keys   [][]byte
}

var _ Verifier = (*HMACSHA256)(nil)

// NewHMACSHA256 makes a verifier of the body HMAC in header.
func NewHMACSHA256(header string, secrets []string) (*HMACSHA256, error) {
	if header == "" || len(secrets) == 0 {
		return nil, errors.New("verify: hmac-sha256 needs a header and a secret")
	}
	v := &HMACSHA256{header: header}
	for _, s := range secrets {
		if s == "" {
			return nil, errors.New("verify: empty secret")
		}
		v.keys = append(v.keys, []byte(s))
	}
	return v, nil
}

// Verify implements Verifier.
func (v *HMACSHA256) Verify(h http.Header, body []byte, _ time.Time) error {
	got := h.Get(v.header)
	if got == "" {
		return ErrMissingSignature
	}
	got = strings.TrimPrefix(strings.TrimSpace(got), "sha256=")
	var candidates [][]byte
	if raw, err := hex.DecodeString(got); err == nil {
		candidates = append(candidates, raw)
	}
	if raw, err := base64.StdEncoding.Strict().DecodeString(got); err == nil {
		candidates = append(candidates, raw)
	}
	for _, key := range v.keys {
		m := hmac.New(sha256.New, key)
		m.Write(body)
		want := m.Sum(nil)
		for _, c := range candidates {
			if hmac.Equal(want, c) {
				return nil
			}
		}
	}
	return ErrBadSignature
}

// None accepts every delivery. Use it only where the configuration says so
// explicitly (verify: none with accept_unverified: true).
type None struct{}

var _ Verifier = None{}

// Verify implements Verifier: it accepts everything.
func (None) Verify(http.Header, []byte, time.Time) error { return nil }
