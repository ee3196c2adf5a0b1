package redoxlegacy_test

import (
	"bytes"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/internal/testenv"
	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/vendors"
	"github.com/tokenrelay/tokenrelay/vendors/internal/vendortest"
	"github.com/tokenrelay/tokenrelay/vendors/redoxlegacy"
	"github.com/tokenrelay/tokenrelay/vendors/sandbox"
)

const (
	// apiKey and apiSecret are distinctive, so that a leak into an error
	// shows: Redox treats an exposed key like an exposed secret.
	apiKey    = "rl-APIKEY-3c9e71d0a2b4"
	apiSecret = "rl-SECRET-8e2f41c7d9a6"
	day       = 24 * time.Hour
)

var cred = vendors.Credential{ID: "source-42", ClientID: apiKey, ClientSecret: secret.New(apiSecret)}

type bundle struct {
	sb      vendortest.Sandbox
	adapter *redoxlegacy.Adapter
}

func setup(t *testing.T, mode redoxlegacy.Mode, edit func(*redoxlegacy.Options)) bundle {
	t.Helper()
	sb := vendortest.StartSandbox(t, sandbox.Options{}, cred)
	a := vendortest.NewAdapter(t, redoxlegacy.New, redoxlegacy.Options{BaseURL: sb.URL + sandbox.RedoxLegacyPath, Mode: mode, Clock: sb.Clock.Now}, edit)
	return bundle{sb: sb, adapter: a}
}

// token gets a token for c and requires success.
func (b bundle) token(t *testing.T, c vendors.Credential) vendors.Token {
	t.Helper()
	tok, err := b.adapter.Token(t.Context(), c)
	require.NoError(t, err)
	return tok
}

// send posts a Data Model API request with tok to the sandbox and returns
// the status.
func (b bundle) send(t *testing.T, tok secret.Value) int {
	t.Helper()
	body := `{"Meta":{"DataModel":"PatientAdmin","EventType":"Arrival","Destinations":[{"ID":"af394f14","Name":"Redox EMR"}]}}`
	return vendortest.Bearer(t, http.MethodPost, b.sb.URL+sandbox.RedoxLegacyPath+"endpoint", tok.Reveal(),
		bytes.NewReader([]byte(body))).StatusCode
}

// refreshTokens maps the refresh tokens the sandbox issued to apiKey to
// what it knows of them.
func (b bundle) refreshTokens() map[string]sandbox.RedoxLegacyRefreshToken {
	m := map[string]sandbox.RedoxLegacyRefreshToken{}
	for _, rt := range b.sb.RedoxLegacyRefreshTokens(apiKey) {
		m[rt.Token] = rt
	}
	return m
}

func withRefresh(rt secret.Value) vendors.Credential {
	c := cred
	c.RefreshToken = rt
	return c
}

