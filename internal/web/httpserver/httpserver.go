// Package httpserver builds the HTTP servers tokenrelay runs (the worker's,
// the scheduler's /metrics, the vendor sandbox) with the same timeouts, so
// that no client can hold a connection open by sending its request slowly
// (slowloris) or by never reading the answer, and checks request paths
// after percent-decoding (CheckPath).
package httpserver

import (
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Timeouts bound each phase of a connection. The defaults suit every
// server of tokenrelay: answers are small and quick except a /metrics
// scrape of a large fleet and an admin import of up to 256 MiB, which the
// read and write timeouts leave minutes for; the read-header and idle
// timeouts, which slowloris clients meet first, are short.
type Timeouts struct {
	// ReadHeader is how long a client has to send a request's headers.
	// Default 10s.
	ReadHeader time.Duration
	// Read is how long a client has to send a whole request, body
	// included. Default 5m (an admin import of 256 MiB at ~1 MiB/s).
	Read time.Duration
	// Write is how long an answer may take from the end of the request's
	// headers to its last byte, the handler's work included. Default 5m
	// (the admin import reads and stores its whole body before answering).
	Write time.Duration
	// Idle is how long a kept-alive connection waits for its next
	// request. Default 2m.
	Idle time.Duration
}

// DefaultTimeouts are the timeouts New applies where t leaves one zero.
var DefaultTimeouts = Timeouts{
	ReadHeader: 10 * time.Second,
	Read:       5 * time.Minute,
	Write:      5 * time.Minute,
	Idle:       2 * time.Minute,
}

// New returns a server of h with the timeouts t (zero fields: the
// defaults).
func New(h http.Handler, t Timeouts) *http.Server {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&t.ReadHeader, DefaultTimeouts.ReadHeader)
	def(&t.Read, DefaultTimeouts.Read)
	def(&t.Write, DefaultTimeouts.Write)
	def(&t.Idle, DefaultTimeouts.Idle)
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: t.ReadHeader,
		ReadTimeout:       t.Read,
		WriteTimeout:      t.Write,
		IdleTimeout:       t.Idle,
		MaxHeaderBytes:    64 << 10,
	}
}

// CheckPath refuses, with 400, a request whose path, once
// percent-decoded, holds what no route of tokenrelay takes: a "/" or "\"
// encoded inside a segment (%2F, %5C), a NUL or other control character,
// or a "." or ".." segment. Routes then see in r.PathValue only segments
// that are what they look like; each still checks its own ids.
func CheckPath(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !cleanPath(r.URL.EscapedPath()) {
			http.Error(w, "bad request path", http.StatusBadRequest)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// cleanPath reports whether every segment of the escaped path decodes to
// a plain segment.
func cleanPath(escaped string) bool {
	for seg := range strings.SplitSeq(escaped, "/") {
		dec, err := url.PathUnescape(seg)
		if err != nil || dec == "." || dec == ".." {
			return false
		}
		if strings.ContainsFunc(dec, func(r rune) bool { return r < 0x20 || r == 0x7f || r == '/' || r == '\\' }) {
			return false
		}
	}
	return true
}
