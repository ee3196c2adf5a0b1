package events

// compactValid reports whether s is valid JSON that json.Marshal writes as
// it is (compactJSON's terms: printable ASCII without <, > or &, no space
// outside strings): the same answer as json.Valid(s) && compactJSON(s)
// (FuzzCompactValid holds them side by side), in one pass several times
// faster than json.Valid, since a request.completed quotes the vendor's
// whole answer and every request job writes one.
func compactValid(s []byte) bool {
	var stack []byte // the open containers, '{' or '['
	i := 0
	for {
		// A value begins at i.
		if i >= len(s) {
			return false
		}
		switch c := s[i]; {
		case c == '{' || c == '[':
			if len(stack) == maxNestingDepth {
				return false
			}
			stack = append(stack, c)
			i++
			if i < len(s) && s[i] == c+2 { // '}' or ']': empty
				stack = stack[:len(stack)-1]
				i++
				break
			}
			if c == '{' {
				if i = scanKey(s, i); i < 0 {
					return false
				}
			}
			continue
		case c == '"':
			if i = scanString(s, i); i < 0 {
				return false
			}
		case c == '-' || '0' <= c && c <= '9':
			if i = scanNumber(s, i); i < 0 {
				return false
			}
		case c == 't':
			if i = scanLiteral(s, i, "true"); i < 0 {
				return false
			}
		case c == 'f':
			if i = scanLiteral(s, i, "false"); i < 0 {
				return false
			}
		case c == 'n':
			if i = scanLiteral(s, i, "null"); i < 0 {
				return false
			}
		default:
			return false
		}
		// A value ended at i: close containers, or go on to the next value.
		for {
			if len(stack) == 0 {
				return i == len(s)
			}
			if i >= len(s) {
				return false
			}
			open := stack[len(stack)-1]
			if s[i] == open+2 {
				stack = stack[:len(stack)-1]
				i++
				continue
			}
			if s[i] != ',' {
				return false
			}
			i++
			if open == '{' {
				if i = scanKey(s, i); i < 0 {
					return false
				}
			}
			break
		}
	}
}

// maxNestingDepth is encoding/json's: deeper JSON is not valid to it.
const maxNestingDepth = 10000

// scanKey reads an object member's name and its colon at s[i:], returning
// where its value begins, or -1.
func scanKey(s []byte, i int) int {
	if i >= len(s) || s[i] != '"' {
		return -1
	}
	if i = scanString(s, i); i < 0 || i >= len(s) || s[i] != ':' {
		return -1
	}
	return i + 1
}

// plainInString says which bytes a string carries as they are: printable
// ASCII but for the quote, the backslash and <, > and &.
var plainInString = func() (t [256]bool) {
	for c := ' '; c < 0x7f; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

// scanString reads the string at s[i] (a quote), returning where it ends,
// or -1.
func scanString(s []byte, i int) int {
	for i++; i < len(s); {
		c := s[i]
		switch {
		case plainInString[c]:
			i++
		case c == '"':
			return i + 1
		case c == '\\' && i+1 < len(s):
			switch s[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(s) || !isHex(s[i+2]) || !isHex(s[i+3]) || !isHex(s[i+4]) || !isHex(s[i+5]) {
					return -1
				}
				i += 6
			default:
				return -1
			}
		default:
			return -1
		}
	}
	return -1
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// scanNumber reads the number at s[i:], returning where it ends, or -1.
func scanNumber(s []byte, i int) int {
	if s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && '1' <= s[i] && s[i] <= '9':
		i = scanDigits(s, i)
	default:
		return -1
	}
	if i < len(s) && s[i] == '.' {
		if i+1 >= len(s) || !isDigit(s[i+1]) {
			return -1
		}
		i = scanDigits(s, i+1)
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if i >= len(s) || !isDigit(s[i]) {
			return -1
		}
		i = scanDigits(s, i)
	}
	return i
}

func scanDigits(s []byte, i int) int {
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	return i
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// scanLiteral reads lit at s[i:], returning where it ends, or -1.
func scanLiteral(s []byte, i int, lit string) int {
	if len(s)-i < len(lit) || string(s[i:i+len(lit)]) != lit {
		return -1
	}
	return i + len(lit)
}