func TestAuthenticate(t *testing.T) {
	t.Parallel()
	b := setup(t, "", nil)
	require.Equal(t, redoxlegacy.ModeReauthenticate, b.adapter.Mode(), "the default")
	tok := b.token(t, cred)

	require.Equal(t, []string{tok.AccessToken.Reveal()}, b.sb.IssuedTokens(apiKey))
	require.Equal(t, "Bearer", tok.TokenType)
	require.Equal(t, 24*time.Hour, tok.ClaimedLifetime, "read from the ISO expires")
	require.Equal(t, vendortest.T0, tok.IssuedAt)
	require.Equal(t, []sandbox.RedoxLegacyRefreshToken{{Token: tok.RefreshToken.Reveal(), Chain: 1,
		IssuedAt: vendortest.T0, ExpiresAt: vendortest.T0.Add(7 * day), State: sandbox.RedoxLegacyRefreshActive}},
		b.sb.RedoxLegacyRefreshTokens(apiKey), "the refresh token is returned for the pipeline to store")
	require.Equal(t, 1, b.sb.TokenCalls(apiKey))
	require.Equal(t, sandbox.RedoxLegacyStats{Authenticate: 1, Chains: 1}, b.sb.RedoxLegacyStats(apiKey))

	// The token works for 24 hours, then gets 401.
	require.Equal(t, http.StatusOK, b.send(t, tok.AccessToken))
	b.sb.Clock.Advance(day - time.Second)
	require.Equal(t, http.StatusOK, b.send(t, tok.AccessToken))
	b.sb.Clock.Advance(time.Second)
	require.Equal(t, http.StatusUnauthorized, b.send(t, tok.AccessToken))
	require.Equal(t, 1, b.sb.ExpiredUsesBy(apiKey))

	// Re-authentication ignores a stored refresh token and leaves its chain
	// alone.
	next := b.token(t, withRefresh(tok.RefreshToken))
	require.Equal(t, vendortest.T0.Add(day), next.IssuedAt)
	require.False(t, next.RefreshToken.Equal(tok.RefreshToken))
	require.Equal(t, 2, b.sb.TokenCalls(apiKey))
	require.Equal(t, sandbox.RedoxLegacyStats{Authenticate: 2, Chains: 2}, b.sb.RedoxLegacyStats(apiKey))
	rts := b.refreshTokens()
	require.Equal(t, sandbox.RedoxLegacyRefreshActive, rts[tok.RefreshToken.Reveal()].State)
	require.Equal(t, 2, rts[next.RefreshToken.Reveal()].Chain)
}

func TestLifetimeIsReadFromExpires(t *testing.T) {
	t.Parallel()
	b := setup(t, redoxlegacy.ModeRefresh, nil)
	b.sb.SetRedoxLegacyTokenLifetime(90 * time.Minute)
	tok := b.token(t, cred)
	require.Equal(t, 90*time.Minute, tok.ClaimedLifetime)
	b.sb.Clock.Advance(time.Hour)
	tok = b.token(t, withRefresh(tok.RefreshToken))
	require.Equal(t, 90*time.Minute, tok.ClaimedLifetime, "the refresh answer too")
	require.Equal(t, vendortest.T0.Add(time.Hour), tok.IssuedAt)
}

func TestRefreshRotates(t *testing.T) {
	t.Parallel()
	b := setup(t, redoxlegacy.ModeRefresh, nil)
	first := b.token(t, cred) // nothing stored yet: authenticate
	require.Equal(t, sandbox.RedoxLegacyStats{Authenticate: 1, Chains: 1}, b.sb.RedoxLegacyStats(apiKey))

	b.sb.Clock.Advance(16 * time.Hour)
	second := b.token(t, withRefresh(first.RefreshToken))
	require.Equal(t, sandbox.RedoxLegacyStats{Authenticate: 1, Refresh: 1, Chains: 1}, b.sb.RedoxLegacyStats(apiKey))
	require.Equal(t, 2, b.sb.TokenCalls(apiKey), "one call per renewal")
	require.Equal(t, vendortest.T0.Add(16*time.Hour), second.IssuedAt)
	require.Equal(t, day, second.ClaimedLifetime)
	require.False(t, second.RefreshToken.IsZero())
	require.False(t, second.RefreshToken.Equal(first.RefreshToken), "rotated")
	require.Equal(t, http.StatusOK, b.send(t, second.AccessToken))
	require.Equal(t, http.StatusOK, b.send(t, first.AccessToken), "the old access token lives on until it expires")

	rts := b.refreshTokens()
	require.Equal(t, sandbox.RedoxLegacyRefreshConsumed, rts[first.RefreshToken.Reveal()].State)
	require.Equal(t, sandbox.RedoxLegacyRefreshActive, rts[second.RefreshToken.Reveal()].State)
	require.Equal(t, 1, rts[second.RefreshToken.Reveal()].Chain)

	// The next renewal continues the chain.
	b.sb.Clock.Advance(16 * time.Hour)
	third := b.token(t, withRefresh(second.RefreshToken))
	require.Equal(t, 1, b.refreshTokens()[third.RefreshToken.Reveal()].Chain)
	require.Equal(t, sandbox.RedoxLegacyStats{Authenticate: 1, Refresh: 2, Chains: 1}, b.sb.RedoxLegacyStats(apiKey))
}

