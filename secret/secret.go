// Package secret holds Value, the type every secret (client secret, API key,
// access or refresh token, webhook secret, master key) travels in, so that
// printing, logging or JSON-encoding one by mistake shows a fingerprint and
// never the secret itself.
package secret

import (
	"crypto/sha256"
	"encoding/hex"
)

// Value is a secret string. Its String, GoString, MarshalJSON, MarshalText
// and zerolog rendering show only a short fingerprint; Reveal is the one way
// to get at the secret, so every use of it is easy to find.
type Value struct {
	s string
}

// New wraps s as a secret.
func New(s string) Value { return Value{s: s} }

// Reveal returns the secret itself. Call it only where the secret leaves
// the process for the party it belongs to (a vendor, an encrypted store).
func (v Value) Reveal() string { return v.s }

// IsZero reports whether the secret is empty.
func (v Value) IsZero() bool { return v.s == "" }

// Fingerprint is a short, stable, non-reversible identifier of the secret:
// "sha256:" and the first 12 hex digits of its SHA-256. An empty secret has
// the fingerprint "".
func (v Value) Fingerprint() string {
	if v.s == "" {
		return ""
	}
	return Fingerprint(v.s)
}

// Fingerprint returns the fingerprint of a raw string, as Value.Fingerprint.
func Fingerprint(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(sum[:6])
}

// Equal reports whether two secrets are the same.
func (v Value) Equal(o Value) bool { return v.s == o.s }

// String implements fmt.Stringer without revealing the secret.
func (v Value) String() string {
	if v.s == "" {
		return "[empty secret]"
	}
	return "[secret " + v.Fingerprint() + "]"
}

// GoString keeps %#v from printing the secret.
func (v Value) GoString() string { return v.String() }

// MarshalJSON encodes the fingerprint, never the secret.
func (v Value) MarshalJSON() ([]byte, error) {
	return []byte(`"` + v.String() + `"`), nil
}

// MarshalText encodes the fingerprint, never the secret.
func (v Value) MarshalText() ([]byte, error) { return []byte(v.String()), nil }
