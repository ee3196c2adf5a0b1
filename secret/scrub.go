package secret

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"
)

// Redacted is what a Scrubber puts where a secret was.
const Redacted = "[redacted]"

// MinPrefix is the shortest beginning of a secret's spelling that a
// Scrubber redacts on its own: a vendor echoing a secret cut short (or a
// text cut at its limit) leaks at most MinPrefix-1 characters of it. A
// secret shorter than MinPrefix is redacted only whole. Eight characters
// are 48 bits or more of a random secret; fewer would redact ordinary
// words that happen to begin a secret.
const MinPrefix = 8

// Scrubber removes from a text every spelling of a set of secrets: the
// secret verbatim, URL-encoded (query and path escaping, upper or lower
// case hex), JSON-escaped (once and twice, with and without HTML escaping),
// hex, and base64 (standard and URL alphabets, padded or raw, at any byte
// alignment inside a longer encoded value, and inside an HTTP Basic
// credential "user:secret" added with AddBasic). Each spelling is redacted
// wherever a beginning of it of at least MinPrefix characters appears,
// however much of the rest follows. The lines of a multi-line secret (a PEM
// private key) are secrets of their own.
//
// Build it with NewScrubber, Add and AddBasic, then use it: Scrub and
// Excerpt are safe for concurrent use, the builders are not. A nil
// *Scrubber redacts nothing.
type Scrubber struct {
	needles  []needle
	seen     map[string]struct{}
	shortest int // length of the shortest anchor; shorter texts hold no secret
}

// needle is one spelling of a secret: s is redacted from its first min
// bytes on, as far as the text follows s.
type needle struct {
	s   string
	min int
}

// NewScrubber returns a Scrubber of secrets; zero values are skipped.
func NewScrubber(secrets ...Value) *Scrubber {
	s := &Scrubber{seen: map[string]struct{}{}}
	return s.Add(secrets...)
}

// Add adds secrets (zero values are skipped) and returns s.
func (s *Scrubber) Add(secrets ...Value) *Scrubber {
	for _, v := range secrets {
		s.addSecret(v.s)
	}
	return s
}

// AddBasic adds the HTTP Basic credential of user and password (RFC 7617:
// base64 of "user:password"), also with both parts form-encoded first as
// RFC 6749 section 2.3.1 asks of OAuth clients, and the password itself.
// The user (a client id) is no secret: a beginning of the encoding is
// redacted only once it reaches into the password.
func (s *Scrubber) AddBasic(user string, password Value) *Scrubber {
	if password.IsZero() {
		return s
	}
	s.Add(password)
	p := password.s
	for _, pair := range [][2]string{{user, p}, {url.QueryEscape(user), url.QueryEscape(p)}, {"", p}} {
		head := pair[0] + ":"
		plain := head + pair[1]
		// The first base64 characters that depend on MinPrefix bytes of
		// the password (or all of it).
		from := base64.StdEncoding.EncodedLen(len(head) + min(len(pair[1]), MinPrefix))
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
			s.addNeedle(enc.EncodeToString([]byte(plain)), from)
		}
	}
	// "password:" begins as the password's own encoding does.
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
		s.addNeedle(enc.EncodeToString([]byte(p+":")), MinPrefix)
	}
	return s
}

func (s *Scrubber) addSecret(raw string) {
	if raw == "" {
		return
	}
	if s.seen == nil {
		s.seen = map[string]struct{}{}
	}
	if strings.ContainsAny(raw, "\r\n") {
		for line := range strings.Lines(raw) {
			line = strings.TrimSpace(line)
			if len(line) >= MinPrefix && !strings.HasPrefix(line, "-----") { // PEM armour is no secret
				s.addSecret(line)
			}
		}
	}
	for _, sp := range spellings(raw) {
		s.addNeedle(sp, MinPrefix)
	}
	// base64 of a value the secret is part of: the characters that depend
	// on the secret alone, at each of the three byte alignments.
	b := []byte(raw)
	for pad := 0; pad < 3; pad++ {
		buf := append(make([]byte, pad, pad+len(b)), b...)
		whole := (len(buf) / 3) * 3 // the full groups: no byte of what follows
		start := 0
		if pad > 0 {
			start = 3 // the group mixed with what precedes
		}
		if whole-start < 3 {
			continue
		}
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
			e := enc.EncodeToString(buf[start:whole])
			if len(e) >= MinPrefix {
				s.addNeedle(e, MinPrefix)
			}
		}
	}
}