// TestRefreshTokenReused is a renewal whose new refresh token was not
// stored (the pipeline lost its claim and discarded the answer): the next
// renewal presents the consumed one.
func TestRefreshTokenReused(t *testing.T) {
	t.Parallel()
	b := setup(t, redoxlegacy.ModeRefresh, nil)
	stored := b.token(t, cred).RefreshToken
	b.sb.Clock.Advance(16 * time.Hour)
	lost := b.token(t, withRefresh(stored)) // answered, never stored

	b.sb.Clock.Advance(time.Minute)
	tok, err := b.adapter.Token(t.Context(), withRefresh(stored))
	require.NoError(t, err, "the credential survives: the refused refresh falls back to authenticate")
	require.Equal(t, sandbox.RedoxLegacyStats{Authenticate: 2, Refresh: 2, RefreshRefused: 1, Reuses: 1, Chains: 2},
		b.sb.RedoxLegacyStats(apiKey))
	require.Equal(t, 4, b.sb.TokenCalls(apiKey), "authenticate, refresh, then a refused refresh and an authenticate")
	require.Equal(t, day, tok.ClaimedLifetime)
	require.Equal(t, http.StatusOK, b.send(t, tok.AccessToken))

	rts := b.refreshTokens()
	require.Equal(t, sandbox.RedoxLegacyRefreshConsumed, rts[stored.Reveal()].State)
	require.Equal(t, sandbox.RedoxLegacyRefreshRevoked, rts[lost.RefreshToken.Reveal()].State,
		"reuse detection revoked the chain the lost token belongs to")
	require.Equal(t, sandbox.RedoxLegacyRefreshToken{Token: tok.RefreshToken.Reveal(), Chain: 2,
		IssuedAt: tok.IssuedAt, ExpiresAt: tok.IssuedAt.Add(7 * day), State: sandbox.RedoxLegacyRefreshActive},
		rts[tok.RefreshToken.Reveal()])
}

func TestRefreshAfterIdleLimit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		idle      time.Duration
		wantCalls int
		wantStats sandbox.RedoxLegacyStats
		wantChain int
	}{
		// wantCalls and wantStats include the first authenticate.
		{"just inside 7 days", redoxlegacy.RefreshTokenIdleLimit - time.Second, 2,
			sandbox.RedoxLegacyStats{Authenticate: 1, Refresh: 1, Chains: 1}, 1},
		{"7 days", redoxlegacy.RefreshTokenIdleLimit, 3,
			sandbox.RedoxLegacyStats{Authenticate: 2, Refresh: 1, RefreshRefused: 1, Chains: 2}, 2},
		{"8 days", 8 * day, 3,
			sandbox.RedoxLegacyStats{Authenticate: 2, Refresh: 1, RefreshRefused: 1, Chains: 2}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, redoxlegacy.ModeRefresh, nil)
			first := b.token(t, cred)
			b.sb.Clock.Advance(tt.idle)
			tok := b.token(t, withRefresh(first.RefreshToken))
			require.Equal(t, tt.wantCalls, b.sb.TokenCalls(apiKey))
			require.Equal(t, tt.wantStats, b.sb.RedoxLegacyStats(apiKey))
			require.Equal(t, tt.wantChain, b.refreshTokens()[tok.RefreshToken.Reveal()].Chain)
			require.Equal(t, vendortest.T0.Add(tt.idle), tok.IssuedAt)
			require.Equal(t, http.StatusOK, b.send(t, tok.AccessToken))
		})
	}
}

