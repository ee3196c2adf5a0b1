package oauth2cc_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2"

	"github.com/tokenrelay/tokenrelay/internal/testenv"
	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/vendors"
	"github.com/tokenrelay/tokenrelay/vendors/internal/vendortest"
	"github.com/tokenrelay/tokenrelay/vendors/oauth2cc"
	"github.com/tokenrelay/tokenrelay/vendors/sandbox"
)

const (
	clientID = "portal-key-42"
	// clientSecret is distinctive, so that a leak into an error shows.
	clientSecret = "o2-SECRET-b81d0e7a44c9"
)

var cred = vendors.Credential{ID: "patient-42", ClientID: clientID, ClientSecret: secret.New(clientSecret)}

type bundle struct {
	sb      vendortest.Sandbox
	adapter *oauth2cc.Adapter
}

func setup(t *testing.T, edit func(*oauth2cc.Options)) bundle {
	t.Helper()
	sb := vendortest.StartSandbox(t, sandbox.Options{RealTokenLifetime: 5 * time.Minute}, cred)
	a := vendortest.NewAdapter(t, oauth2cc.New, oauth2cc.Options{TokenURL: sb.URL + sandbox.OAuth2Path + "token", Clock: sb.Clock.Now, VendorName: "portal"}, edit)
	return bundle{sb: sb, adapter: a}
}

func TestToken(t *testing.T) {
	t.Parallel()
	for _, style := range []oauth2.AuthStyle{oauth2.AuthStyleAutoDetect, oauth2.AuthStyleInHeader, oauth2.AuthStyleInParams} {
		t.Run(fmt.Sprint(style), func(t *testing.T) {
			t.Parallel()
			b := setup(t, func(o *oauth2cc.Options) { o.AuthStyle = style; o.Scopes = []string{"patient/*.read"} })
			tok, err := b.adapter.Token(t.Context(), cred)
			require.NoError(t, err)
			require.Equal(t, []string{tok.AccessToken.Reveal()}, b.sb.IssuedTokens(clientID))
			require.Equal(t, "Bearer", tok.TokenType)
			require.Equal(t, 5*time.Minute, tok.ClaimedLifetime)
			require.Equal(t, vendortest.T0, tok.IssuedAt)
			require.Equal(t, 1, b.sb.TokenCalls(clientID))

			get := func() int {
				return vendortest.Bearer(t, http.MethodGet, b.sb.URL+sandbox.OAuth2Path+"Patient", tok.AccessToken.Reveal(), nil).StatusCode
			}
			require.Equal(t, http.StatusOK, get())
			b.sb.Clock.Advance(5 * time.Minute)
			require.Equal(t, http.StatusUnauthorized, get())
			require.Equal(t, 1, b.sb.ExpiredUsesBy(clientID))
		})
	}
}

func TestTokenFailures(t *testing.T) {
	t.Parallel()
	for _, style := range []oauth2.AuthStyle{oauth2.AuthStyleInHeader, oauth2.AuthStyleInParams} {
		t.Run(fmt.Sprint(style), func(t *testing.T) {
			t.Parallel()
			vendortest.RunTokenFailures(t, vendortest.TokenFailures(), func(t *testing.T, timeout time.Duration) vendortest.Env {
				b := setup(t, func(o *oauth2cc.Options) {
					o.AuthStyle = style
					if timeout > 0 {
						o.HTTPClient = &http.Client{Timeout: timeout}
					}
				})
				return vendortest.Env{Sandbox: b.sb.Sandbox, Source: b.adapter, Cred: cred, Vendor: "portal"}
			})
		})
	}
}