// spellings are the ways a secret is written in text, itself first.
func spellings(raw string) []string {
	out := []string{raw}
	q, p := url.QueryEscape(raw), url.PathEscape(raw)
	out = append(out, q, p, lowerEscapes(q), lowerEscapes(p))
	j := jsonEscape(raw, true)
	out = append(out, j, jsonEscape(raw, false), jsonEscape(j, true), jsonEscape(j, false))
	h := hex.EncodeToString([]byte(raw))
	out = append(out, h, strings.ToUpper(h))
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
		out = append(out, enc.EncodeToString([]byte(raw)))
	}
	return out
}

// jsonEscape is s as it appears inside a JSON string.
func jsonEscape(s string, html bool) string {
	if !html {
		var b strings.Builder
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(s)
		out := strings.TrimSuffix(b.String(), "\n")
		return out[1 : len(out)-1]
	}
	b, _ := json.Marshal(s)
	return string(b[1 : len(b)-1])
}

// lowerEscapes writes the hex digits of percent escapes in lower case.
func lowerEscapes(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	b := []byte(s)
	for i := 0; i+2 < len(b); i++ {
		if b[i] == '%' {
			b[i+1], b[i+2] = lowerHex(b[i+1]), lowerHex(b[i+2])
			i += 2
		}
	}
	return string(b)
}

func lowerHex(c byte) byte {
	if c >= 'A' && c <= 'F' {
		return c + 'a' - 'A'
	}
	return c
}

func (s *Scrubber) addNeedle(sp string, least int) {
	if sp == "" {
		return
	}
	if _, ok := s.seen[sp]; ok {
		return
	}
	s.seen[sp] = struct{}{}
	least = min(max(1, least), len(sp))
	s.needles = append(s.needles, needle{s: sp, min: least})
	if s.shortest == 0 || least < s.shortest {
		s.shortest = least
	}
}

// Scrub returns text with every spelling of every secret, and every
// beginning of one at least MinPrefix long, replaced by Redacted.
func (s *Scrubber) Scrub(text string) string { return s.scrub(text, false) }

// Excerpt is a bounded, scrubbed head of text: at most max bytes, cut on a
// rune boundary. Only the head is looked at, however long text is; where
// text is cut, an end that could begin a secret's spelling (of any length)
// is redacted too.
func (s *Scrubber) Excerpt(text string, max int) string {
	cut := len(text) > max
	if cut {
		text = Truncate(text, max)
	}
	return Truncate(s.scrub(text, cut), max)
}

// scrub replaces the spans of text that spell a secret. cut says text was
// cut from a longer one: then an end of it that begins a spelling is a
// span too.
func (s *Scrubber) scrub(text string, cut bool) string {
	if s == nil || len(s.needles) == 0 || len(text) < s.shortest && !cut {
		return text
	}
	var spans [][2]int
	for _, n := range s.needles {
		anchor := n.s[:n.min]
		for off := 0; off < len(text); {
			i := strings.Index(text[off:], anchor)
			if i < 0 {
				break
			}
			i += off
			j := i + n.min
			for j < len(text) && j-i < len(n.s) && text[j] == n.s[j-i] {
				j++
			}
			spans = append(spans, [2]int{i, j})
			off = i + 1
		}
		if cut {
			if k := tailPrefix(text, n.s); k > 0 {
				spans = append(spans, [2]int{len(text) - k, len(text)})
			}
		}
	}
	if len(spans) == 0 {
		return text
	}
	slices.SortFunc(spans, func(a, b [2]int) int { return a[0] - b[0] })
	var b strings.Builder
	b.Grow(len(text))
	at := 0 // text before at is written
	for k := 0; k < len(spans); {
		start, end := spans[k][0], spans[k][1]
		for k++; k < len(spans) && spans[k][0] <= end; k++ {
			end = max(end, spans[k][1])
		}
		b.WriteString(text[at:start])
		b.WriteString(Redacted)
		at = end
	}
	b.WriteString(text[at:])
	return b.String()
}

// tailPrefix is the length of the longest end of text that begins sp (and
// is not all of it), 0 when none.
func tailPrefix(text, sp string) int {
	from := max(0, len(text)-len(sp)+1)
	for i := from; i < len(text); i++ {
		if text[i] == sp[0] && strings.HasPrefix(sp, text[i:]) {
			return len(text) - i
		}
	}
	return 0
}

// Truncate cuts s to at most n bytes, on a rune boundary.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	if n <= 0 {
		return ""
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
