package events

import "encoding/json"

// A request.completed quotes the vendor's whole answer, and every request
// job writes one, so its JSON is checked and compacted here in one pass,
// several times faster than encoding/json's json.Valid and compaction.

// appendRawJSON appends s as json.Marshal writes it as a json.RawMessage (its
// whitespace outside strings taken out) when s is valid JSON whose strings
// json.Marshal writes as they are: printable ASCII without <, > or &, the
// usual vendor answer. ok is false otherwise, valid or not, for the caller
// to leave s to json.Marshal (FuzzAppendRawJSON holds the two side by side).
func appendRawJSON(dst, s []byte) (out []byte, ok bool) {
	p := jsonScan{s: s}
	if !p.valid() {
		return nil, false
	}
	if !p.spaced {
		return append(dst, s...), true
	}
	inString := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case inString && c == '\\':
			dst = append(dst, c, s[i+1])
			i++
		case c == '"':
			inString = !inString
			dst = append(dst, c)
		case inString || !isSpace(c):
			dst = append(dst, c)
		}
	}
	return dst, true
}

// validJSON is json.Valid, answered in jsonScan's one fast pass for the
// usual text (ASCII strings without <, > or &) and by json.Valid otherwise.
func validJSON(s []byte) bool {
	p := jsonScan{s: s}
	return p.valid() || json.Valid(s)
}

// maxNestingDepth is encoding/json's: deeper JSON is not valid to it.
const maxNestingDepth = 10000

// jsonScan reads a JSON text.
type jsonScan struct {
	s      []byte
	i      int  // where it is
	spaced bool // whitespace was seen outside strings
}

// valid reports whether s is one valid JSON value whose strings hold only
// plainInString bytes and escapes.
func (p *jsonScan) valid() bool {
	var stack []byte // the open containers, '{' or '['
	for {
		// A value begins at p.i.
		p.space()
		if p.i >= len(p.s) {
			return false
		}
		switch c := p.s[p.i]; {
		case c == '{' || c == '[':
			if len(stack) == maxNestingDepth {
				return false
			}
			p.i++
			p.space()
			if p.i < len(p.s) && p.s[p.i] == c+2 { // '}' or ']': empty
				p.i++
				break
			}
			stack = append(stack, c)
			if c == '{' && !p.key() {
				return false
			}
			continue
		case c == '"':
			if !p.str() {
				return false
			}
		case c == '-' || isDigit(c):
			if !p.number() {
				return false
			}
		case c == 't':
			if !p.literal("true") {
				return false
			}
		case c == 'f':
			if !p.literal("false") {
				return false
			}
		case c == 'n':
			if !p.literal("null") {
				return false
			}
		default:
			return false
		}
		// A value ended at p.i: close containers, or go on to the next value.
		for {
			p.space()
			if len(stack) == 0 {
				return p.i == len(p.s)
			}
			if p.i >= len(p.s) {
				return false
			}
			open := stack[len(stack)-1]
			if p.s[p.i] == open+2 {
				stack = stack[:len(stack)-1]
				p.i++
				continue
			}
			if p.s[p.i] != ',' {
				return false
			}
			p.i++
			if open == '{' && !p.key() {
				return false
			}
			break
		}
	}
}

// space moves past whitespace; the usual answer has none.
func (p *jsonScan) space() {
	for p.i < len(p.s) && isSpace(p.s[p.i]) {
		p.i++
		p.spaced = true
	}
}

func isSpace(c byte) bool { return c == ' ' || c == '\n' || c == '\t' || c == '\r' }

// key reads an object member's name and its colon.
func (p *jsonScan) key() bool {
	p.space()
	if p.i >= len(p.s) || p.s[p.i] != '"' || !p.str() {
		return false
	}
	p.space()
	if p.i >= len(p.s) || p.s[p.i] != ':' {
		return false
	}
	p.i++
	return true
}

// plainInString says which bytes json.Marshal writes as they are within
// a string: printable ASCII but for the quote, the backslash and <, > and &.
var plainInString = func() (t [256]bool) {
	for c := ' '; c < 0x7f; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

// str reads the string at p.i (a quote).
func (p *jsonScan) str() bool {
	s, i := p.s, p.i+1
	for i < len(s) {
		c := s[i]
		switch {
		case plainInString[c]:
			i++
		case c == '"':
			p.i = i + 1
			return true
		case c == '\\' && i+1 < len(s):
			switch s[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(s) || !isHex(s[i+2]) || !isHex(s[i+3]) || !isHex(s[i+4]) || !isHex(s[i+5]) {
					return false
				}
				i += 6
			default:
				return false
			}
		default:
			return false
		}
	}
	return false
}

func isHex(c byte) bool {
	return isDigit(c) || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// number reads the number at p.i.
func (p *jsonScan) number() bool {
	s, i := p.s, p.i
	if s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && '1' <= s[i] && s[i] <= '9':
		i = digits(s, i)
	default:
		return false
	}
	if i < len(s) && s[i] == '.' {
		if i+1 >= len(s) || !isDigit(s[i+1]) {
			return false
		}
		i = digits(s, i+1)
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if i >= len(s) || !isDigit(s[i]) {
			return false
		}
		i = digits(s, i)
	}
	p.i = i
	return true
}

// digits returns where the run of digits at s[i:] ends.
func digits(s []byte, i int) int {
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	return i
}

// literal reads lit at p.i.
func (p *jsonScan) literal(lit string) bool {
	if len(p.s)-p.i < len(lit) || string(p.s[p.i:p.i+len(lit)]) != lit {
		return false
	}
	p.i += len(lit)
	return true
}
