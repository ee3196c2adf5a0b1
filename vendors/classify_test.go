package vendors_test

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/vendors"
)

func TestParseOAuthError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		body  string
		want  vendors.OAuthError
		quote string
	}{
		{"code and description", `{"error":"invalid_client","error_description":"no such key"}`,
			vendors.OAuthError{Code: "invalid_client", Description: "no such key"}, "invalid_client: no such key"},
		{"code alone", `{"error":"unauthorized_client"}`, vendors.OAuthError{Code: "unauthorized_client"}, "unauthorized_client"},
		{"message is kept apart", `{"error":"rate_limited","message":"slow down"}`,
			vendors.OAuthError{Code: "rate_limited", Message: "slow down"}, "rate_limited"},
		{"no code: the body", `{"message":"nope"}`, vendors.OAuthError{Message: "nope"}, `{"message":"nope"}`},
		{"not JSON: the body", "<html>\n Bad  Gateway</html>", vendors.OAuthError{}, "<html> Bad Gateway</html>"},
		{"wrong types", `{"error":42}`, vendors.OAuthError{}, `{"error":42}`},
		{"empty", ``, vendors.OAuthError{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			oe := vendors.ParseOAuthError([]byte(tt.body))
			require.Equal(t, tt.want, oe)
			require.Equal(t, tt.quote, oe.Quote([]byte(tt.body), nil))
		})
	}
}

func TestOAuthErrorQuote(t *testing.T) {
	t.Parallel()
	oe := vendors.OAuthError{Code: "invalid_request", Description: "secret s3cr3t is too short"}
	require.Equal(t, "invalid_request: secret [redacted] is too short", oe.Quote(nil, secret.NewScrubber(secret.New("s3cr3t"))))
	require.Equal(t, "bad [redacted]", vendors.OAuthError{}.Quote([]byte("bad s3cr3t"), secret.NewScrubber(secret.New("s3cr3t"))))
	require.Empty(t, vendors.OAuthError{}.Quote(nil, nil), "no body, no quote")
}

func TestRefusesClient(t *testing.T) {
	t.Parallel()
	for code, want := range map[string]bool{"invalid_client": true, "unauthorized_client": true,
		"invalid_grant": false, "invalid_request": false, "": false} {
		require.Equal(t, want, vendors.OAuthError{Code: code}.RefusesClient(), code)
	}
}

func TestVendorSaid(t *testing.T) {
	t.Parallel()
	require.Empty(t, vendors.VendorSaid(""))
	require.Equal(t, `vendor said "invalid_client: \"x\""`, vendors.VendorSaid(`invalid_client: "x"`))
}

