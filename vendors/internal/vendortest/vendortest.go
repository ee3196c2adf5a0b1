// Package vendortest holds what the tests of every vendor adapter share: the
// token failures the sandbox can cause, the checks of a classified error, a
// fake token endpoint for answers the sandbox does not give, a request with
// a token, the making of an adapter and the table run of its New.
package vendortest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/internal/testenv"
	"github.com/tokenrelay/tokenrelay/vendors"
	"github.com/tokenrelay/tokenrelay/vendors/sandbox"
)

// T0 is when the tests' manual clocks start.
var T0 = time.Date(2025, 3, 4, 10, 0, 0, 0, time.UTC)

// Sandbox is a sandbox on a test server, on a manual clock.
type Sandbox struct {
	*sandbox.Sandbox
	// URL is the test server's URL.
	URL   string
	Clock *testenv.Clock
}

// StartSandbox starts a sandbox (opts, with a manual clock at T0) on a test
// server closed at the end of the test, with cred's client registered.
func StartSandbox(t testing.TB, opts sandbox.Options, cred vendors.Credential) Sandbox {
	t.Helper()
	clock := testenv.NewClock(T0)
	opts.Clock = clock.Now
	sb := sandbox.New(opts)
	sb.AddClient(cred.ClientID, cred.ClientSecret.Reveal())
	srv := httptest.NewServer(sb.Handler())
	t.Cleanup(srv.Close)
	return Sandbox{Sandbox: sb, URL: srv.URL, Clock: clock}
}

// Want is what a failed vendor call must report.
type Want struct {
	Vendor     string
	Op         string
	Class      string
	Status     int
	RetryAfter time.Duration
}

// RequireError checks that err is a *vendors.Error as want says, and that
// vendors.Classify, IsRevoked and RetryAfter read it the same way.
func RequireError(t testing.TB, err error, want Want) *vendors.Error {
	t.Helper()
	var ve *vendors.Error
	require.ErrorAs(t, err, &ve)
	got := Want{Vendor: ve.Vendor, Op: ve.Op, Class: ve.Class, Status: ve.Status, RetryAfter: ve.RetryAfter}
	require.Equal(t, want, got, "%v", err)
	require.Equal(t, want.Class, vendors.Classify(err))
	require.Equal(t, want.Class == vendors.ClassRevoked, vendors.IsRevoked(err))
	require.Equal(t, want.RetryAfter, vendors.RetryAfter(err))
	return ve
}

// RequireNoSecret checks that no rendering of err holds any of secrets.
// The pointers %#v prints ("(*fmt.wrapError)(0xc0000babc0)") are left out:
// an address is no secret, and one held "abc" once.
func RequireNoSecret(t testing.TB, err error, secrets ...string) {
	t.Helper()
	goSyntax := pointerAddress.ReplaceAllString(fmt.Sprintf("%#v", err), ")(0x…)")
	for _, s := range secrets {
		for _, text := range []string{err.Error(), fmt.Sprintf("%v", err), fmt.Sprintf("%+v", err), goSyntax} {
			require.NotContains(t, text, s)
		}
	}
}

// pointerAddress is a pointer as %#v prints it after its type.
var pointerAddress = regexp.MustCompile(`\)\(0x[0-9a-f]+\)`)

// TokenCase is a way the sandbox makes a token request fail, and what the
// adapter must report.
type TokenCase struct {
	Name string
	// Prepare sets the sandbox up; the credential's client is registered.
	Prepare func(t testing.TB, sb *sandbox.Sandbox, clientID string)
	// ClientTimeout is the HTTP client timeout the case needs, 0 for the
	// adapter's default client.
	ClientTimeout time.Duration
	// ContextTimeout, when set, is the deadline of the Token call's context.
	ContextTimeout time.Duration
	Class          string
	Status         int
	RetryAfter     time.Duration
}

func inject(f sandbox.Fault) func(testing.TB, *sandbox.Sandbox, string) {
	return func(t testing.TB, sb *sandbox.Sandbox, _ string) { require.NoError(t, sb.Inject(f)) }
}

// TokenFailures are the failures every adapter of a token endpoint the
// sandbox emulates must classify.
func TokenFailures() []TokenCase {
	return []TokenCase{
		{Name: "deleted client", Prepare: func(_ testing.TB, sb *sandbox.Sandbox, id string) { sb.DeleteClient(id) },
			Class: vendors.ClassRevoked, Status: 401},
		{Name: "secret changed", Prepare: func(_ testing.TB, sb *sandbox.Sandbox, id string) { sb.AddClient(id, "rotated") },
			Class: vendors.ClassRevoked, Status: 401},
		// The deadlines leave the request a whole second to reach the
		// sandbox, so that a loaded CI machine does not time out earlier.
		{Name: "latency", Prepare: inject(sandbox.Fault{Kind: sandbox.FaultLatency, Latency: time.Hour}),
			ClientTimeout: time.Second, Class: vendors.ClassTimeout},
		{Name: "context deadline", Prepare: inject(sandbox.Fault{Kind: sandbox.FaultLatency, Latency: time.Hour}),
			ContextTimeout: time.Second, Class: vendors.ClassTimeout},
		{Name: "server error", Prepare: inject(sandbox.Fault{Kind: sandbox.FaultServerError, Status: 503, RetryAfter: 30 * time.Second}),
			Class: vendors.ClassServer, Status: 503, RetryAfter: 30 * time.Second},
		{Name: "server error without retry-after", Prepare: inject(sandbox.Fault{Kind: sandbox.FaultServerError}),
			Class: vendors.ClassServer, Status: 500},
		{Name: "malformed", Prepare: inject(sandbox.Fault{Kind: sandbox.FaultMalformed}),
			Class: vendors.ClassMalformed, Status: 200},
		{Name: "reset", Prepare: inject(sandbox.Fault{Kind: sandbox.FaultReset}),
			Class: vendors.ClassNetwork},
		{Name: "rate limited", Prepare: inject(sandbox.Fault{Kind: sandbox.FaultRateLimited, RetryAfter: 7 * time.Second}),
			Class: vendors.ClassRateLimited, Status: 429, RetryAfter: 7 * time.Second},
	}
}

