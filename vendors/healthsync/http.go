package healthsync

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/vendors"
)

// maxBody bounds how much of an answer is read.
const maxBody = 1 << 20

// answer is a 2xx answer, read.
type answer struct {
	status int
	header http.Header
	body   []byte
}

// apiRequest builds a request to path (relative to the base URL) carrying
// key as its bearer and, when in is not nil, in as a JSON body.
func (a *Adapter) apiRequest(ctx context.Context, method, path string, key secret.Value, in any) (*http.Request, error) {
	u, err := a.resolve(path)
	if err != nil {
		return nil, fmt.Errorf("healthsync: %w", err)
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("healthsync: encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, fmt.Errorf("healthsync: build request: %w", err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", "Bearer "+key.Reveal())
	return req, nil
}

// send sends req once and reads the answer. Anything but a 2xx answer is a
// classified error, whose message quotes at most an excerpt of an error
// answer with every string of redact removed. grantRevokes makes an OAuth
// invalid_grant a definitive refusal (a refresh's).
func (a *Adapter) send(req *http.Request, op string, grantRevokes bool, redact []string) (answer, *vendors.Error) {
	if a.userAgent != "" {
		req.Header.Set("User-Agent", a.userAgent)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return answer{}, vendors.NewTransportError(a.vendor, op, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		e := vendors.NewTransportError(a.vendor, op, err)
		e.Status = resp.StatusCode
		return answer{}, e
	}
	ans := answer{status: resp.StatusCode, header: resp.Header, body: data}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return answer{}, a.statusError(op, ans, grantRevokes, redact)
	}
	return ans, nil
}

// errorAnswer is the shape of HealthSync's error answers ({"error",
// "message"}) and of OAuth's ({"error","error_description"}).
type errorAnswer struct {
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
	Message          string `json:"message"`
}

// statusError classifies a non-2xx answer.
func (a *Adapter) statusError(op string, ans answer, grantRevokes bool, redact []string) *vendors.Error {
	e := &vendors.Error{Vendor: a.vendor, Op: op, Status: ans.status}
	var ea errorAnswer
	quote := string(ans.body)
	if json.Unmarshal(ans.body, &ea) == nil && ea.Error != "" {
		quote = ea.Error
		if d := cmp.Or(ea.ErrorDescription, ea.Message); d != "" {
			quote += ": " + d
		}
	}
	quote = vendors.Excerpt(quote, redact...)
	now := a.clock()
	switch {
	case ans.status == http.StatusTooManyRequests:
		e.Class = vendors.ClassRateLimited
		e.RetryAfter = retryWait(ans.header, now)
	case ans.status >= 500:
		// Whatever the code: a server in trouble is no definitive refusal.
		e.Class = vendors.ClassServer
		e.RetryAfter = vendors.ParseRetryAfter(ans.header.Get("Retry-After"), now)
	case ans.status == http.StatusUnauthorized,
		ea.Error == "invalid_client", ea.Error == "unauthorized_client",
		grantRevokes && ea.Error == "invalid_grant":
		e.Class = vendors.ClassRevoked
		if quote == "" {
			e.Err = vendors.ErrRevoked
		} else {
			e.Err = fmt.Errorf("%w: vendor said %q", vendors.ErrRevoked, quote)
		}
		return e
	default:
		// 403 (a missing scope), other 4xx, and redirects (never followed).
		e.Class = vendors.ClassRejected
	}
	if quote != "" {
		e.Err = fmt.Errorf("vendor said %q", quote)
	}
	return e
}

// retryWait is how long a 429 asks to wait: Retry-After, or else until
// X-RateLimit-Reset; 0 when neither says.
func retryWait(h http.Header, now time.Time) time.Duration {
	if d := vendors.ParseRetryAfter(h.Get("Retry-After"), now); d > 0 {
		return d
	}
	if reset, ok := parseReset(h.Get(HeaderRateLimitReset)); ok && reset.After(now) {
		return reset.Sub(now)
	}
	return 0
}
