package healthsync_test

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/internal/testenv"
	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/vendors"
	"github.com/tokenrelay/tokenrelay/vendors/healthsync"
	"github.com/tokenrelay/tokenrelay/vendors/internal/vendortest"
	"github.com/tokenrelay/tokenrelay/vendors/sandbox"
)

// userCred is oauthClient holding a user's refresh token.
func userCred(rt string) vendors.Credential {
	c := oauthClient
	c.RefreshToken = secret.New(rt)
	return c
}

func TestOAuthRefreshRotates(t *testing.T) {
	t.Parallel()
	b := setup(t, healthsync.ModeOAuth, nil)
	ctx := t.Context()
	rt0 := b.sb.GrantHealthSync(account, clientID, []string{"records:read"})

	tok, err := b.adapter.Token(ctx, userCred(rt0))
	require.NoError(t, err)
	require.Equal(t, []string{tok.AccessToken.Reveal()}, b.sb.IssuedTokens(clientID))
	require.Equal(t, "Bearer", tok.TokenType)
	require.Equal(t, sandbox.DefaultRealTokenLifetime, tok.ClaimedLifetime)
	require.Equal(t, vendortest.T0, tok.IssuedAt)
	require.False(t, tok.RefreshToken.IsZero(), "the refresh token rotated")
	require.NotEqual(t, rt0, tok.RefreshToken.Reveal())
	require.Equal(t, 1, b.sb.TokenCalls(clientID))
	require.Equal(t, 1, b.sent.calls())

	// The token reads for the user, until it expires.
	require.Equal(t, http.StatusOK, b.get(t, "records", tok.AccessToken.Reveal()).StatusCode)
	require.Equal(t, http.StatusForbidden, b.get(t, "patients", tok.AccessToken.Reveal()).StatusCode, "not granted")
	b.sb.Clock.Advance(sandbox.DefaultRealTokenLifetime)
	require.Equal(t, http.StatusUnauthorized, b.get(t, "records", tok.AccessToken.Reveal()).StatusCode)
	require.Equal(t, 1, b.sb.ExpiredUsesBy(clientID))

	// The next refresh uses the new refresh token and rotates again.
	rt1 := tok.RefreshToken
	tok2, err := b.adapter.Token(ctx, vendors.Credential{ClientID: clientID, ClientSecret: secret.New(clientSecret), RefreshToken: rt1})
	require.NoError(t, err)
	require.False(t, tok2.RefreshToken.IsZero())
	require.False(t, tok2.RefreshToken.Equal(rt1))

	// The old refresh token is refused after use: the delegation is gone.
	_, err = b.adapter.Token(ctx, userCred(rt0))
	ve := vendortest.RequireError(t, err, vendortest.Want{Vendor: "healthsync", Op: "request token",
		Class: vendors.ClassRevoked, Status: 400})
	require.Contains(t, ve.Error(), "invalid_grant")
	vendortest.RequireNoSecret(t, err, clientSecret, rt0, tok2.RefreshToken.Reveal())

	// HealthSync takes a reuse for a theft and revokes the whole grant.
	_, err = b.adapter.Token(ctx, vendors.Credential{ClientID: clientID, ClientSecret: secret.New(clientSecret), RefreshToken: tok2.RefreshToken})
	require.True(t, vendors.IsRevoked(err))
	require.Equal(t, http.StatusUnauthorized, b.get(t, "records", tok2.AccessToken.Reveal()).StatusCode)
	require.Equal(t, 4, b.sb.TokenCalls(clientID))
	require.Equal(t, 4, b.sent.calls())
}

func TestOAuthRefreshWithoutRotation(t *testing.T) {
	t.Parallel()
	b := setup(t, healthsync.ModeOAuth, nil)
	b.sb.SetHealthSyncRefreshRotation(false)
	rt := b.sb.GrantHealthSync(account, clientID, []string{"read"})
	for range 2 {
		tok, err := b.adapter.Token(t.Context(), userCred(rt))
		require.NoError(t, err)
		require.True(t, tok.RefreshToken.IsZero(), "none came: the store keeps its own")
	}
}

