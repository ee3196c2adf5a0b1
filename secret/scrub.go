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

// MinRun is the shortest run of characters of a secret's spelling that a
// Scrubber redacts on its own: wherever MinRun characters in a row of a
// spelling appear (its beginning, a vendor echoing it cut short, its middle
// left over by an encoding not foreseen), they are redacted, so at most
// MinRun-1 characters of a secret in a row survive. A secret shorter than
// MinRun is redacted only whole. Eight characters are 48 bits or more of a
// random secret; fewer would redact ordinary words that share a piece with
// a secret.
const MinRun = 8

// Scrubber removes from a text every spelling of a set of secrets: the
// secret verbatim, URL-encoded (query and path escaping, upper or lower
// case hex), JSON-escaped (with and without HTML escaping), any two of
// these in a row (a JSON string holding a form-encoded body), hex, and
// base64 (standard and URL alphabets, padded or raw, at any byte alignment
// inside a longer encoded value, and inside an HTTP Basic credential
// "user:secret" added with AddBasic), each also URL-encoded or JSON-escaped.
// Any MinRun characters in a row of a spelling are redacted (see MinRun).
// The lines of a multi-line secret (a PEM private key) are secrets of their
// own.
//
// Build it with NewScrubber, Add and AddBasic, then use it: Scrub and
// Excerpt are safe for concurrent use, the builders are not. A nil
// *Scrubber redacts nothing. Building costs a map entry per character of
// each spelling: build one where an error is quoted, not per request.
type Scrubber struct {
	grams  map[uint64]struct{} // every MinRun bytes in a row of a spelling
	whole  []string            // spellings shorter than MinRun, redacted whole
	starts []string            // spellings, for a text cut short (see Excerpt)
	seen   map[string]struct{}
}

// NewScrubber returns a Scrubber of secrets; zero values are skipped.
func NewScrubber(secrets ...Value) *Scrubber {
	s := &Scrubber{grams: map[uint64]struct{}{}, seen: map[string]struct{}{}}
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
// The user (a client id) is no secret: the characters of the encoding that
// depend on it alone are left alone.
func (s *Scrubber) AddBasic(user string, password Value) *Scrubber {
	if password.IsZero() {
		return s
	}
	s.Add(password)
	p := password.s
	for _, pair := range [][2]string{{user, p}, {url.QueryEscape(user), url.QueryEscape(p)}, {"", p}, {p, ""}} {
		plain := pair[0] + ":" + pair[1]
		from := 0
		if pair[0] != p {
			from = len(pair[0]) / 3 * 4 // the first character that depends on the password
		}
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
			e := enc.EncodeToString([]byte(plain))
			s.addSpelling(e, from)
			// Escaping works character by character: the escaped secret
			// part is part of the escaped whole.
			for _, t := range escapes(e[from:]) {
				s.addSpelling(t, 0)
			}
		}
	}
	return s
}

func (s *Scrubber) addSecret(raw string) {
	if raw == "" {
		return
	}
	if strings.ContainsAny(raw, "\r\n") {
		for line := range strings.Lines(raw) {
			line = strings.TrimSpace(line)
			if len(line) >= MinRun && !strings.HasPrefix(line, "-----") { // PEM armour is no secret
				s.addSecret(line)
			}
		}
		// The lines' spellings cover the encodings of the whole (base64 at
		// any alignment); what is left is the runs across a line break.
		s.addSpelling(raw, 0)
		for _, t := range escapes(raw) {
			s.addSpelling(t, 0)
		}
		return
	}
	// The secret, escaped once and twice.
	s.addSpelling(raw, 0)
	for _, t := range escapes(raw) {
		s.addSpelling(t, 0)
		for _, tt := range escapes(t) {
			s.addSpelling(tt, 0)
		}
	}
	// Its encodings, escaped once.
	h := hex.EncodeToString([]byte(raw))
	encoded := []string{h, strings.ToUpper(h)}
	// base64 of the secret and of a value it is part of: the characters
	// that depend on the secret alone, at each of the three byte alignments.
	b := []byte(raw)
	for pad := 0; pad < 3; pad++ {
		buf := append(make([]byte, pad, pad+len(b)), b...)
		start := 0
		if pad > 0 {
			start = 3 // the group mixed with what precedes
		}
		if len(buf) <= start {
			continue
		}
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
			encoded = append(encoded, enc.EncodeToString(buf[start:]))
		}
	}
	for _, e := range encoded {
		s.addSpelling(e, 0)
		for _, t := range escapes(e) {
			s.addSpelling(t, 0)
		}
	}
}

// escapes are the ways a text is escaped to sit in another: query and
// path escaping (upper and lower case hex), a JSON string (with and without
// HTML escaping).
func escapes(t string) []string {
	q, p := url.QueryEscape(t), url.PathEscape(t)
	return []string{q, p, lowerEscapes(q), lowerEscapes(p), jsonEscape(t, true), jsonEscape(t, false)}
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

// addSpelling adds a spelling whose characters from from on are secret.
func (s *Scrubber) addSpelling(sp string, from int) {
	if len(sp) <= from {
		return
	}
	if _, ok := s.seen[sp]; ok {
		return
	}
	s.seen[sp] = struct{}{}
	if len(sp) < MinRun {
		s.whole = append(s.whole, sp)
		s.starts = append(s.starts, sp)
		return
	}
	s.starts = append(s.starts, sp[from:])
	for i := from; i+MinRun <= len(sp); i++ {
		s.grams[gram(sp[i:i+MinRun])] = struct{}{}
	}
}

// gram packs MinRun bytes into a map key.
func gram(b string) uint64 {
	var g uint64
	for i := range MinRun {
		g |= uint64(b[i]) << (8 * i)
	}
	return g
}

// Scrub returns text with every spelling of every secret, and every run of
// MinRun characters of one, replaced by Redacted.
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
	if s == nil || len(s.seen) == 0 {
		return text
	}
	var spans [][2]int
	if len(text) >= MinRun && len(s.grams) > 0 {
		var g uint64
		for i := 0; i < len(text); i++ {
			g = g>>8 | uint64(text[i])<<(8*(MinRun-1))
			if i < MinRun-1 {
				continue
			}
			if _, ok := s.grams[g]; ok {
				at := i + 1 - MinRun
				if n := len(spans); n > 0 && spans[n-1][1] >= at {
					spans[n-1][1] = i + 1
				} else {
					spans = append(spans, [2]int{at, i + 1})
				}
			}
		}
	}
	for _, w := range s.whole {
		for off := 0; off < len(text); {
			i := strings.Index(text[off:], w)
			if i < 0 {
				break
			}
			spans = append(spans, [2]int{off + i, off + i + len(w)})
			off += i + 1
		}
	}
	if cut {
		for _, sp := range s.starts {
			if k := tailPrefix(text, sp); k > 0 {
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

// Elide is Truncate with a mark of what was cut: s when it fits in n
// bytes, else its first n bytes (on a rune boundary) and "…".
func Elide(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return Truncate(s, n) + "…"
}

// Error returns err with its message scrubbed, still wrapping err for
// errors.Is and errors.As; nil for nil. Use it where an error leaves for a
// log, a task error or a store, from code that holds the secrets.
func (s *Scrubber) Error(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if clean := s.Scrub(msg); clean != msg {
		return &scrubbedError{msg: clean, err: err}
	}
	return err
}

// scrubbedError is an error whose message has been scrubbed.
type scrubbedError struct {
	msg string
	err error
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Unwrap() error { return e.err }
