package fhirportal_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/internal/testenv"
	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/vendors"
	"github.com/tokenrelay/tokenrelay/vendors/fhirportal"
	"github.com/tokenrelay/tokenrelay/vendors/internal/vendortest"
	"github.com/tokenrelay/tokenrelay/vendors/sandbox"
)

const (
	clientID = "05spYguywASY5dg5ShoV3KI3sLakwCru"
	// clientSecret is distinctive, so that a leak into an error shows.
	clientSecret = "fp-SECRET-TYRGIFghPiryNjpY"
	userAgent    = "tokenrelay-test/1"
	opDiscover   = "discover token endpoint"
	opToken      = "request token"
)

var cred = vendors.Credential{ID: "patient-42", ClientID: clientID, ClientSecret: secret.New(clientSecret)}

type bundle struct {
	sb      vendortest.Sandbox
	adapter *fhirportal.Adapter
	// base is the portal's FHIR base URL.
	base string
}

// setup starts a sandbox with cred registered and an adapter of its portal;
// edit changes the adapter's options.
func setup(t *testing.T, edit func(*fhirportal.Options)) bundle {
	t.Helper()
	sb := vendortest.StartSandbox(t, sandbox.Options{}, cred)
	base := sb.URL + sandbox.FHIRPortalPath
	a := vendortest.NewAdapter(t, fhirportal.New, fhirportal.Options{BaseURL: base, UserAgent: userAgent, Clock: sb.Clock.Now}, edit)
	return bundle{sb: sb, adapter: a, base: base}
}

// get GETs the portal's Patient with tok and returns the status.
func (b bundle) get(t *testing.T, tok secret.Value) int {
	t.Helper()
	return vendortest.Bearer(t, http.MethodGet, b.base+"Patient", tok.Reveal(), nil).StatusCode
}

func TestTokenDiscovered(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	require.Empty(t, b.adapter.TokenURL(), "New sends nothing")
	require.Zero(t, b.sb.FHIRPortalDiscoveryCalls())

	tok, err := b.adapter.Token(t.Context(), cred)
	require.NoError(t, err)
	require.Equal(t, b.base+"token", b.adapter.TokenURL())
	require.Equal(t, []string{tok.AccessToken.Reveal()}, b.sb.IssuedTokens(clientID))
	require.Equal(t, "Bearer", tok.TokenType)
	require.Equal(t, 300*time.Second, tok.ClaimedLifetime, "SMART: at most 300 s")
	require.Equal(t, vendortest.T0, tok.IssuedAt)
	require.True(t, tok.RefreshToken.IsZero())
	require.Equal(t, http.StatusOK, b.get(t, tok.AccessToken))

	// The discovery is kept; every Token is one token call.
	for i := 2; i <= 5; i++ {
		_, err := b.adapter.Token(t.Context(), cred)
		require.NoError(t, err)
		require.Equal(t, i, b.sb.TokenCalls(clientID))
		require.Equal(t, i, b.sb.TotalTokenCalls())
	}
	require.Equal(t, 1, b.sb.FHIRPortalDiscoveryCalls())
}

func TestConfiguredTokenURLSkipsDiscovery(t *testing.T) {
	t.Parallel()
	var tokenURL string
	b := setup(t, func(o *fhirportal.Options) {
		tokenURL = o.BaseURL + "token"
		o.TokenURL = tokenURL
	})
	require.Equal(t, tokenURL, b.adapter.TokenURL())
	tok, err := b.adapter.Token(t.Context(), cred)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, b.get(t, tok.AccessToken))
	require.Zero(t, b.sb.FHIRPortalDiscoveryCalls())
	require.Equal(t, 1, b.sb.TotalTokenCalls())
}

// TestAuthMethod: the adapter authenticates the way the server advertises;
// the sandbox refuses any other way with invalid_client, which would read
// as a revocation.
func TestAuthMethod(t *testing.T) {
	t.Parallel()
	for _, methods := range [][]string{nil, {"client_secret_basic"}, {"client_secret_post"}} {
		t.Run(fmt.Sprint(methods), func(t *testing.T) {
			t.Parallel()
			b := setup(t, nil)
			require.NoError(t, b.sb.SetFHIRPortalAuthMethods(methods...))
			_, err := b.adapter.Token(t.Context(), cred)
			require.NoError(t, err)
		})
	}
}

