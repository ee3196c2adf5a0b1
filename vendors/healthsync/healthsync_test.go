package healthsync_test

import (
	"context"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/vendors"
	"github.com/tokenrelay/tokenrelay/vendors/healthsync"
	"github.com/tokenrelay/tokenrelay/vendors/internal/vendortest"
	"github.com/tokenrelay/tokenrelay/vendors/sandbox"
)

const (
	account  = "clinic-7"
	clientID = "hs-app-1"
	// clientSecret is distinctive, so that a leak into an error shows.
	clientSecret = "hs-SECRET-1b2c3d4e5f"
)

// oauthClient is the OAuth client every test's sandbox registers.
var oauthClient = vendors.Credential{ID: "clinic-7-app", ClientID: clientID, ClientSecret: secret.New(clientSecret)}

// counter counts the HTTP requests an adapter sends.
type counter struct {
	n    atomic.Int32
	base http.RoundTripper
}

func (c *counter) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.base.RoundTrip(r)
}

func (c *counter) calls() int { return int(c.n.Load()) }

type bundle struct {
	sb      vendortest.Sandbox
	adapter *healthsync.Adapter
	sent    *counter
}

// setup starts a sandbox and an adapter in mode on it; edit changes the
// adapter's options.
func setup(t *testing.T, mode healthsync.Mode, edit func(*healthsync.Options)) bundle {
	t.Helper()
	sb := vendortest.StartSandbox(t, sandbox.Options{}, oauthClient)
	sent := &counter{base: http.DefaultTransport}
	a := vendortest.NewAdapter(t, healthsync.New, healthsync.Options{BaseURL: sb.URL + sandbox.HealthSyncPath, Mode: mode,
		Clock: sb.Clock.Now, HTTPClient: &http.Client{Transport: sent}}, edit)
	return bundle{sb: sb, adapter: a, sent: sent}
}

// keyCred is a credential holding an API key.
func keyCred(key string) vendors.Credential {
	return vendors.Credential{ID: "hs-main", APIKey: secret.New(key)}
}

// get sends GET path with a bearer token, as an application using the token
// would, and returns the answer (closed at the end of the test).
func (b bundle) get(t *testing.T, path, token string) *http.Response {
	t.Helper()
	return vendortest.Bearer(t, http.MethodGet, b.sb.URL+sandbox.HealthSyncPath+path, token, nil)
}

func TestAPIKeyToken(t *testing.T) {
	t.Parallel()
	b := setup(t, healthsync.ModeAPIKey, nil)
	keyID, key := b.sb.AddHealthSyncKey(account, []string{"records:read"})

	tok, err := b.adapter.Token(t.Context(), keyCred(key))
	require.NoError(t, err)
	require.Equal(t, key, tok.AccessToken.Reveal(), "the token is the key")
	require.Equal(t, "Bearer", tok.TokenType)
	require.Equal(t, healthsync.APIKeyVerifyPeriod, tok.ClaimedLifetime)
	require.Equal(t, 24*time.Hour, tok.ClaimedLifetime)
	require.Equal(t, vendortest.T0, tok.IssuedAt)
	require.True(t, tok.RefreshToken.IsZero())

	// One real read with the key, and no token call.
	require.Equal(t, 1, b.sent.calls())
	keys := b.sb.HealthSyncKeys(account)
	require.Len(t, keys, 1)
	require.Equal(t, keyID, keys[0].ID)
	require.Equal(t, 1, keys[0].Uses)
	require.Equal(t, vendortest.T0, keys[0].LastUsed)
	require.Zero(t, b.sb.TotalTokenCalls())
}

