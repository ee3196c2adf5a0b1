package websession

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/secret"
)

// Without an admin token the MAC key is public, so a session signed with
// it must still be refused.
func TestAnEmptyTokenAcceptsNoSession(t *testing.T) {
	t.Parallel()
	s := New(secret.Value{}, Options{})
	r := httptest.NewRequest(http.MethodGet, "/ui/credentials", nil)
	value, id := s.newSession()
	require.NoError(t, s.store.Add(t.Context(), id, time.Hour))
	r.AddCookie(&http.Cookie{Name: CookieName, Value: value})
	require.False(t, s.SignedIn(r))
	require.Empty(t, s.CSRFToken(r))
}