// Env is an adapter under test, talking to a sandbox.
type Env struct {
	Sandbox *sandbox.Sandbox
	Source  vendors.TokenSource
	Cred    vendors.Credential
	// Vendor is the vendors.Error.Vendor the adapter reports.
	Vendor string
}

// RunTokenFailures runs each case, in parallel, against a fresh Env from
// setup (given the case's client timeout) and checks the error: its
// classification, exactly one token call, no secret in its message.
func RunTokenFailures(t *testing.T, cases []TokenCase, setup func(t *testing.T, clientTimeout time.Duration) Env) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			t.Parallel()
			env := setup(t, tc.ClientTimeout)
			tc.Prepare(t, env.Sandbox, env.Cred.ClientID)
			ctx := t.Context()
			if tc.ContextTimeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.ContextTimeout)
				defer cancel()
			}
			_, err := env.Source.Token(ctx, env.Cred)
			require.Error(t, err)
			t.Log(err)
			RequireError(t, err, Want{Vendor: env.Vendor, Op: "request token", Class: tc.Class,
				Status: tc.Status, RetryAfter: tc.RetryAfter})
			require.Equal(t, 1, env.Sandbox.TokenCalls(env.Cred.ClientID), "exactly one token call, even on failure")
			require.Equal(t, 1, env.Sandbox.TotalTokenCalls())
			RequireNoSecret(t, err, env.Cred.ClientSecret.Reveal())
		})
	}
}

// Answer is what a fake token endpoint answers every request with.
type Answer struct {
	Status int
	// ContentType, when set, is the Content-Type header; else the server
	// sniffs the body.
	ContentType string
	Header      map[string]string
	Body        string
}

// Endpoint is a fake token endpoint on a test server.
type Endpoint struct {
	// URL is the test server's URL.
	URL   string
	calls atomic.Int32
	mu    sync.Mutex
	ua    string
}

// ServeAnswer starts a fake token endpoint, closed at the end of the test,
// that gives every request answer.
func ServeAnswer(t testing.TB, answer Answer) *Endpoint {
	t.Helper()
	e := &Endpoint{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.calls.Add(1)
		e.mu.Lock()
		e.ua = r.UserAgent()
		e.mu.Unlock()
		for k, v := range answer.Header {
			w.Header().Set(k, v)
		}
		if answer.ContentType != "" {
			w.Header().Set("Content-Type", answer.ContentType)
		}
		w.WriteHeader(answer.Status)
		_, _ = io.WriteString(w, answer.Body)
	}))
	t.Cleanup(srv.Close)
	e.URL = srv.URL
	return e
}

// Calls is how many requests the endpoint has had.
func (e *Endpoint) Calls() int32 { return e.calls.Load() }

// UserAgent is the User-Agent of the last request.
func (e *Endpoint) UserAgent() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.ua
}

// Bearer sends method url with token as its bearer, as an application using
// the token would, and body (when not nil) as JSON; it returns the answer,
// whose body is closed at the end of the test.
func Bearer(t testing.TB, method, url, token string, body io.Reader) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, body)
	require.NoError(t, err)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// NewAdapter makes an adapter under test: opts changed by edit (when not
// nil), then newAdapter (the adapter's New), which must succeed.
func NewAdapter[O, A any](t testing.TB, newAdapter func(O) (A, error), opts O, edit func(*O)) A {
	t.Helper()
	if edit != nil {
		edit(&opts)
	}
	a, err := newAdapter(opts)
	require.NoError(t, err)
	return a
}

// NewCase is a set of an adapter's options and what its New must say of
// them: "" for no error, else a part of the error.
type NewCase[O any] struct {
	Name    string
	Opts    O
	WantErr string
}

// RunNew runs each case, in parallel, through newAdapter (the adapter's New)
// and checks its error.
func RunNew[O any](t *testing.T, cases []NewCase[O], newAdapter func(O) error) {
	t.Helper()
	for _, tt := range cases {
		t.Run(tt.Name, func(t *testing.T) {
			t.Parallel()
			err := newAdapter(tt.Opts)
			if tt.WantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.WantErr)
		})
	}
}
