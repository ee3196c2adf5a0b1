package fhirportal

import (
	"context"
	"net/http"
	"net/url"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2"

	"github.com/tokenrelay/tokenrelay/vendors"
)

func TestOrigin(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"https://FHIR.Portal.example/r4/", "https://fhir.portal.example:443"},
		{"https://fhir.portal.example:443/token", "https://fhir.portal.example:443"},
		{"http://fhir.portal.example/r4/", "http://fhir.portal.example:80"},
		{"http://127.0.0.1:8090/fhir-portal/", "http://127.0.0.1:8090"},
		{"http://[::1]:8090/fhir-portal/", "http://[::1]:8090"},
		{"https://[::1]/", "https://[::1]:443"},
	}
	for _, tt := range tests {
		u, err := url.Parse(tt.in)
		require.NoError(t, err)
		require.Equal(t, tt.want, origin(u), tt.in)
	}
}

func TestAuthStyle(t *testing.T) {
	t.Parallel()
	tests := []struct {
		methods []string
		want    oauth2.AuthStyle
		ok      bool
	}{
		{nil, oauth2.AuthStyleInHeader, true},
		{[]string{"client_secret_post", "client_secret_basic"}, oauth2.AuthStyleInHeader, true},
		{[]string{"private_key_jwt", "client_secret_post"}, oauth2.AuthStyleInParams, true},
		{[]string{"private_key_jwt"}, 0, false},
	}
	for _, tt := range tests {
		got, ok := authStyle(tt.methods)
		require.Equal(t, tt.ok, ok, tt.methods)
		require.Equal(t, tt.want, got, tt.methods)
	}
}

// pendingAdapter is an adapter whose discovery is in flight, led by
// another call: the returned attempt, which the test ends.
func pendingAdapter(t *testing.T, baseURL string) (*Adapter, *attempt) {
	t.Helper()
	a, err := New(Options{BaseURL: baseURL})
	require.NoError(t, err)
	at := &attempt{done: make(chan struct{})}
	a.pending = at
	return a, at
}

// TestWaiterSharesFailure: a call arriving during a discovery that fails
// gets that failure, without a discovery of its own.
func TestWaiterSharesFailure(t *testing.T) {
	t.Parallel()
	a, at := pendingAdapter(t, "http://127.0.0.1:1/r4/")
	fail := &vendors.Error{Vendor: Kind, Op: opDiscover, Class: vendors.ClassServer, Status: http.StatusBadGateway}
	at.err = fail
	close(at.done)
	_, err := a.Token(t.Context(), vendors.Credential{ClientID: "k"})
	require.Same(t, fail, err)
}

// TestWaiterGivesUp: a call waiting for another's discovery stops when its
// own context ends.
func TestWaiterGivesUp(t *testing.T) {
	t.Parallel()
	a, _ := pendingAdapter(t, "http://127.0.0.1:1/r4/")
	ctx, cancel := context.WithTimeout(t.Context(), 0)
	defer cancel()
	_, err := a.Token(ctx, vendors.Credential{ClientID: "k"})
	var ve *vendors.Error
	require.ErrorAs(t, err, &ve)
	require.Equal(t, opDiscover, ve.Op)
	require.Equal(t, vendors.ClassTimeout, ve.Class)
	require.ErrorIs(t, err, context.DeadlineExceeded)
}