func TestStatusError(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 3, 4, 10, 0, 0, 0, time.UTC)
	s := &vendors.Sender{Vendor: "acme", Clock: func() time.Time { return now }}
	retry := http.Header{"Retry-After": {"30"}}
	dated := http.Header{"Retry-After": {now.Add(time.Minute).Format(http.TimeFormat)}}
	tests := []struct {
		name       string
		status     int
		header     http.Header
		revoked    bool
		detail     string
		class      string
		retryAfter time.Duration
		msg        string
	}{
		{"401 revoked", 401, nil, true, `vendor said "invalid_client"`, vendors.ClassRevoked, 0,
			`acme: request token: invalid_client (HTTP 401): credential refused by vendor: vendor said "invalid_client"`},
		{"revoked without detail", 400, nil, true, "", vendors.ClassRevoked, 0,
			"acme: request token: invalid_client (HTTP 400): credential refused by vendor"},
		{"429 with retry-after", 429, retry, false, "", vendors.ClassRateLimited, 30 * time.Second,
			"acme: request token: rate_limited (HTTP 429)"},
		{"429 is never a revocation", 429, dated, true, "x", vendors.ClassRateLimited, time.Minute,
			"acme: request token: rate_limited (HTTP 429): x"},
		{"5xx is never a revocation", 500, retry, true, `vendor said "invalid_client"`, vendors.ClassServer, 30 * time.Second,
			`acme: request token: server_error (HTTP 500): vendor said "invalid_client"`},
		{"503 without retry-after", 503, nil, false, "", vendors.ClassServer, 0, "acme: request token: server_error (HTTP 503)"},
		{"403", 403, retry, false, `vendor said "forbidden"`, vendors.ClassRejected, 0,
			`acme: request token: rejected (HTTP 403): vendor said "forbidden"`},
		{"redirect", 302, nil, false, "", vendors.ClassRejected, 0, "acme: request token: rejected (HTTP 302)"},
		{"2xx error", 200, nil, false, "invalid_scope", vendors.ClassRejected, 0, "acme: request token: rejected (HTTP 200): invalid_scope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := s.StatusError("request token", vendors.Answer{Status: tt.status, Header: tt.header}, tt.revoked, tt.detail)
			require.Equal(t, "acme", e.Vendor)
			require.Equal(t, "request token", e.Op)
			require.Equal(t, tt.status, e.Status)
			require.Equal(t, tt.class, e.Class)
			require.Equal(t, tt.retryAfter, e.RetryAfter)
			require.Equal(t, tt.msg, e.Error())
			require.Equal(t, tt.class == vendors.ClassRevoked, vendors.IsRevoked(e))
			if tt.detail == "" && tt.class != vendors.ClassRevoked {
				require.Nil(t, e.Err)
			}
		})
	}
}

func TestMalformed(t *testing.T) {
	t.Parallel()
	s := &vendors.Sender{Vendor: "acme"}
	cause := errors.New("expires_in is not a positive number of seconds")
	e := s.Malformed("request token", 200, "answer: %w", cause)
	require.Equal(t, vendors.ClassMalformed, e.Class)
	require.Equal(t, 200, e.Status)
	require.ErrorIs(t, e, cause)
	require.Equal(t, "acme: request token: malformed_response (HTTP 200): answer: expires_in is not a positive number of seconds", e.Error())
}

func TestOAuthStatusError(t *testing.T) {
	t.Parallel()
	s := &vendors.Sender{Vendor: "acme", Clock: time.Now}
	tests := []struct {
		name   string
		status int
		body   string
		class  string
		msg    string
	}{
		{"401 without a body", 401, ``, vendors.ClassRevoked, "acme: request token: invalid_client (HTTP 401): credential refused by vendor"},
		{"400 invalid_client", 400, `{"error":"invalid_client","error_description":"no such key"}`, vendors.ClassRevoked,
			`acme: request token: invalid_client (HTTP 400): credential refused by vendor: vendor said "invalid_client: no such key"`},
		{"400 unauthorized_client", 400, `{"error":"unauthorized_client"}`, vendors.ClassRevoked,
			`acme: request token: invalid_client (HTTP 400): credential refused by vendor: vendor said "unauthorized_client"`},
		{"403 invalid_client is no revocation", 403, `{"error":"invalid_client"}`, vendors.ClassRejected,
			`acme: request token: rejected (HTTP 403): vendor said "invalid_client"`},
		{"500 invalid_client is no revocation", 500, `{"error":"invalid_client"}`, vendors.ClassServer,
			`acme: request token: server_error (HTTP 500): vendor said "invalid_client"`},
		{"400 invalid_grant", 400, `{"error":"invalid_grant","error_description":"bad s3cr3t"}`, vendors.ClassRejected,
			`acme: request token: rejected (HTTP 400): vendor said "invalid_grant: bad [redacted]"`},
		{"html", 403, "<html>\nForbidden</html>", vendors.ClassRejected, `acme: request token: rejected (HTTP 403): vendor said "<html> Forbidden</html>"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := s.OAuthStatusError("request token", vendors.Answer{Status: tt.status, Body: []byte(tt.body)}, secret.NewScrubber(secret.New("s3cr3t")))
			require.Equal(t, tt.class, e.Class)
			require.Equal(t, tt.msg, e.Error())
		})
	}
}