func TestAPIKeyRefused(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		prepare func(b bundle) string // returns the key to use
		revoked int
		unknown int
	}{
		{"revoked at the vendor", func(b bundle) string {
			id, key := b.sb.AddHealthSyncKey(account, []string{"read"})
			require.True(t, b.sb.RevokeHealthSyncKey(id))
			return key
		}, 1, 0},
		{"unknown", func(bundle) string { return "hs_test_never-issued" }, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, healthsync.ModeAPIKey, nil)
			key := tt.prepare(b)
			_, err := b.adapter.Token(t.Context(), keyCred(key))
			vendortest.RequireError(t, err, vendortest.Want{Vendor: "healthsync", Op: "verify key",
				Class: vendors.ClassRevoked, Status: 401})
			vendortest.RequireNoSecret(t, err, key)
			require.Equal(t, 1, b.sent.calls())
			require.Equal(t, tt.revoked, b.sb.RevokedUses())
			require.Equal(t, tt.unknown, b.sb.UnknownUses())
		})
	}
}

func TestAPIKeyMissingScope(t *testing.T) {
	t.Parallel()
	b := setup(t, healthsync.ModeAPIKey, nil)
	_, key := b.sb.AddHealthSyncKey(account, []string{"patients:read"})
	_, err := b.adapter.Token(t.Context(), keyCred(key))
	ve := vendortest.RequireError(t, err, vendortest.Want{Vendor: "healthsync", Op: "verify key",
		Class: vendors.ClassRejected, Status: 403})
	require.Contains(t, ve.Error(), "insufficient_scope")
	require.False(t, vendors.IsRevoked(err), "a missing scope is no revocation")
	vendortest.RequireNoSecret(t, err, key)

	// The verification read is configurable: this key can read patients.
	b2 := setup(t, healthsync.ModeAPIKey, func(o *healthsync.Options) { o.KeyPaths.Verify = "patients?limit=1" })
	_, key = b2.sb.AddHealthSyncKey(account, []string{"patients:read"})
	_, err = b2.adapter.Token(t.Context(), keyCred(key))
	require.NoError(t, err)
}

// TestAPIKeyFailures runs the sandbox's faults against the verification
// read: the API-key counterpart of vendortest.TokenFailures.
func TestAPIKeyFailures(t *testing.T) {
	t.Parallel()
	inject := func(f sandbox.Fault) func(*testing.T, bundle) {
		return func(t *testing.T, b bundle) {
			f.Endpoint = sandbox.EndpointPatient
			require.NoError(t, b.sb.Inject(f))
		}
	}
	tests := []struct {
		name           string
		prepare        func(*testing.T, bundle)
		clientTimeout  time.Duration
		contextTimeout time.Duration
		class          string
		status         int
		retryAfter     time.Duration
	}{
		{name: "latency", prepare: inject(sandbox.Fault{Kind: sandbox.FaultLatency, Latency: time.Hour}),
			clientTimeout: time.Second, class: vendors.ClassTimeout},
		{name: "context deadline", prepare: inject(sandbox.Fault{Kind: sandbox.FaultLatency, Latency: time.Hour}),
			contextTimeout: time.Second, class: vendors.ClassTimeout},
		{name: "server error", prepare: inject(sandbox.Fault{Kind: sandbox.FaultServerError, Status: 503, RetryAfter: 30 * time.Second}),
			class: vendors.ClassServer, status: 503, retryAfter: 30 * time.Second},
		{name: "server error without retry-after", prepare: inject(sandbox.Fault{Kind: sandbox.FaultServerError}),
			class: vendors.ClassServer, status: 500},
		{name: "malformed", prepare: inject(sandbox.Fault{Kind: sandbox.FaultMalformed}),
			class: vendors.ClassMalformed, status: 200},
		{name: "reset", prepare: inject(sandbox.Fault{Kind: sandbox.FaultReset}), class: vendors.ClassNetwork},
		{name: "rate limited", prepare: inject(sandbox.Fault{Kind: sandbox.FaultRateLimited, RetryAfter: 7 * time.Second}),
			class: vendors.ClassRateLimited, status: 429, retryAfter: 7 * time.Second},
		{name: "plan exhausted", prepare: func(t *testing.T, b bundle) {
			b.sb.SetHealthSyncPlan(account, 1)
			_, key := b.sb.AddHealthSyncKey(account, []string{"read"})
			require.Equal(t, http.StatusOK, b.get(t, "records", key).StatusCode)
			b.sb.Clock.Advance(20 * time.Minute)
		}, class: vendors.ClassRateLimited, status: 429, retryAfter: 40 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sent := &counter{base: http.DefaultTransport}
			b := setup(t, healthsync.ModeAPIKey, func(o *healthsync.Options) {
				o.HTTPClient = &http.Client{Transport: sent, Timeout: tt.clientTimeout}
			})
			keyID, key := b.sb.AddHealthSyncKey(account, []string{"records:read"})
			tt.prepare(t, b)
			ctx := t.Context()
			if tt.contextTimeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.contextTimeout)
				defer cancel()
			}
			_, err := b.adapter.Token(ctx, keyCred(key))
			require.Error(t, err)
			t.Log(err)
			vendortest.RequireError(t, err, vendortest.Want{Vendor: "healthsync", Op: "verify key", Class: tt.class,
				Status: tt.status, RetryAfter: tt.retryAfter})
			require.Equal(t, 1, sent.calls(), "exactly one request, even on failure")
			for _, k := range b.sb.HealthSyncKeys(account) {
				if k.ID == keyID {
					require.Equal(t, 1, k.Uses)
				}
			}
			vendortest.RequireNoSecret(t, err, key)
		})
	}
}

