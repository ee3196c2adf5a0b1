package vendors

import (
	"bytes"
	"io"
	"net/http"
	"time"
)

// DefaultTimeout is the timeout of the HTTP client an adapter makes when its
// options give none.
const DefaultTimeout = 30 * time.Second

// MaxAnswer is how much of an answer adapters read: more is cut off.
const MaxAnswer = 1 << 20

// HTTPClient returns c, or a new client with DefaultTimeout when c is nil:
// the default of an adapter's HTTPClient option. The new client has a
// transport of its own (a clone of http.DefaultTransport), so that nothing
// else in the process that closes the default transport's idle connections
// (httptest servers do) can break a vendor call on a reused connection.
func HTTPClient(c *http.Client) *http.Client {
	if c == nil {
		return &http.Client{Timeout: DefaultTimeout, Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	return c
}

// NoRedirects returns a copy of c (HTTPClient(c) when c is nil) that never
// follows a redirect, whatever c's CheckRedirect: a redirect must not carry
// a credential elsewhere. The redirect itself is the answer.
func NoRedirects(c *http.Client) *http.Client {
	cp := *HTTPClient(c)
	cp.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &cp
}

// Sender sends an adapter's requests, each once, and turns what comes back
// into an Answer or a classified *Error. It holds the options every adapter
// has; make it with NewSender. It is safe for concurrent use.
type Sender struct {
	// Vendor names the vendor in errors (Error.Vendor).
	Vendor string
	// Client sends the requests. It never follows redirects.
	Client *http.Client
	// Clock gives the time requests are sent and the base of an HTTP-date
	// Retry-After.
	Clock func() time.Time
	// UserAgent, when not empty, is the User-Agent of every request Do sends.
	UserAgent string
}

// NewSender makes a Sender from an adapter's options, with their defaults:
// client nil is a client with DefaultTimeout (either way a copy that never
// follows redirects is used, see NoRedirects), clock nil is time.Now. The
// caller defaults vendor (usually cmp.Or(opts.VendorName, Kind)) and checks
// userAgent.
func NewSender(vendor string, client *http.Client, clock func() time.Time, userAgent string) *Sender {
	if clock == nil {
		clock = time.Now
	}
	return &Sender{Vendor: vendor, Client: NoRedirects(client), Clock: clock, UserAgent: userAgent}
}

// Answer is a vendor's answer to one request, read.
type Answer struct {
	Status int
	Header http.Header
	// Body is the body, cut at the limit given to Do. It may hold a token or
	// a key: quote only an error answer's, and only through Excerpt.
	Body []byte
}

// OK reports whether the answer is a 2xx.
func (a Answer) OK() bool { return a.Status >= 200 && a.Status <= 299 }

// Do sends req once, with the User-Agent, and reads at most limit bytes of
// its answer, whatever its status. A failure to get the answer or to read it
// is NewTransportError's of op (ClassNetwork or ClassTimeout), with the
// status when one came. Do never retries.
func (s *Sender) Do(req *http.Request, op string, limit int64) (Answer, *Error) {
	if s.UserAgent != "" {
		req.Header.Set("User-Agent", s.UserAgent)
	}
	resp, err := s.Client.Do(req)
	if err != nil {
		// The client's error names the URL and the cause; credentials are in
		// headers or bodies, never in an adapter's URLs.
		return Answer{}, NewTransportError(s.Vendor, op, err)
	}
	defer resp.Body.Close()
	body, err := readAnswer(resp, limit)
	if err != nil {
		e := NewTransportError(s.Vendor, op, err)
		e.Status = resp.StatusCode
		return Answer{}, e
	}
	return Answer{Status: resp.StatusCode, Header: resp.Header, Body: body}, nil
}

// readAnswer reads at most limit bytes of resp's body, as
// io.ReadAll(io.LimitReader(resp.Body, limit)) does, into a buffer of the
// announced length when the answer gives one within the limit (ReadAll
// starts at 512 bytes and grows, copying, up to a bundle's size).
func readAnswer(resp *http.Response, limit int64) ([]byte, error) {
	size := resp.ContentLength
	if size < 0 || size >= limit || size > 1<<20 {
		return io.ReadAll(io.LimitReader(resp.Body, limit))
	}
	// MinRead more: the room ReadFrom wants to read the end without growing.
	buf := bytes.NewBuffer(make([]byte, 0, size+bytes.MinRead))
	_, err := buf.ReadFrom(io.LimitReader(resp.Body, limit))
	return buf.Bytes(), err
}

// Call is Do reading at most MaxAnswer bytes, an answer outside 2xx turned
// into an error by statusError: the adapter's reading of its vendor's
// refusals, usually through StatusError. It returns only 2xx answers.
func (s *Sender) Call(req *http.Request, op string, statusError func(Answer) *Error) (Answer, *Error) {
	ans, verr := s.Do(req, op, MaxAnswer)
	if verr != nil {
		return Answer{}, verr
	}
	if !ans.OK() {
		return Answer{}, statusError(ans)
	}
	return ans, nil
}
