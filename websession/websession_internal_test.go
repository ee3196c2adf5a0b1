package websession

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/secret"
)

// Without an admin token the MAC key is public, so a session signed with
// it must still be refused.
func TestAnEmptyTokenAcceptsNoSession(t *testing.T) {
	t.Parallel()
	s := New(secret.Value{}, 0, nil)
	r := httptest.NewRequest(http.MethodGet, "/ui/credentials", nil)
	r.AddCookie(&http.Cookie{Name: CookieName, Value: s.newSession()})
	require.False(t, s.SignedIn(r))
	require.Empty(t, s.CSRFToken(r))
}