func TestHourlyLimit(t *testing.T) {
	t.Parallel()
	b := setup(t, healthsync.ModeAPIKey, nil)
	b.sb.SetHealthSyncPlan(account, 3)
	_, key := b.sb.AddHealthSyncKey(account, []string{"read"})
	cred := keyCred(key)
	windowEnd := vendortest.T0.Truncate(time.Hour).Add(time.Hour)

	resp := b.get(t, "records?limit=1", key)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	limit, remaining, reset, ok := healthsync.ParseRateLimit(resp.Header)
	require.True(t, ok)
	require.Equal(t, 3, limit)
	require.Equal(t, 2, remaining)
	require.Equal(t, windowEnd.Unix(), reset.Unix())
	require.Equal(t, strconv.FormatInt(windowEnd.Unix(), 10), resp.Header.Get("X-RateLimit-Reset"))

	for range 2 {
		_, err := b.adapter.Token(t.Context(), cred)
		require.NoError(t, err)
	}
	_, err := b.adapter.Token(t.Context(), cred)
	vendortest.RequireError(t, err, vendortest.Want{Vendor: "healthsync", Op: "verify key",
		Class: vendors.ClassRateLimited, Status: 429, RetryAfter: time.Hour})

	b.sb.Clock.Advance(45 * time.Minute)
	resp = b.get(t, "records", key)
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	require.Equal(t, "900", resp.Header.Get("Retry-After"))
	_, remaining, reset, ok = healthsync.ParseRateLimit(resp.Header)
	require.True(t, ok)
	require.Zero(t, remaining)
	require.Equal(t, windowEnd.Unix(), reset.Unix())

	// The next window restores the plan.
	b.sb.Clock.Set(windowEnd)
	_, err = b.adapter.Token(t.Context(), cred)
	require.NoError(t, err)
	resp = b.get(t, "records", key)
	_, remaining, reset, _ = healthsync.ParseRateLimit(resp.Header)
	require.Equal(t, 1, remaining)
	require.Equal(t, windowEnd.Add(time.Hour).Unix(), reset.Unix())

	// The limit is the account's, whatever the key; other accounts are apart.
	_, other := b.sb.AddHealthSyncKey(account, []string{"read"})
	require.Equal(t, http.StatusOK, b.get(t, "records", other).StatusCode)
	require.Equal(t, http.StatusTooManyRequests, b.get(t, "records", key).StatusCode)
	_, elsewhere := b.sb.AddHealthSyncKey("clinic-8", []string{"read"})
	_, err = b.adapter.Token(t.Context(), keyCred(elsewhere))
	require.NoError(t, err)
}

