package config

import "github.com/tokenrelay/tokenrelay/secret"

// MinTokenLength is the fewest characters http.admin_token and
// http.metrics_token may have: 32 random bytes written in base64url
// without padding (openssl rand -base64 32 writes 44 characters, openssl
// rand -hex 32 writes 64).
const MinTokenLength = 43

// minTokenDistinct is the fewest distinct characters such a token may
// have. A random one of MinTokenLength characters has about 30 (base64) or
// all 16 (hex); "aaaa…" or "abcabc…" have a handful.
const minTokenDistinct = 10

// validateHTTPTokens refuses a bearer token that is set but could be
// guessed: shorter than MinTokenLength, or with too few distinct
// characters to be random. The message never shows the token.
func (c *Config) validateHTTPTokens(p *problems) {
	for _, t := range []struct {
		path  string
		value secret.Value
	}{
		{"http.admin_token", c.HTTP.AdminToken},
		{"http.metrics_token", c.HTTP.MetricsToken},
	} {
		if msg := weakToken(t.value); msg != "" {
			p.add(t.path, "%s (generate one with: openssl rand -base64 32)", msg)
		}
	}
}

// weakToken says what is wrong with a set token, or "" when nothing is
// (an empty token is not set: the routes it guards are off or open).
func weakToken(v secret.Value) string {
	if v.IsZero() {
		return ""
	}
	s := v.Reveal()
	if len(s) < MinTokenLength {
		return "is too short: a bearer token must be at least 43 characters of 32 random bytes"
	}
	distinct := map[rune]bool{}
	for _, r := range s {
		distinct[r] = true
	}
	if len(distinct) < minTokenDistinct {
		return "is not random: it repeats too few characters (fewer than 10 distinct)"
	}
	return ""
}