// TestRevoked: only the key and secret decide a revocation, and the mode
// decides when a change of them is noticed.
func TestRevoked(t *testing.T) {
	t.Parallel()
	deleteKey := func(sb *sandbox.Sandbox) { sb.DeleteClient(apiKey) }
	changeSecret := func(sb *sandbox.Sandbox) { sb.AddClient(apiKey, "rotated-secret") }
	tests := []struct {
		name      string
		mode      redoxlegacy.Mode
		prepare   func(*sandbox.Sandbox)
		idle      time.Duration
		wantErr   bool
		wantCalls int
		contains  string
	}{
		{"reauthenticate, key deleted", redoxlegacy.ModeReauthenticate, deleteKey, 0, true, 1, "auth/authenticate"},
		{"reauthenticate, secret changed", redoxlegacy.ModeReauthenticate, changeSecret, 0, true, 1, "auth/authenticate"},
		{"refresh, key deleted", redoxlegacy.ModeRefresh, deleteKey, 0, true, 2,
			"after the refresh token was refused with HTTP 401"},
		// A refresh does not send the secret: the chain lives on.
		{"refresh, secret changed", redoxlegacy.ModeRefresh, changeSecret, 0, false, 1, ""},
		{"refresh, secret changed, chain expired", redoxlegacy.ModeRefresh, changeSecret, 8 * day, true, 2,
			"after the refresh token was refused with HTTP 401"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, tt.mode, nil)
			first := b.token(t, cred)
			b.sb.Reset()
			tt.prepare(b.sb.Sandbox)
			b.sb.Clock.Advance(tt.idle)
			_, err := b.adapter.Token(t.Context(), withRefresh(first.RefreshToken))
			require.Equal(t, tt.wantCalls, b.sb.TokenCalls(apiKey))
			if !tt.wantErr {
				require.NoError(t, err)
				return
			}
			vendortest.RequireError(t, err, vendortest.Want{Vendor: redoxlegacy.Kind, Op: "request token",
				Class: vendors.ClassRevoked, Status: http.StatusUnauthorized})
			require.ErrorContains(t, err, tt.contains)
			vendortest.RequireNoSecret(t, err, apiKey, apiSecret, first.RefreshToken.Reveal(), first.AccessToken.Reveal())
		})
	}
}

func TestTokenFailures(t *testing.T) {
	t.Parallel()
	newAdapter := func(t *testing.T, sb vendortest.Sandbox, mode redoxlegacy.Mode, timeout time.Duration) *redoxlegacy.Adapter {
		opts := redoxlegacy.Options{BaseURL: sb.URL + sandbox.RedoxLegacyPath, Mode: mode, Clock: sb.Clock.Now,
			VendorName: "redox-us"}
		if timeout > 0 {
			opts.HTTPClient = &http.Client{Timeout: timeout}
		}
		a, err := redoxlegacy.New(opts)
		require.NoError(t, err)
		return a
	}
	for _, mode := range []redoxlegacy.Mode{redoxlegacy.ModeReauthenticate, redoxlegacy.ModeRefresh} {
		t.Run(string(mode)+" authenticate", func(t *testing.T) {
			t.Parallel()
			vendortest.RunTokenFailures(t, vendortest.TokenFailures(), func(t *testing.T, timeout time.Duration) vendortest.Env {
				sb := vendortest.StartSandbox(t, sandbox.Options{}, cred)
				return vendortest.Env{Sandbox: sb.Sandbox, Source: newAdapter(t, sb, mode, timeout), Cred: cred, Vendor: "redox-us"}
			})
		})
	}

	// Refreshing a stored refresh token fails the same ways, with one call:
	// no fallback when Redox did not refuse the refresh token. (A deleted
	// key and a changed secret are TestRevoked's.)
	cases := slices.DeleteFunc(vendortest.TokenFailures(), func(tc vendortest.TokenCase) bool {
		return tc.Name == "deleted client" || tc.Name == "secret changed"
	})
	require.Len(t, cases, 7)
	t.Run("refresh", func(t *testing.T) {
		t.Parallel()
		vendortest.RunTokenFailures(t, cases, func(t *testing.T, timeout time.Duration) vendortest.Env {
			sb := vendortest.StartSandbox(t, sandbox.Options{}, cred)
			seed, err := newAdapter(t, sb, redoxlegacy.ModeReauthenticate, 0).Token(t.Context(), cred)
			require.NoError(t, err)
			sb.Reset()
			c := withRefresh(seed.RefreshToken)
			t.Cleanup(func() {
				require.Equal(t, 1, sb.RedoxLegacyStats(apiKey).Refresh, "the failed call was the refresh")
			})
			return vendortest.Env{Sandbox: sb.Sandbox, Source: newAdapter(t, sb, redoxlegacy.ModeRefresh, timeout), Cred: c, Vendor: "redox-us"}
		})
	})
}