func TestOAuthConsentWithdrawn(t *testing.T) {
	t.Parallel()
	b := setup(t, healthsync.ModeOAuth, nil)
	rt := b.sb.GrantHealthSync(account, clientID, []string{"read"})
	tok, err := b.adapter.Token(t.Context(), userCred(rt))
	require.NoError(t, err)

	require.Equal(t, 1, b.sb.RevokeHealthSyncGrants(account, clientID))
	require.Equal(t, http.StatusUnauthorized, b.get(t, "records", tok.AccessToken.Reveal()).StatusCode)
	require.Equal(t, 1, b.sb.RevokedUses())
	_, err = b.adapter.Token(t.Context(), userCred(tok.RefreshToken.Reveal()))
	vendortest.RequireError(t, err, vendortest.Want{Vendor: "healthsync", Op: "request token", Class: vendors.ClassRevoked, Status: 400})
}

func TestOAuthPublicClient(t *testing.T) {
	t.Parallel()
	b := setup(t, healthsync.ModeOAuth, nil)
	b.sb.AddClient("hs-mobile", "")
	rt := b.sb.GrantHealthSync(account, "hs-mobile", []string{"read"})
	tok, err := b.adapter.Token(t.Context(), vendors.Credential{ClientID: "hs-mobile", RefreshToken: secret.New(rt)})
	require.NoError(t, err)
	require.Equal(t, []string{tok.AccessToken.Reveal()}, b.sb.IssuedTokens("hs-mobile"))
}

func TestOAuthFailures(t *testing.T) {
	t.Parallel()
	vendortest.RunTokenFailures(t, vendortest.TokenFailures(), func(t *testing.T, timeout time.Duration) vendortest.Env {
		b := setup(t, healthsync.ModeOAuth, func(o *healthsync.Options) {
			if timeout > 0 {
				o.HTTPClient = &http.Client{Timeout: timeout}
			}
		})
		cred := userCred(b.sb.GrantHealthSync(account, clientID, []string{"read"}))
		return vendortest.Env{Sandbox: b.sb.Sandbox, Source: refreshSecretCheck{t: t, a: b.adapter}, Cred: cred, Vendor: "healthsync"}
	})
}

// refreshSecretCheck is the adapter, checking that its errors hold no
// refresh token either (RunTokenFailures checks the client secret).
type refreshSecretCheck struct {
	t *testing.T
	a *healthsync.Adapter
}

func (r refreshSecretCheck) Token(ctx context.Context, cred vendors.Credential) (vendors.Token, error) {
	tok, err := r.a.Token(ctx, cred)
	if err != nil {
		vendortest.RequireNoSecret(r.t, err, cred.RefreshToken.Reveal())
	}
	return tok, err
}

func TestServiceAccount(t *testing.T) {
	t.Parallel()
	b := setup(t, healthsync.ModeServiceAccount, nil)
	b.sb.AddHealthSyncServiceAccount(account, "svc-etl", "svc-SECRET-99", []string{"read"})
	cred := vendors.Credential{ID: "hs-etl", ClientID: "svc-etl", ClientSecret: secret.New("svc-SECRET-99")}

	tok, err := b.adapter.Token(t.Context(), cred)
	require.NoError(t, err)
	require.Equal(t, []string{tok.AccessToken.Reveal()}, b.sb.IssuedTokens("svc-etl"))
	require.Equal(t, sandbox.DefaultRealTokenLifetime, tok.ClaimedLifetime)
	require.Equal(t, vendortest.T0, tok.IssuedAt)
	require.True(t, tok.RefreshToken.IsZero())
	require.Equal(t, 1, b.sb.TokenCalls("svc-etl"))
	require.Equal(t, 1, b.sent.calls())

	// It reads for the account, within the account's plan.
	b.sb.SetHealthSyncPlan(account, 1000)
	resp := b.get(t, "patients", tok.AccessToken.Reveal())
	require.Equal(t, http.StatusOK, resp.StatusCode)
	limit, remaining, _, ok := healthsync.ParseRateLimit(resp.Header)
	require.True(t, ok)
	require.Equal(t, 1000, limit)
	require.Equal(t, 999, remaining)
}

