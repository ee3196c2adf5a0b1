package redox_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/internal/testenv"
	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/vendors/redox"
)

// TestJWKSFloodOpensTheKeyOncePerTTL: 200 requests for a credential's
// JWKS, 100 of them at once, read (and decrypt) its signing keys once;
// after the TTL, once more. Unknown credentials are cached as 404 too, a
// store failure is not, and a name that is not an id is never looked up.
func TestJWKSFloodOpensTheKeyOncePerTTL(t *testing.T) {
	t.Parallel()
	pemKey := signingKeyPEM(t)

	var mu sync.Mutex
	reads := map[string]int{}
	var down atomic.Bool
	release := make(chan struct{})
	source := func(_ context.Context, vendor, cred string) ([]redox.SigningKey, error) {
		mu.Lock()
		reads[vendor+"/"+cred]++
		mu.Unlock()
		if cred == "src-1" {
			<-release // the concurrent requests pile up behind the first read
		}
		switch {
		case down.Load():
			return nil, errors.New("store down")
		case cred == "src-1":
			return []redox.SigningKey{{PrivateKey: secret.New(pemKey), KeyID: "kid-1"}}, nil
		default:
			return nil, redox.ErrNoSigningKeys
		}
	}
	clk := testenv.NewClock(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC))
	mux := http.NewServeMux()
	mux.Handle("GET /jwks/{vendor}/{credential}", redox.CachedJWKSHandler(source, redox.JWKSCacheOptions{TTL: 30 * time.Second, Now: clk.Now}))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	get := func(path string) (int, string) {
		resp, err := srv.Client().Get(srv.URL + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	readsOf := func(k string) int {
		mu.Lock()
		defer mu.Unlock()
		return reads[k]
	}

	var wg sync.WaitGroup
	statuses := make(chan int, 100)
	for range 100 {
		wg.Go(func() {
			status, _ := get("/jwks/redox-prod/src-1")
			statuses <- status
		})
	}
	require.Eventually(t, func() bool { return readsOf("redox-prod/src-1") == 1 }, 5*time.Second, 5*time.Millisecond)
	close(release)
	wg.Wait()
	close(statuses)
	for s := range statuses {
		require.Equal(t, http.StatusOK, s)
	}
	for range 100 {
		status, body := get("/jwks/redox-prod/src-1")
		require.Equal(t, http.StatusOK, status)
		require.Contains(t, body, `"kid-1"`)
	}
	require.Equal(t, 1, readsOf("redox-prod/src-1"), "the flood opened the sealed key more than once")

	for range 50 {
		status, _ := get("/jwks/redox-prod/nobody")
		require.Equal(t, http.StatusNotFound, status)
	}
	require.Equal(t, 1, readsOf("redox-prod/nobody"), "an unknown credential is looked up once per TTL")

	for _, bad := range []string{"/jwks/redox-prod/a%2Fb", "/jwks/redox-prod/%00", "/jwks/redox%20prod/src-1", "/jwks/redox-prod/x.y"} {
		status, _ := get(bad)
		require.Equal(t, http.StatusNotFound, status, bad)
	}
	mu.Lock()
	require.Len(t, reads, 2, "a name that is not an id was looked up: %v", reads)
	mu.Unlock()

	clk.Advance(30 * time.Second)
	status, _ := get("/jwks/redox-prod/src-1")
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, 2, readsOf("redox-prod/src-1"), "read again after the TTL")

	clk.Advance(30 * time.Second)
	down.Store(true)
	for range 3 {
		status, _ := get("/jwks/redox-prod/src-1")
		require.Equal(t, http.StatusServiceUnavailable, status)
	}
	require.Equal(t, 5, readsOf("redox-prod/src-1"), "a failure is not cached")
}