// TestFaultKeepsChain: a refresh that failed before Redox handled it
// leaves the stored refresh token good for the retry.
func TestFaultKeepsChain(t *testing.T) {
	t.Parallel()
	b := setup(t, redoxlegacy.ModeRefresh, nil)
	first := b.token(t, cred)
	require.NoError(t, b.sb.Inject(sandbox.Fault{Kind: sandbox.FaultServerError, Status: 503, Times: 1}))
	_, err := b.adapter.Token(t.Context(), withRefresh(first.RefreshToken))
	vendortest.RequireError(t, err, vendortest.Want{Vendor: redoxlegacy.Kind, Op: "request token",
		Class: vendors.ClassServer, Status: 503})
	require.ErrorContains(t, err, "auth/refreshToken")

	tok := b.token(t, withRefresh(first.RefreshToken))
	require.Equal(t, 1, b.refreshTokens()[tok.RefreshToken.Reveal()].Chain)
	require.Equal(t, sandbox.RedoxLegacyStats{Authenticate: 1, Refresh: 2, Chains: 1}, b.sb.RedoxLegacyStats(apiKey))
}

// TestTokenAnswers covers answers the sandbox does not give, from a fake
// endpoint that gives every request the same answer.
func TestTokenAnswers(t *testing.T) {
	t.Parallel()
	const refreshToken = "rl-REFRESH-55aa10c3e7f2"
	expires := func(s string) string {
		return `{"accessToken":"tok-abc","expires":` + s + `,"refreshToken":"` + refreshToken + `"}`
	}
	tests := []struct {
		name       string
		mode       redoxlegacy.Mode
		status     int
		header     map[string]string
		body       string
		class      string
		retryAfter time.Duration
		contains   string
		calls      int32
	}{
		{"401 without a body", "", 401, nil, ``, vendors.ClassRevoked, 0, "auth/authenticate", 1},
		{"401 echoing the key and secret", "", 401, nil, `{"error":"bad key ` + apiKey + ` or secret ` + apiSecret + `"}`,
			vendors.ClassRevoked, 0, `bad key [redacted] or secret [redacted]`, 1},
		{"400", "", 400, nil, `{"Meta":{"Errors":[{"Text":"apiKey is required"},{"Text":"secret is required"}]}}`,
			vendors.ClassRejected, 0, `auth/authenticate: vendor said "apiKey is required; secret is required"`, 1},
		{"400 oauth", "", 400, nil, `{"error":"invalid_request","error_description":"bad"}`, vendors.ClassRejected, 0, `"invalid_request: bad"`, 1},
		{"400 message", "", 400, nil, `{"message":"Bad Request"}`, vendors.ClassRejected, 0, `"Bad Request"`, 1},
		{"400 other json", "", 400, nil, `{"status":400}`, vendors.ClassRejected, 0, `"{\"status\":400}"`, 1},
		{"403 html", "", 403, nil, "<html>\n Forbidden </html>", vendors.ClassRejected, 0, "<html> Forbidden </html>", 1},
		{"redirect", "", 302, map[string]string{"Location": "https://elsewhere.example/"}, ``, vendors.ClassRejected, 0, "", 1},
		{"429 with a date", "", 429, map[string]string{"Retry-After": vendortest.T0.Add(90 * time.Second).Format(http.TimeFormat)}, ``,
			vendors.ClassRateLimited, 90 * time.Second, "", 1},
		{"502 html", "", 502, nil, "<html>\n<body>Bad   Gateway</body>\n</html>", vendors.ClassServer, 0, "<html> <body>Bad Gateway</body> </html>", 1},
		{"not json", "", 200, nil, `accessToken=tok-abc`, vendors.ClassMalformed, 0, "not a JSON token", 1},
		{"no accessToken", "", 200, nil, `{"expires":"2025-03-05T10:00:00.000Z"}`, vendors.ClassMalformed, 0, "no accessToken", 1},
		{"no expires", "", 200, nil, `{"accessToken":"tok-abc"}`, vendors.ClassMalformed, 0, "no expires", 1},
		{"expires in seconds", "", 200, nil, expires(`86400`), vendors.ClassMalformed, 0, "expires is not a string", 1},
		{"expires not a time", "", 200, nil, expires(`"tomorrow"`), vendors.ClassMalformed, 0, `expires "tomorrow" is not an ISO 8601 time`, 1},
		{"expires in the past", "", 200, nil, expires(`"2025-03-04T09:00:00.000Z"`), vendors.ClassMalformed, 0,
			"expires 2025-03-04T09:00:00Z is not after the request was sent (2025-03-04T10:00:00Z)", 1},

		// With a stored refresh token: a 4xx other than 429 refuses it, and
		// the authenticate that follows decides; anything else is final.
		{"refresh 401", redoxlegacy.ModeRefresh, 401, nil, `{"error":"invalid refresh token ` + refreshToken + `"}`,
			vendors.ClassRevoked, 0, `auth/authenticate: vendor said "invalid refresh token [redacted]" (after the refresh token was refused with HTTP 401)`, 2},
		{"refresh 400", redoxlegacy.ModeRefresh, 400, nil, ``, vendors.ClassRejected, 0,
			"auth/authenticate (after the refresh token was refused with HTTP 400)", 2},
		{"refresh 429", redoxlegacy.ModeRefresh, 429, map[string]string{"Retry-After": "7"}, ``, vendors.ClassRateLimited, 7 * time.Second,
			"auth/refreshToken", 1},
		{"refresh 503", redoxlegacy.ModeRefresh, 503, nil, ``, vendors.ClassServer, 0, "auth/refreshToken", 1},
		{"refresh not json", redoxlegacy.ModeRefresh, 200, nil, `<html>`, vendors.ClassMalformed, 0, "auth/refreshToken: answer is not a JSON token", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := vendortest.ServeAnswer(t, vendortest.Answer{Status: tt.status, Header: tt.header, Body: tt.body})
			clock := testenv.NewClock(vendortest.T0)
			a, err := redoxlegacy.New(redoxlegacy.Options{BaseURL: srv.URL, Mode: tt.mode, Clock: clock.Now})
			require.NoError(t, err)
			_, err = a.Token(t.Context(), withRefresh(secret.New(refreshToken)))
			vendortest.RequireError(t, err, vendortest.Want{Vendor: redoxlegacy.Kind, Op: "request token",
				Class: tt.class, Status: tt.status, RetryAfter: tt.retryAfter})
			require.Contains(t, err.Error(), tt.contains)
			require.LessOrEqual(t, len(err.Error()), 160+vendors.MaxExcerpt)
			vendortest.RequireNoSecret(t, err, apiKey, apiSecret, refreshToken, "tok-abc")
			require.Equal(t, tt.calls, srv.Calls())
		})
	}
}

