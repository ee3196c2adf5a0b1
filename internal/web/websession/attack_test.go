package websession_test

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/internal/testenv"
	"github.com/tokenrelay/tokenrelay/internal/web/websession"
	"github.com/tokenrelay/tokenrelay/secret"
)

// TestSignOutEndsTheSessionOnEveryReplica: someone who copied a session
// cookie (from a shared machine, a proxy log) replays it after the
// operator signed out: refused, on the replica that signed out and on
// another one sharing the Redis store, though the cookie is well signed
// and unexpired. Other sessions live on.
func TestSignOutEndsTheSessionOnEveryReplica(t *testing.T) {
	t.Parallel()
	rdb, prefix := testenv.RedisPrefix(t)
	store := websession.RedisStore{Client: rdb, Prefix: prefix}
	replica1 := websession.New(secret.New(adminToken), websession.Options{Store: store})
	replica2 := websession.New(secret.New(adminToken), websession.Options{Store: store})

	stolen := signIn(t, replica1, get(), adminToken)
	other := signIn(t, replica2, get(), adminToken)
	require.True(t, replica2.SignedIn(get(stolen)), "a sign-in on one replica holds on another")

	w := httptest.NewRecorder()
	require.NoError(t, replica1.SignOut(w, get(stolen)))
	require.False(t, replica1.SignedIn(get(stolen)), "the copied cookie, replayed after the sign-out")
	require.False(t, replica2.SignedIn(get(stolen)), "the copied cookie, replayed on another replica")
	require.Empty(t, replica2.CSRFToken(get(stolen)), "and it gets no CSRF token for forms")
	require.True(t, replica1.SignedIn(get(other)), "another browser's session is not ended")

	keys, err := rdb.Keys(t.Context(), prefix+"websession:*").Result()
	require.NoError(t, err)
	require.Len(t, keys, 1, "one live session is kept")
	require.NotContains(t, keys[0], stolen.Value, "the Store keeps a hash, not the cookie")
}

// TestSignInIsThrottledPerClient: a brute force of the admin token from
// one address is refused with 429 and Retry-After after 5 wrong tokens,
// without its guesses being compared (the right token too is refused
// while locked out); the lock doubles with each further failure, and
// X-Forwarded-For does not move a client to another count. Another
// address still signs in. Bearer tokens count the same.
func TestSignInIsThrottledPerClient(t *testing.T) {
	t.Parallel()
	clk := testenv.NewClock(t0)
	s := websession.New(secret.New(adminToken), websession.Options{Now: clk.Now})
	from := func(addr, forwarded string) *http.Request {
		r := get()
		r.RemoteAddr = addr + ":40000"
		if forwarded != "" {
			r.Header.Set("X-Forwarded-For", forwarded)
		}
		return r
	}
	try := func(r *http.Request, token string) (int, string) {
		w := httptest.NewRecorder()
		status := http.StatusOK
		if err := s.SignIn(w, r, token); err != nil {
			status, _ = websession.Refusal(w, err)
		}
		return status, w.Header().Get("Retry-After")
	}
	for i := range 5 {
		status, _ := try(from("203.0.113.9", strconv.Itoa(i)+".0.0.1"), "guess-"+strconv.Itoa(i))
		require.Equal(t, http.StatusUnauthorized, status, "guess %d", i)
	}
	status, retry := try(from("203.0.113.9", "198.51.100.1"), "guess-5")
	require.Equal(t, http.StatusTooManyRequests, status, "the 6th guess")
	require.Equal(t, "60", retry)
	status, _ = try(from("203.0.113.9", ""), adminToken)
	require.Equal(t, http.StatusTooManyRequests, status, "the right token is not even compared while locked out")
	r := from("203.0.113.9", "")
	r.Header.Set("Authorization", "Bearer "+adminToken)
	require.False(t, s.Bearer(r), "nor as a bearer token")

	status, _ = try(from("198.51.100.7", ""), adminToken)
	require.Equal(t, http.StatusOK, status, "another address signs in")

	clk.Advance(time.Minute)
	status, _ = try(from("203.0.113.9", ""), "guess-6")
	require.Equal(t, http.StatusUnauthorized, status, "after the lock, one more guess")
	status, retry = try(from("203.0.113.9", ""), "guess-7")
	require.Equal(t, http.StatusTooManyRequests, status)
	require.Equal(t, "120", retry, "the lock doubled")

	clk.Advance(2 * time.Minute)
	status, _ = try(from("203.0.113.9", ""), adminToken)
	require.Equal(t, http.StatusOK, status)
	status, _ = try(from("203.0.113.9", ""), "typo")
	require.Equal(t, http.StatusUnauthorized, status, "a success clears the count")
}
