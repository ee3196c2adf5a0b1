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
// answer scrubbed of sc's secrets. grantRevokes makes an OAuth
// invalid_grant a definitive refusal (a refresh's).
func (a *Adapter) send(req *http.Request, op string, grantRevokes bool, sc *secret.Scrubber) (vendors.Answer, *vendors.Error) {
	return a.sender.Call(req, op, func(ans vendors.Answer) *vendors.Error {
		return a.statusError(op, ans, grantRevokes, sc)
	})
}

// statusError classifies a non-2xx answer. HealthSync's own error answers
// are {"error","message"}, OAuth's {"error","error_description"}. A 5xx is
// ClassServer whatever the code; a 403 (a missing scope), other 4xx and
// redirects (never followed) are ClassRejected.
func (a *Adapter) statusError(op string, ans vendors.Answer, grantRevokes bool, sc *secret.Scrubber) *vendors.Error {
	oe := vendors.ParseOAuthError(ans.Body)
	oe.Description = cmp.Or(oe.Description, oe.Message)
	revoked := ans.Status == http.StatusUnauthorized || oe.RefusesClient() ||
		grantRevokes && oe.Code == "invalid_grant"
	e := a.sender.StatusError(op, ans, revoked, vendors.VendorSaid(oe.Quote(ans.Body, sc)))
	if e.Class == vendors.ClassRateLimited {
		e.RetryAfter = retryWait(ans.Header, a.sender.Clock())
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