func TestTokenAnswerShapes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		body        string
		lifetime    time.Duration
		withRefresh bool
	}{
		{"documented", `{"accessToken":"a","expires":"2025-03-05T10:00:00.000Z","refreshToken":"r"}`, day, true},
		{"no fraction", `{"accessToken":"a","expires":"2025-03-05T10:00:00Z","refreshToken":"r"}`, day, true},
		{"offset", `{"accessToken":"a","expires":"2025-03-05T11:00:00.000+01:00","refreshToken":"r"}`, day, true},
		{"no zone: UTC", `{"accessToken":"a","expires":"2025-03-04T22:00:00.000","refreshToken":"r"}`, 12 * time.Hour, true},
		{"no refresh token", `{"accessToken":"a","expires":"2025-03-05T10:00:00.000Z"}`, day, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := vendortest.ServeAnswer(t, vendortest.Answer{Status: http.StatusOK, Body: tt.body})
			clock := testenv.NewClock(vendortest.T0)
			a, err := redoxlegacy.New(redoxlegacy.Options{BaseURL: srv.URL, Clock: clock.Now})
			require.NoError(t, err)
			tok, err := a.Token(t.Context(), cred)
			require.NoError(t, err)
			require.Equal(t, "a", tok.AccessToken.Reveal())
			require.Equal(t, tt.lifetime, tok.ClaimedLifetime)
			require.Equal(t, vendortest.T0, tok.IssuedAt)
			// A zero refresh token makes the pipeline keep the stored one.
			require.Equal(t, tt.withRefresh, !tok.RefreshToken.IsZero())
		})
	}
}

