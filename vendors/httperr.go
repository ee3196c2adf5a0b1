package vendors

import (
	"context"
	"errors"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/tokenrelay/tokenrelay/secret"
)

// ParseRetryAfter reads an HTTP Retry-After value (RFC 9110 section 10.2.3):
// either a number of seconds or an HTTP date, which is taken relative to now.
// It returns 0 for an empty, unparseable or negative value and for a date
// that is not after now. It does not cap the result: how long to honour a
// vendor's wait is the caller's policy.
func ParseRetryAfter(h string, now time.Time) time.Duration {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0
	}
	if h[0] >= '0' && h[0] <= '9' || h[0] == '-' || h[0] == '+' {
		n, err := strconv.ParseInt(h, 10, 64)
		switch {
		case err != nil && errors.Is(err, strconv.ErrRange) && n > 0:
			return math.MaxInt64
		case err != nil || n <= 0:
			return 0
		case n > math.MaxInt64/int64(time.Second):
			return math.MaxInt64
		default:
			return time.Duration(n) * time.Second
		}
	}
	t, err := http.ParseTime(h)
	if err != nil {
		return 0
	}
	if d := t.Sub(now); d > 0 {
		return d
	}
	return 0
}

// MaxExcerpt is the most of a vendor's answer an Error message quotes.
const MaxExcerpt = 200

// Excerpt makes s, a vendor's untrusted text, fit to quote in an Error
// message: only its head is read (4*MaxExcerpt bytes), every spelling of
// every secret of sc (nil: none) is replaced by secret.Redacted (verbatim,
// URL-encoded, JSON-escaped, base64, inside a Basic credential, cut short:
// see secret.Scrubber), control characters, invalid UTF-8 and runs of white
// space become one space (never joining two pieces into a secret), and the
// result is cut to MaxExcerpt bytes. Quote vendors only through it, with
// the scrubber of the credential used (Credential.Scrubber), and only their
// error answers: a 2xx body may hold a token.
func Excerpt(s string, sc *secret.Scrubber) string {
	s = sc.Excerpt(s, 4*MaxExcerpt)
	var b strings.Builder
	space := false
	for _, r := range s {
		if r == utf8.RuneError || unicode.IsSpace(r) || unicode.IsControl(r) {
			space = b.Len() > 0
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		if b.Len()+utf8.RuneLen(r) > MaxExcerpt {
			break
		}
		b.WriteRune(r)
	}
	return b.String()
}

// NewTransportError classifies a failure to get an answer from a vendor (the
// error of http.Client.Do or of reading the body): ClassTimeout for a
// deadline or a timeout, ClassNetwork for everything else (refused, reset,
// EOF, DNS, a cancelled context).
func NewTransportError(vendor, op string, err error) *Error {
	class := ClassNetwork
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		class = ClassTimeout
	}
	return &Error{Vendor: vendor, Op: op, Class: class, Err: err}
}
