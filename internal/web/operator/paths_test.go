package operator_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestEncodedIDsAreRefused: a credential id that decodes to a path, a NUL
// or anything but an id is refused 400 on every page and action that
// takes one; no action is taken on it.
func TestEncodedIDsAreRefused(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	c := b.browser(t)
	for _, id := range []string{"a%2Fb", "..%2F..%2Fx", "%2e%2e", "a%00b", "a%20b", "a%0D%0Ab"} {
		for _, route := range []struct{ method, path string }{
			{"GET", "/ui/credentials/" + id}, {"GET", "/ui/credentials/" + id + "/revoke"},
			{"POST", "/ui/credentials/" + id + "/revoke"}, {"POST", "/ui/credentials/" + id + "/retry"},
		} {
			req, err := http.NewRequest(route.method, b.srv.URL+route.path, nil)
			require.NoError(t, err)
			req.Header.Set("Authorization", "Bearer "+adminToken)
			resp, err := c.Do(req)
			require.NoError(t, err)
			_ = resp.Body.Close()
			require.Equal(t, http.StatusBadRequest, resp.StatusCode, "%s %s", route.method, route.path)
		}
	}
	b.calls.mu.Lock()
	defer b.calls.mu.Unlock()
	require.Empty(t, b.calls.got, "an action was taken on an id that is not one")
}