func TestNew(t *testing.T) {
	t.Parallel()
	vendortest.RunNew(t, []vendortest.NewCase[redoxlegacy.Options]{
		{Name: "defaults", Opts: redoxlegacy.Options{}},
		{Name: "canada, refresh", Opts: redoxlegacy.Options{BaseURL: redoxlegacy.BaseURLCA, Mode: redoxlegacy.ModeRefresh}},
		{Name: "no trailing slash", Opts: redoxlegacy.Options{BaseURL: "https://api.redoxengine.com"}},
		{Name: "user agent", Opts: redoxlegacy.Options{UserAgent: "Acme Sync (ops@acme.example)"}},
		{Name: "unknown mode", Opts: redoxlegacy.Options{Mode: "sometimes"}, WantErr: `unknown mode "sometimes"`},
		{Name: "relative base", Opts: redoxlegacy.Options{BaseURL: "/api/"}, WantErr: "base_url"},
		{Name: "ftp base", Opts: redoxlegacy.Options{BaseURL: "ftp://x/"}, WantErr: "base_url"},
		{Name: "base with query", Opts: redoxlegacy.Options{BaseURL: "https://x/?a=b"}, WantErr: "base_url"},
		{Name: "user agent with a newline", Opts: redoxlegacy.Options{UserAgent: "Acme\r\nX: y"}, WantErr: "one line"},
	}, func(o redoxlegacy.Options) error { _, err := redoxlegacy.New(o); return err })
}

func TestReauthenticateBy(t *testing.T) {
	t.Parallel()
	t0 := vendortest.T0
	tests := []struct {
		lastUse, want time.Time
	}{
		{t0, t0.Add(6 * day)},
		{t0.Add(16 * time.Hour), t0.Add(6*day + 16*time.Hour)},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, redoxlegacy.ReauthenticateBy(tt.lastUse))
		require.True(t, redoxlegacy.ReauthenticateBy(tt.lastUse).Before(tt.lastUse.Add(redoxlegacy.RefreshTokenIdleLimit)))
	}
	require.Equal(t, 7*day, redoxlegacy.RefreshTokenIdleLimit)
	require.Equal(t, day, redoxlegacy.ReauthenticateMargin)
}