func TestServiceAccountScopes(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		scopes []string
		err    bool
	}{{[]string{"records:read"}, false}, {[]string{"records:write"}, true}} {
		t.Run(strings.Join(tt.scopes, " "), func(t *testing.T) {
			t.Parallel()
			b := setup(t, healthsync.ModeServiceAccount, func(o *healthsync.Options) { o.Scopes = tt.scopes })
			b.sb.AddHealthSyncServiceAccount(account, clientID, clientSecret, []string{"read"})
			tok, err := b.adapter.Token(t.Context(), oauthClient)
			if !tt.err {
				require.NoError(t, err)
				require.Equal(t, http.StatusOK, b.get(t, "records", tok.AccessToken.Reveal()).StatusCode)
				require.Equal(t, http.StatusForbidden, b.get(t, "patients", tok.AccessToken.Reveal()).StatusCode)
				return
			}
			ve := vendortest.RequireError(t, err, vendortest.Want{Vendor: "healthsync", Op: "request token",
				Class: vendors.ClassRejected, Status: 400})
			require.Contains(t, ve.Error(), "invalid_scope")
		})
	}
}

func TestServiceAccountFailures(t *testing.T) {
	t.Parallel()
	vendortest.RunTokenFailures(t, vendortest.TokenFailures(), func(t *testing.T, timeout time.Duration) vendortest.Env {
		b := setup(t, healthsync.ModeServiceAccount, func(o *healthsync.Options) {
			if timeout > 0 {
				o.HTTPClient = &http.Client{Timeout: timeout}
			}
			o.VendorName = "healthsync-eu"
		})
		return vendortest.Env{Sandbox: b.sb.Sandbox, Source: b.adapter, Cred: oauthClient, Vendor: "healthsync-eu"}
	})
}

// TestTokenAnswers covers token answers the sandbox does not give.
func TestTokenAnswers(t *testing.T) {
	t.Parallel()
	const rt = "hsr_REFRESH-TOKEN-42"
	reset := strconv.FormatInt(vendortest.T0.Add(25*time.Minute).Unix(), 10)
	tests := []struct {
		name       string
		mode       healthsync.Mode
		status     int
		header     map[string]string
		body       string
		class      string
		retryAfter time.Duration
		contains   string
	}{
		{"invalid_grant refresh", healthsync.ModeOAuth, 400, nil, `{"error":"invalid_grant","error_description":"expired"}`,
			vendors.ClassRevoked, 0, "invalid_grant: expired"},
		{"invalid_grant service account", healthsync.ModeServiceAccount, 400, nil, `{"error":"invalid_grant"}`,
			vendors.ClassRejected, 0, "invalid_grant"},
		{"invalid_client", healthsync.ModeServiceAccount, 400, nil, `{"error":"invalid_client"}`, vendors.ClassRevoked, 0, "invalid_client"},
		{"unauthorized_client", healthsync.ModeOAuth, 400, nil, `{"error":"unauthorized_client"}`, vendors.ClassRevoked, 0, "unauthorized_client"},
		{"invalid_grant in a 503", healthsync.ModeOAuth, 503, nil, `{"error":"invalid_grant"}`, vendors.ClassServer, 0, ""},
		{"429 with reset only", healthsync.ModeOAuth, 429, map[string]string{"X-RateLimit-Reset": reset}, ``,
			vendors.ClassRateLimited, 25 * time.Minute, ""},
		{"429 retry-after wins", healthsync.ModeOAuth, 429, map[string]string{"X-RateLimit-Reset": reset, "Retry-After": "5"}, ``,
			vendors.ClassRateLimited, 5 * time.Second, ""},
		{"refresh token echoed", healthsync.ModeOAuth, 400, nil, `{"error":"invalid_request","error_description":"bad token ` + rt + `"}`,
			vendors.ClassRejected, 0, "bad token [redacted]"},
		{"secret echoed", healthsync.ModeOAuth, 400, nil, `{"error":"invalid_request","error_description":"secret ` + clientSecret + `"}`,
			vendors.ClassRejected, 0, "secret [redacted]"},
		{"not json", healthsync.ModeOAuth, 200, nil, `access_token=abc`, vendors.ClassMalformed, 0, "not a JSON token"},
		{"no access_token", healthsync.ModeOAuth, 200, nil, `{"expires_in":900}`, vendors.ClassMalformed, 0, "no access_token"},
		{"no expires_in", healthsync.ModeOAuth, 200, nil, `{"access_token":"tok-abc"}`, vendors.ClassMalformed, 0, "no expires_in"},
		{"zero expires_in", healthsync.ModeServiceAccount, 200, nil, `{"access_token":"tok-abc","expires_in":0}`, vendors.ClassMalformed, 0, "positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := vendortest.ServeAnswer(t, vendortest.Answer{Status: tt.status, Header: tt.header, Body: tt.body})
			clock := testenv.NewClock(vendortest.T0)
			a, err := healthsync.New(healthsync.Options{BaseURL: srv.URL + "/v1/", Mode: tt.mode, Clock: clock.Now})
			require.NoError(t, err)
			_, err = a.Token(t.Context(), userCred(rt))
			vendortest.RequireError(t, err, vendortest.Want{Vendor: "healthsync", Op: "request token",
				Class: tt.class, Status: tt.status, RetryAfter: tt.retryAfter})
			require.Contains(t, err.Error(), tt.contains)
			vendortest.RequireNoSecret(t, err, clientSecret, rt, "tok-abc", "abc")
			require.EqualValues(t, 1, srv.Calls())
		})
	}
}

