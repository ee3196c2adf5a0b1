package admin

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
	"github.com/tokenrelay/tokenrelay/internal/testenv/storetest"
	"github.com/tokenrelay/tokenrelay/internal/web/websession"
	"github.com/tokenrelay/tokenrelay/secret"
)

// spyStore records the ids the admin API looks up; it holds nothing.
type spyStore struct {
	Store
	mu  sync.Mutex
	ids []string
}

func (s *spyStore) seen(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ids = append(s.ids, id)
}

func (s *spyStore) Get(_ context.Context, id string) (store.Credential, error) {
	s.seen(id)
	return store.Credential{}, store.ErrNotFound
}

func (s *spyStore) Revoke(_ context.Context, id string, _ int64, _, _ string, _ events.Envelope) error {
	s.seen(id)
	return store.ErrNotFound
}

func (s *spyStore) Enable(_ context.Context, id, _ string, _ *store.Keys) error {
	s.seen(id)
	return store.ErrNotFound
}

// TestEncodedIDsAreRefused: ids that decode to a path ("a%2Fb", "..%2F"),
// a NUL, a space or anything but an id are refused 400 on every route
// that takes one, before the store is asked; a plain id reaches it.
func TestEncodedIDsAreRefused(t *testing.T) {
	t.Parallel()
	st := &spyStore{}
	srv := httptest.NewServer(Handler(Deps{Config: &config.Config{}, Store: st, Token: secret.New(adminToken),
		RotateNow: func(context.Context, store.Credential) error { return nil }}))
	t.Cleanup(srv.Close)
	for _, id := range []string{"a%2Fb", "..%2F..%2Fx", "%2e%2e", "a%00b", "a%20b", "%C3%A9", "a%0D%0Ab"} {
		for _, route := range []struct{ method, path string }{
			{"GET", "/admin/credentials/" + id}, {"POST", "/admin/credentials/" + id + "/revoke"},
			{"POST", "/admin/credentials/" + id + "/enable"}, {"POST", "/admin/credentials/" + id + "/rotate"},
			{"GET", "/admin/batches/" + id}, {"POST", "/admin/batches/" + id + "/cancel"},
		} {
			req, err := http.NewRequest(route.method, srv.URL+route.path, nil)
			require.NoError(t, err)
			req.Header.Set("Authorization", "Bearer "+adminToken)
			resp, err := testenv.HTTPClient().Do(req)
			require.NoError(t, err)
			_ = resp.Body.Close()
			require.Equal(t, http.StatusBadRequest, resp.StatusCode, "%s %s", route.method, route.path)
		}
	}
	st.mu.Lock()
	require.Empty(t, st.ids, "an id that is not one reached the store")
	st.mu.Unlock()

	req, err := http.NewRequest("GET", srv.URL+"/admin/credentials/clinic-42", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := testenv.HTTPClient().Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
	require.Equal(t, []string{"clinic-42"}, st.ids)
}

// TestBearerBruteForceIsThrottled: guessing the admin token as a bearer
// token from one address gets 429 with Retry-After after 5 wrong tokens,
// and then even the right token is refused; another address is not.
func TestBearerBruteForceIsThrottled(t *testing.T) {
	t.Parallel()
	clock := testenv.NewClock(storetest.T0)
	h := Handler(Deps{Config: &config.Config{}, Store: &spyStore{}, Token: secret.New(adminToken),
		Throttle: websession.NewThrottle(websession.ThrottleOptions{Now: clock.Now})})
	try := func(addr, token string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodGet, "/admin/credentials/clinic-42", nil)
		r.RemoteAddr = addr + ":5555"
		r.Header.Set("Authorization", "Bearer "+token)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	for i := range 5 {
		require.Equal(t, http.StatusUnauthorized, try("203.0.113.5", "guess").Code, "guess %d", i)
	}
	w := try("203.0.113.5", "guess")
	require.Equal(t, http.StatusTooManyRequests, w.Code, "the 6th guess")
	require.Equal(t, "60", w.Header().Get("Retry-After"))
	require.Equal(t, http.StatusTooManyRequests, try("203.0.113.5", adminToken).Code, "locked out: not even compared")
	require.Equal(t, http.StatusNotFound, try("198.51.100.2", adminToken).Code, "another address gets through")
}
