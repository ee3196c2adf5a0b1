package seal

import "strconv"

// Bind builds the associated data that ties a sealed value to its place:
// a domain naming the kind of value ("cred", "outbox", ...) and the parts
// that name the place (a credential id, a vendor, a field). Each part is
// length-prefixed, so no two lists of parts share one text whatever they
// hold (ids, keys and subjects are free text to this package), and values
// of different domains never open as each other.
//
// Every package that seals uses it, so there is one encoding to reason
// about.
func Bind(domain string, parts ...string) []byte {
	n := len("tokenrelay/") + len(domain) + len("/v1")
	for _, p := range parts {
		n += len(p) + 8
	}
	b := make([]byte, 0, n)
	b = append(append(append(b, "tokenrelay/"...), domain...), "/v1"...)
	for _, p := range parts {
		b = append(b, ' ')
		b = strconv.AppendInt(b, int64(len(p)), 10)
		b = append(append(b, ':'), p...)
	}
	return b
}