func TestTokenRefreshTokenEchoed(t *testing.T) {
	t.Parallel()
	srv := vendortest.ServeAnswer(t, vendortest.Answer{Status: 200,
		Body: `{"access_token":"a","token_type":"bearer","expires_in":"900","refresh_token":"same"}`})
	a, err := healthsync.New(healthsync.Options{BaseURL: srv.URL, Mode: healthsync.ModeOAuth})
	require.NoError(t, err)
	tok, err := a.Token(t.Context(), userCred("same"))
	require.NoError(t, err)
	require.True(t, tok.RefreshToken.IsZero(), "the same refresh token back is no rotation")
	require.Equal(t, 15*time.Minute, tok.ClaimedLifetime)
	require.Equal(t, "bearer", tok.TokenType)
}

func TestParseRateLimit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                  string
		limit, remaining, rst string
		ok                    bool
	}{
		{"all three", "1000", "999", "1640000000", true},
		{"spaces", " 100 ", "0", "1640000000 ", true},
		{"no reset", "100", "5", "", false},
		{"no limit", "", "5", "1640000000", false},
		{"negative remaining", "100", "-1", "1640000000", false},
		{"reset as a date", "100", "5", "Mon, 20 Dec 2021 11:33:20 GMT", false},
		{"fractional reset", "100", "5", "1640000000.5", false},
		{"zero reset", "100", "5", "0", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := http.Header{}
			for k, v := range map[string]string{"X-RateLimit-Limit": tt.limit, "X-RateLimit-Remaining": tt.remaining, "X-RateLimit-Reset": tt.rst} {
				if v != "" {
					h.Set(k, v)
				}
			}
			limit, remaining, reset, ok := healthsync.ParseRateLimit(h)
			require.Equal(t, tt.ok, ok)
			if !ok {
				require.Zero(t, limit)
				require.Zero(t, remaining)
				require.True(t, reset.IsZero())
				return
			}
			require.Equal(t, strings.TrimSpace(tt.limit), strconv.Itoa(limit))
			require.Equal(t, strings.TrimSpace(tt.remaining), strconv.Itoa(remaining))
			require.EqualValues(t, 1640000000, reset.Unix())
		})
	}
	// Header names are case-insensitive, as HTTP's are.
	_, _, _, ok := healthsync.ParseRateLimit(http.Header{"X-Ratelimit-Limit": {"1"}, "X-Ratelimit-Remaining": {"0"}, "X-Ratelimit-Reset": {"5"}})
	require.True(t, ok)
}