func TestMissingCredentialFields(t *testing.T) {
	t.Parallel()
	tests := []struct {
		mode healthsync.Mode
		cred vendors.Credential
		want string
	}{
		{healthsync.ModeAPIKey, vendors.Credential{ID: "x"}, "no api_key"},
		{healthsync.ModeOAuth, vendors.Credential{ID: "x", ClientID: clientID, ClientSecret: secret.New(clientSecret)}, "no refresh token"},
		{healthsync.ModeOAuth, vendors.Credential{ID: "x", RefreshToken: secret.New("rt")}, "no client_id"},
		{healthsync.ModeServiceAccount, vendors.Credential{ID: "x", ClientID: clientID}, "no client_secret"},
		{healthsync.ModeServiceAccount, vendors.Credential{ID: "x"}, "no client_id"},
	}
	for _, tt := range tests {
		t.Run(string(tt.mode)+" "+tt.want, func(t *testing.T) {
			t.Parallel()
			b := setup(t, tt.mode, nil)
			_, err := b.adapter.Token(t.Context(), tt.cred)
			ve := vendortest.RequireError(t, err, vendortest.Want{Vendor: "healthsync", Op: opOf(tt.mode), Class: vendors.ClassRejected})
			require.Contains(t, ve.Error(), tt.want)
			require.Zero(t, b.sent.calls(), "nothing to send")
		})
	}
}

func opOf(m healthsync.Mode) string {
	if m == healthsync.ModeAPIKey {
		return "verify key"
	}
	return "request token"
}

func TestNew(t *testing.T) {
	t.Parallel()
	vendortest.RunNew(t, []vendortest.NewCase[healthsync.Options]{
		{Name: "defaults", Opts: healthsync.Options{}},
		{Name: "sandbox", Opts: healthsync.Options{BaseURL: healthsync.BaseURLSandbox}},
		{Name: "no trailing slash", Opts: healthsync.Options{BaseURL: "https://api.healthsync.com/v1"}},
		{Name: "every mode", Opts: healthsync.Options{Mode: healthsync.ModeServiceAccount, Scopes: []string{"read"}}},
		{Name: "token url elsewhere", Opts: healthsync.Options{Mode: healthsync.ModeOAuth, TokenURL: "https://auth.healthsync.com/token"}},
		{Name: "custom paths", Opts: healthsync.Options{KeyPaths: healthsync.KeyPaths{Create: "admin/keys",
			Revoke: "admin/keys/{id}/revoke", Verify: "/me"}}},
		{Name: "unknown mode", Opts: healthsync.Options{Mode: "password"}, WantErr: `unknown mode "password"`},
		{Name: "relative base", Opts: healthsync.Options{BaseURL: "/v1/"}, WantErr: "base_url"},
		{Name: "ftp base", Opts: healthsync.Options{BaseURL: "ftp://x/v1/"}, WantErr: "base_url"},
		{Name: "base with query", Opts: healthsync.Options{BaseURL: "https://x/v1/?a=b"}, WantErr: "base_url"},
		{Name: "bad token url", Opts: healthsync.Options{TokenURL: "oauth/token"}, WantErr: "token_url"},
		{Name: "revoke without id", Opts: healthsync.Options{KeyPaths: healthsync.KeyPaths{Revoke: "keys/revoke"}},
			WantErr: `key_paths.revoke "keys/revoke" must hold "{id}"`},
		{Name: "path elsewhere", Opts: healthsync.Options{KeyPaths: healthsync.KeyPaths{List: "https://evil.example/keys"}},
			WantErr: "key_paths.list"},
		{Name: "path above the base", Opts: healthsync.Options{KeyPaths: healthsync.KeyPaths{Verify: "../v2/records"}},
			WantErr: "key_paths.verify"},
		{Name: "protocol-relative path", Opts: healthsync.Options{KeyPaths: healthsync.KeyPaths{Create: "//evil.example/keys"}},
			WantErr: "key_paths.create"},
		{Name: "user agent with a newline", Opts: healthsync.Options{UserAgent: "a\r\nX: y"}, WantErr: "user_agent"},
	}, func(o healthsync.Options) error { _, err := healthsync.New(o); return err })
}

func TestModeDefault(t *testing.T) {
	t.Parallel()
	a, err := healthsync.New(healthsync.Options{})
	require.NoError(t, err)
	require.Equal(t, healthsync.ModeAPIKey, a.Mode())
}