// TestDiscoveryFailureIsRetried: a failed discovery is transient, is not
// kept, and no token call is made.
func TestDiscoveryFailureIsRetried(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	require.NoError(t, b.sb.Inject(sandbox.Fault{Endpoint: sandbox.EndpointAll, Kind: sandbox.FaultServerError,
		Status: 503, RetryAfter: 30 * time.Second, Times: 1}))
	_, err := b.adapter.Token(t.Context(), cred)
	t.Log(err)
	vendortest.RequireError(t, err, vendortest.Want{Vendor: fhirportal.Kind, Op: opDiscover,
		Class: vendors.ClassServer, Status: 503, RetryAfter: 30 * time.Second})
	require.Zero(t, b.sb.TotalTokenCalls(), "no token call without a token endpoint")
	require.Empty(t, b.adapter.TokenURL())

	_, err = b.adapter.Token(t.Context(), cred)
	require.NoError(t, err)
	require.Equal(t, 2, b.sb.FHIRPortalDiscoveryCalls())
	require.Equal(t, 1, b.sb.TotalTokenCalls())
}

// TestDiscoveryFaults: every sandbox fault on the discovery endpoint is
// classified, never as a revocation, and the next call discovers again.
func TestDiscoveryFaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		fault sandbox.Fault
		// timeout is the first call's deadline, 0 for none.
		timeout    time.Duration
		class      string
		status     int
		retryAfter time.Duration
	}{
		{"server error", sandbox.Fault{Kind: sandbox.FaultServerError}, 0, vendors.ClassServer, 500, 0},
		{"rate limited", sandbox.Fault{Kind: sandbox.FaultRateLimited, RetryAfter: 7 * time.Second}, 0,
			vendors.ClassRateLimited, 429, 7 * time.Second},
		{"malformed", sandbox.Fault{Kind: sandbox.FaultMalformed}, 0, vendors.ClassMalformed, 200, 0},
		{"reset", sandbox.Fault{Kind: sandbox.FaultReset}, 0, vendors.ClassNetwork, 0, 0},
		{"latency", sandbox.Fault{Kind: sandbox.FaultLatency, Latency: time.Hour}, time.Second,
			vendors.ClassTimeout, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, nil)
			f := tt.fault
			f.Endpoint, f.Times = sandbox.EndpointAll, 1
			require.NoError(t, b.sb.Inject(f))
			ctx := t.Context()
			if tt.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.timeout)
				defer cancel()
			}
			_, err := b.adapter.Token(ctx, cred)
			t.Log(err)
			vendortest.RequireError(t, err, vendortest.Want{Vendor: fhirportal.Kind, Op: opDiscover,
				Class: tt.class, Status: tt.status, RetryAfter: tt.retryAfter})
			vendortest.RequireNoSecret(t, err, clientSecret)
			require.Zero(t, b.sb.TotalTokenCalls())

			// A request given up early may not have reached the sandbox and
			// used its fault up.
			b.sb.ClearFaults()
			before := b.sb.FHIRPortalDiscoveryCalls()
			_, err = b.adapter.Token(t.Context(), cred)
			require.NoError(t, err)
			require.Equal(t, before+1, b.sb.FHIRPortalDiscoveryCalls(), "discovered again")
			require.Equal(t, 1, b.sb.TotalTokenCalls())
		})
	}
}

// TestDiscoveryAnswers covers SMART configurations the sandbox does not
// give, from a fake server. None of them leads to a token call.
func TestDiscoveryAnswers(t *testing.T) {
	t.Parallel()
	// elsewhere stands for another host: a secret must never reach it.
	elsewhere := vendortest.ServeAnswer(t, vendortest.Answer{Status: 200, Body: `{"access_token":"stolen"}`})
	tests := []struct {
		name     string
		status   int
		header   map[string]string
		body     string
		class    string
		contains string
	}{
		{"404", 404, nil, "<html>Not Found</html>", vendors.ClassRejected, "Not Found"},
		{"401 is no revocation", 401, nil, `{"error":"invalid_client"}`, vendors.ClassRejected, "invalid_client"},
		{"redirect", 302, map[string]string{"Location": "http://elsewhere.example/.well-known/smart-configuration"}, ``,
			vendors.ClassRejected, "does not follow redirects"},
		{"not json", 200, nil, `<html>portal</html>`, vendors.ClassMalformed, "not a JSON object"},
		{"no token_endpoint", 200, nil, `{"authorization_endpoint":"https://auth.example/authorize"}`,
			vendors.ClassMalformed, "no token_endpoint"},
		{"relative token_endpoint", 200, nil, `{"token_endpoint":"/token"}`, vendors.ClassMalformed, "not an absolute http(s) URL"},
		{"ftp token_endpoint", 200, nil, `{"token_endpoint":"ftp://auth.example/token"}`, vendors.ClassMalformed, "not an absolute http(s) URL"},
		{"user info in token_endpoint", 200, nil, `{"token_endpoint":"https://u:p@auth.example/token"}`,
			vendors.ClassMalformed, "not an absolute http(s) URL"},
		{"another host over http", 200, nil, `{"token_endpoint":"` + elsewhere.URL + `/token"}`,
			vendors.ClassRejected, "neither https nor on the FHIR server's origin"},
		{"too large", 200, nil, `{"token_endpoint":"https://auth.example/token","pad":"` + strings.Repeat("x", 1<<20) + `"}`,
			vendors.ClassMalformed, "larger than"},
		{"no usable auth method", 200, nil,
			`{"token_endpoint":"https://auth.example/token","token_endpoint_auth_methods_supported":["private_key_jwt"]}`,
			vendors.ClassRejected, "accepts none of client_secret_basic, client_secret_post"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := vendortest.ServeAnswer(t, vendortest.Answer{Status: tt.status, ContentType: "application/json",
				Header: tt.header, Body: tt.body})
			clock := testenv.NewClock(vendortest.T0)
			a, err := fhirportal.New(fhirportal.Options{BaseURL: srv.URL + "/r4", UserAgent: userAgent, Clock: clock.Now})
			require.NoError(t, err)
			_, err = a.Token(t.Context(), cred)
			t.Log(err)
			vendortest.RequireError(t, err, vendortest.Want{Vendor: fhirportal.Kind, Op: opDiscover,
				Class: tt.class, Status: tt.status})
			require.Contains(t, err.Error(), tt.contains)
			vendortest.RequireNoSecret(t, err, clientSecret)
			require.EqualValues(t, 1, srv.Calls(), "one discovery request, no token request")
			require.Equal(t, userAgent, srv.UserAgent())
			require.Empty(t, a.TokenURL())
		})
	}
	require.Zero(t, elsewhere.Calls())
}