// TestTokenAnswers covers answers the sandbox does not give, from a fake
// token endpoint.
func TestTokenAnswers(t *testing.T) {
	t.Parallel()
	const (
		jsonCT = "application/json"
		formCT = "application/x-www-form-urlencoded"
	)
	tests := []struct {
		name        string
		status      int
		contentType string
		header      map[string]string
		body        string
		class       string // "" for success
		retryAfter  time.Duration
		contains    string
		lifetime    time.Duration
	}{
		{"400 invalid_client", 400, jsonCT, nil, `{"error":"invalid_client","error_description":"key deleted"}`,
			vendors.ClassRevoked, 0, "invalid_client: key deleted", 0},
		{"400 unauthorized_client", 400, jsonCT, nil, `{"error":"unauthorized_client"}`, vendors.ClassRevoked, 0, "unauthorized_client", 0},
		{"200 with invalid_client", 200, jsonCT, nil, `{"error":"invalid_client"}`, vendors.ClassRevoked, 0, "invalid_client", 0},
		{"200 with another error", 200, jsonCT, nil, `{"error":"invalid_scope"}`, vendors.ClassRejected, 0, "invalid_scope", 0},
		{"400 invalid_scope", 400, jsonCT, nil, `{"error":"invalid_scope"}`, vendors.ClassRejected, 0, "invalid_scope", 0},
		{"403 html", 403, "text/html", nil, "<html>\n Forbidden </html>", vendors.ClassRejected, 0, "<html> Forbidden </html>", 0},
		{"500 saying invalid_client", 500, jsonCT, nil, `{"error":"invalid_client"}`, vendors.ClassServer, 0, "invalid_client", 0},
		{"503 with a date", 503, jsonCT, map[string]string{"Retry-After": vendortest.T0.Add(time.Minute).Format(http.TimeFormat)}, `{}`,
			vendors.ClassServer, time.Minute, "", 0},
		{"redirect", 307, jsonCT, map[string]string{"Location": "https://elsewhere.example/token"}, ``, vendors.ClassRejected, 0, "", 0},
		{"secret echoed", 400, jsonCT, nil, `{"error":"invalid_request","error_description":"secret ` + clientSecret + ` too short"}`,
			vendors.ClassRejected, 0, "secret [redacted] too short", 0},
		{"secret echoed in a body without code", 400, "text/plain", nil, `bad secret ` + clientSecret,
			vendors.ClassRejected, 0, "bad secret [redacted]", 0},
		{"not json", 200, jsonCT, nil, `{"access_token":"tok-abc","expires_in":`, vendors.ClassMalformed, 0, "not valid JSON", 0},
		{"no access_token", 200, jsonCT, nil, `{"token_type":"Bearer","expires_in":300}`, vendors.ClassMalformed, 0, "usable", 0},
		{"negative expires_in", 200, jsonCT, nil, `{"access_token":"tok-abc","expires_in":-1}`, vendors.ClassMalformed, 0, "positive", 0},
		{"bad expires_in", 200, jsonCT, nil, `{"access_token":"tok-abc","expires_in":"soon"}`, vendors.ClassMalformed, 0, "", 0},
		{"no expires_in", 200, jsonCT, nil, `{"access_token":"tok-abc","token_type":"Bearer"}`, "", 0, "", 0},
		{"string expires_in", 200, jsonCT, nil, `{"access_token":"tok-abc","expires_in":"600"}`, "", 0, "", 10 * time.Minute},
		{"form-encoded", 200, formCT, nil, `access_token=tok-abc&token_type=bearer&expires_in=120`, "", 0, "", 2 * time.Minute},
		{"form-encoded without token", 200, formCT, nil, `token_type=bearer`, vendors.ClassMalformed, 0, "form-encoded", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := vendortest.ServeAnswer(t, vendortest.Answer{Status: tt.status, ContentType: tt.contentType, Header: tt.header, Body: tt.body})
			clock := testenv.NewClock(vendortest.T0)
			a, err := oauth2cc.New(oauth2cc.Options{TokenURL: srv.URL + "/token", UserAgent: "tokenrelay-test/1", Clock: clock.Now})
			require.NoError(t, err)
			tok, err := a.Token(t.Context(), cred)
			require.EqualValues(t, 1, srv.Calls(), "exactly one call, whatever the answer")
			require.Equal(t, "tokenrelay-test/1", srv.UserAgent())
			if tt.class == "" {
				require.NoError(t, err)
				require.Equal(t, "tok-abc", tok.AccessToken.Reveal())
				require.Equal(t, tt.lifetime, tok.ClaimedLifetime)
				return
			}
			t.Log(err)
			vendortest.RequireError(t, err, vendortest.Want{Vendor: "oauth2", Op: "request token",
				Class: tt.class, Status: tt.status, RetryAfter: tt.retryAfter})
			require.Contains(t, err.Error(), tt.contains)
			require.LessOrEqual(t, len(err.Error()), 120+vendors.MaxExcerpt)
			vendortest.RequireNoSecret(t, err, clientSecret, "tok-abc")
		})
	}
}

func TestNew(t *testing.T) {
	t.Parallel()
	vendortest.RunNew(t, []vendortest.NewCase[oauth2cc.Options]{
		{Name: "minimal", Opts: oauth2cc.Options{TokenURL: "https://auth.example/token"}},
		{Name: "no token url", Opts: oauth2cc.Options{}, WantErr: "token_url is required"},
		{Name: "relative token url", Opts: oauth2cc.Options{TokenURL: "/token"}, WantErr: "not an http(s) URL"},
		{Name: "bad auth style", Opts: oauth2cc.Options{TokenURL: "https://auth.example/token", AuthStyle: 7}, WantErr: "auth style"},
		{Name: "two-line user agent", Opts: oauth2cc.Options{TokenURL: "https://auth.example/token", UserAgent: "a\nb"}, WantErr: "one line"},
	}, func(o oauth2cc.Options) error { _, err := oauth2cc.New(o); return err })
}

func TestErrorsNeverQuoteA2xxBody(t *testing.T) {
	t.Parallel()
	// A 2xx body may hold a token: even a broken one is not quoted.
	srv := vendortest.ServeAnswer(t, vendortest.Answer{Status: http.StatusOK,
		ContentType: "application/x-www-form-urlencoded", Body: "access_token=tok-%zz-abc"})
	a, err := oauth2cc.New(oauth2cc.Options{TokenURL: srv.URL})
	require.NoError(t, err)
	_, err = a.Token(t.Context(), cred)
	require.Equal(t, vendors.ClassMalformed, vendors.Classify(err))
	require.False(t, strings.Contains(err.Error(), "zz"), err.Error())
}
