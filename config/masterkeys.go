package config

import (
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/tokenrelay/tokenrelay/secret"
)

// Environment variables of the master keys besides TOKENRELAY_SECRET_KEY
// (see docs/keys.md). Keys are only ever read from the environment, never
// from the file.
const (
	// EnvSecretKeysPrevious lists earlier master keys (base64, separated by
	// commas), kept to open what they sealed until the re-seal has sealed
	// it again under the current key.
	EnvSecretKeysPrevious = "TOKENRELAY_SECRET_KEYS_PREVIOUS"
	// EnvKMSURL is the gocloud.dev/secrets URL of the KMS key that wraps
	// the master keys (base64key://, awskms://, gcpkms://,
	// azurekeyvault://, hashivault://).
	EnvKMSURL = "TOKENRELAY_KMS_URL"
	// EnvSecretKeyWrapped is the current master key wrapped by the KMS
	// (base64 of the KMS's ciphertext), instead of TOKENRELAY_SECRET_KEY.
	EnvSecretKeyWrapped = "TOKENRELAY_SECRET_KEY_WRAPPED"
	// EnvSecretKeysPreviousWrapped lists earlier master keys wrapped by the
	// KMS (base64, separated by commas).
	EnvSecretKeysPreviousWrapped = "TOKENRELAY_SECRET_KEYS_PREVIOUS_WRAPPED"
)

// KMS is where the master keys come from when they are wrapped by a KMS
// (envelope encryption): the process unwraps them at start, so the plain
// keys are never in its environment. Read only from the environment. Zero:
// no KMS, the keys are given plain.
type KMS struct {
	// URL opens the KMS key (TOKENRELAY_KMS_URL).
	URL string
	// Wrapped is the current master key as the KMS encrypted it
	// (TOKENRELAY_SECRET_KEY_WRAPPED); not secret without the KMS.
	Wrapped []byte
	// PreviousWrapped are earlier master keys as the KMS encrypted them
	// (TOKENRELAY_SECRET_KEYS_PREVIOUS_WRAPPED).
	PreviousWrapped [][]byte
}

// masterKeys reads the master keys from the environment: the current one
// plain (TOKENRELAY_SECRET_KEY) or wrapped (TOKENRELAY_SECRET_KEY_WRAPPED
// with TOKENRELAY_KMS_URL), and the previous ones, plain or wrapped. A key
// of the wrong size, a key given twice, or a wrapped key without a KMS is
// a problem naming the variable, never its value.
func masterKeys(lookup func(string) (string, bool), p *problems) (secret.Value, []secret.Value, KMS) {
	get := func(env string) string {
		if v, ok := lookup(env); ok {
			return strings.TrimSpace(v)
		}
		return ""
	}
	kms := KMS{URL: get(EnvKMSURL)}
	var current secret.Value
	switch wrapped := get(EnvSecretKeyWrapped); {
	case wrapped != "" && get(EnvSecretKey) != "":
		p.add(EnvSecretKey, "set together with %s: give the current master key one way only", EnvSecretKeyWrapped)
	case wrapped != "":
		kms.Wrapped, _ = decodeWrapped(EnvSecretKeyWrapped, wrapped, p)
	default:
		current = secretKey(lookup, p)
	}

	seen := map[string]string{}
	if !current.IsZero() {
		seen[current.Reveal()] = EnvSecretKey
	}
	previous := previousKeys(splitList(get(EnvSecretKeysPrevious)), seen, p)
	for i, s := range splitList(get(EnvSecretKeysPreviousWrapped)) {
		where := fmt.Sprintf("%s (key %d)", EnvSecretKeysPreviousWrapped, i+1)
		if w, ok := decodeWrapped(where, s, p); ok {
			kms.PreviousWrapped = append(kms.PreviousWrapped, w)
		}
	}
	wrappedAny := kms.Wrapped != nil || len(kms.PreviousWrapped) > 0
	switch {
	case wrappedAny && kms.URL == "":
		p.add(EnvKMSURL, "not set, but wrapped master keys are given: name the KMS key that unwraps them (e.g. awskms:///alias/tokenrelay)")
	case !wrappedAny && kms.URL != "":
		p.add(EnvKMSURL, "set, but no wrapped master key is: give %s (make one with: tokenrelay keys wrap -kms URL)", EnvSecretKeyWrapped)
	}
	return current, previous, kms
}

// previousKeys decodes the plain previous master keys (base64), each
// once; seen maps each key already given to the variable that gave it.
func previousKeys(list []string, seen map[string]string, p *problems) []secret.Value {
	var previous []secret.Value
	for i, s := range list {
		where := fmt.Sprintf("%s (key %d)", EnvSecretKeysPrevious, i+1)
		key, ok := decodeKey(where, s, p)
		if !ok {
			continue
		}
		if first, dup := seen[string(key)]; dup {
			p.add(where, "is the same key as %s: list each key once", first)
			continue
		}
		seen[string(key)] = where
		previous = append(previous, secret.New(string(key)))
	}
	return previous
}

// decodeWrapped decodes a wrapped key (base64 of the KMS's ciphertext).
func decodeWrapped(env, s string, p *problems) ([]byte, bool) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil && len(b) > 0 {
			return b, true
		}
	}
	p.add(env, "not valid base64 (print one with: tokenrelay keys wrap -kms URL)")
	return nil, false
}

// splitList splits a comma-separated list, dropping empty items.
func splitList(s string) []string {
	var out []string
	for item := range strings.SplitSeq(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}