// TestDiscoveredHTTPSElsewhere: a token endpoint on another host is fine
// over https.
func TestDiscoveredHTTPSElsewhere(t *testing.T) {
	t.Parallel()
	sb := sandbox.New(sandbox.Options{})
	sb.AddClient(clientID, clientSecret)
	auth := httptest.NewTLSServer(sb.Handler())
	t.Cleanup(auth.Close)
	fhir := vendortest.ServeAnswer(t, vendortest.Answer{Status: 200, ContentType: "application/json",
		Body: `{"token_endpoint":"` + auth.URL + sandbox.FHIRPortalPath + `token"}`})

	a, err := fhirportal.New(fhirportal.Options{BaseURL: fhir.URL + "/r4/", HTTPClient: auth.Client()})
	require.NoError(t, err)
	tok, err := a.Token(t.Context(), cred)
	require.NoError(t, err)
	require.Equal(t, []string{tok.AccessToken.Reveal()}, sb.IssuedTokens(clientID))
	require.Equal(t, auth.URL+sandbox.FHIRPortalPath+"token", a.TokenURL())
}

// TestPatientDeletesKey: the next token request is a definitive
// revocation, every time it is asked.
func TestPatientDeletesKey(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	tok, err := b.adapter.Token(t.Context(), cred)
	require.NoError(t, err)

	b.sb.DeleteClient(clientID)
	for i := 2; i <= 3; i++ {
		_, err = b.adapter.Token(t.Context(), cred)
		t.Log(err)
		vendortest.RequireError(t, err, vendortest.Want{Vendor: fhirportal.Kind, Op: opToken,
			Class: vendors.ClassRevoked, Status: http.StatusUnauthorized})
		require.ErrorIs(t, err, vendors.ErrRevoked)
		vendortest.RequireNoSecret(t, err, clientSecret, tok.AccessToken.Reveal())
		require.Equal(t, i, b.sb.TokenCalls(clientID), "one token call per Token")
	}
	require.Equal(t, http.StatusUnauthorized, b.get(t, tok.AccessToken), "sharing stopped at once")
	require.Equal(t, 1, b.sb.RevokedUses())
	require.Equal(t, 1, b.sb.FHIRPortalDiscoveryCalls())
}

// TestTokenFailures: the token call's failures, with the token endpoint
// configured and discovered (the discovery then succeeds and is no token
// call). With discovery, the cases of a 50 ms deadline are left out: the
// deadline would cover the discovery too, and a loaded test machine could
// spend it there; the token call they test is the same either way.
func TestTokenFailures(t *testing.T) {
	t.Parallel()
	for _, discovered := range []bool{true, false} {
		t.Run(fmt.Sprintf("discovered=%v", discovered), func(t *testing.T) {
			t.Parallel()
			cases := vendortest.TokenFailures()
			if discovered {
				cases = slices.DeleteFunc(cases, func(c vendortest.TokenCase) bool {
					return c.ClientTimeout > 0 || c.ContextTimeout > 0
				})
			}
			vendortest.RunTokenFailures(t, cases, func(t *testing.T, timeout time.Duration) vendortest.Env {
				b := setup(t, func(o *fhirportal.Options) {
					if !discovered {
						o.TokenURL = o.BaseURL + "token"
					}
					if timeout > 0 {
						o.HTTPClient = &http.Client{Timeout: timeout}
					}
				})
				return vendortest.Env{Sandbox: b.sb.Sandbox, Source: b.adapter, Cred: cred, Vendor: fhirportal.Kind}
			})
		})
	}
}

// TestManyPatients: a thousand patients' keys on one FHIR server, each its
// own client, all asking at once through one adapter: one discovery, one
// token call each.
func TestManyPatients(t *testing.T) {
	t.Parallel()
	const patients = 1000
	transport := &http.Transport{MaxConnsPerHost: 64, MaxIdleConnsPerHost: 64}
	t.Cleanup(transport.CloseIdleConnections)
	b := setup(t, func(o *fhirportal.Options) {
		o.HTTPClient = &http.Client{Timeout: 30 * time.Second, Transport: transport}
		o.VendorName = "portal"
	})
	creds := make([]vendors.Credential, patients)
	for i := range creds {
		creds[i] = vendors.Credential{ID: fmt.Sprintf("patient-%d", i), ClientID: fmt.Sprintf("key-%04d", i),
			ClientSecret: secret.New(fmt.Sprintf("secret-%04d", i))}
		b.sb.AddClient(creds[i].ClientID, creds[i].ClientSecret.Reveal())
	}

	tokens := make([]vendors.Token, patients)
	errs := make([]error, patients)
	var wg sync.WaitGroup
	for i := range creds {
		wg.Go(func() { tokens[i], errs[i] = b.adapter.Token(t.Context(), creds[i]) })
	}
	wg.Wait()

	seen := make(map[string]bool, patients)
	for i, c := range creds {
		require.NoError(t, errs[i], c.ClientID)
		require.Equal(t, []string{tokens[i].AccessToken.Reveal()}, b.sb.IssuedTokens(c.ClientID))
		require.Equal(t, 1, b.sb.TokenCalls(c.ClientID))
		seen[tokens[i].AccessToken.Reveal()] = true
	}
	require.Len(t, seen, patients)
	require.Equal(t, patients, b.sb.TotalTokenCalls())
	require.Equal(t, 1, b.sb.FHIRPortalDiscoveryCalls(), "concurrent first calls share one discovery")
}

// TestAbandonedDiscovery: a discovery given up by its caller (its context
// ended) fails that caller only; a call with time left discovers again.
func TestAbandonedDiscovery(t *testing.T) {
	t.Parallel()
	sb := vendortest.StartSandbox(t, sandbox.Options{}, cred)
	arrived := make(chan struct{})
	var first atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, fhirportal.DiscoveryPath) && first.CompareAndSwap(false, true) {
			close(arrived)
			<-r.Context().Done() // hangs until the client gives up
			return
		}
		sb.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	a, err := fhirportal.New(fhirportal.Options{BaseURL: srv.URL + sandbox.FHIRPortalPath})
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(t.Context())
	errA := make(chan error, 1)
	go func() { _, err := a.Token(ctx, cred); errA <- err }()
	<-arrived
	errB := make(chan error, 1)
	go func() { _, err := a.Token(t.Context(), cred); errB <- err }()
	cancel()

	err = <-errA
	t.Log(err)
	vendortest.RequireError(t, err, vendortest.Want{Vendor: fhirportal.Kind, Op: opDiscover, Class: vendors.ClassNetwork})
	require.ErrorIs(t, err, context.Canceled)
	require.NoError(t, <-errB)
	require.Equal(t, 1, sb.FHIRPortalDiscoveryCalls())
	require.Equal(t, 1, sb.TotalTokenCalls())
}

func TestNew(t *testing.T) {
	t.Parallel()
	const base = "https://fhir.portal.example/r4"
	vendortest.RunNew(t, []vendortest.NewCase[fhirportal.Options]{
		{Name: "minimal", Opts: fhirportal.Options{BaseURL: base}},
		{Name: "with token url", Opts: fhirportal.Options{BaseURL: base, TokenURL: "https://auth.portal.example/token"}},
		{Name: "no base url", Opts: fhirportal.Options{}, WantErr: "base_url is required"},
		{Name: "relative base url", Opts: fhirportal.Options{BaseURL: "/r4"}, WantErr: "not an http(s) URL"},
		{Name: "base url with query", Opts: fhirportal.Options{BaseURL: base + "?x=1"}, WantErr: "must not have a query"},
		{Name: "relative token url", Opts: fhirportal.Options{BaseURL: base, TokenURL: "/token"}, WantErr: "not an http(s) URL"},
		{Name: "two-line user agent", Opts: fhirportal.Options{BaseURL: base, UserAgent: "a\r\nb"}, WantErr: "one line"},
	}, func(o fhirportal.Options) error { _, err := fhirportal.New(o); return err })
}
