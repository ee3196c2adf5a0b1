package app_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/secret"
)

// TestMetricsRequireTheBearerToken: with http.metrics_token set, a scrape
// of the worker's or the scheduler's /metrics without it, or with another
// token (the admin token included), is refused 401; with it, 200.
func TestMetricsRequireTheBearerToken(t *testing.T) {
	t.Parallel()
	p := newPipeline(t, 1, time.Minute, "")
	const metricsToken = "metrics-token-0123456789abcdefghijklmnopqrstuvwxyz"
	p.cfg.HTTP.MetricsToken = secret.New(metricsToken)
	p.cfg.HTTP.AdminToken = secret.New("admin-token-0123456789abcdefghijklmnopqrstuvwxyz")
	p.cfg.Scheduler.MetricsAddr = freeAddr(t)
	worker := p.worker()
	p.scheduler()

	scrape := func(base, token string) int {
		t.Helper()
		r, err := http.NewRequest(http.MethodGet, base+"/metrics", nil)
		require.NoError(t, err)
		if token != "" {
			r.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(r)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	for _, base := range []string{"http://" + worker.addr, "http://" + p.cfg.Scheduler.MetricsAddr} {
		require.Eventually(t, func() bool {
			c, err := net.Dial("tcp", base[len("http://"):])
			if err == nil {
				_ = c.Close()
			}
			return err == nil
		}, 10*time.Second, 20*time.Millisecond, "%s listens", base)
		require.Equal(t, http.StatusUnauthorized, scrape(base, ""), "%s: a scrape without the token", base)
		require.Equal(t, http.StatusUnauthorized, scrape(base, "wrong"), "%s: a scrape with another token", base)
		require.Equal(t, http.StatusUnauthorized, scrape(base, p.cfg.HTTP.AdminToken.Reveal()), "%s: the admin token is not the metrics token", base)
		require.Equal(t, http.StatusOK, scrape(base, metricsToken), "%s: with the token", base)
	}
}

// TestWorkerRefusesEncodedPaths: on the worker as it runs, ids that decode
// to a "/", a "..", a NUL or a control character are refused 400 on every
// route that takes one, the admin token notwithstanding.
func TestWorkerRefusesEncodedPaths(t *testing.T) {
	t.Parallel()
	p := newPipeline(t, 1, time.Minute, "")
	const adminToken = "admin-token-0123456789abcdefghijklmnopqrstuvwxyz"
	p.cfg.HTTP.AdminToken = secret.New(adminToken)
	worker := p.worker()
	for _, path := range []string{
		"/admin/credentials/a%2Fb", "/admin/credentials/..%2F..%2Fconfig", "/admin/credentials/%2e%2e",
		"/admin/credentials/dev-1%00", "/ui/credentials/a%2Fb", "/ui/credentials/%2E%2E%2Fx/revoke",
		"/jwks/redox/..%2fdev-1", "/jwks/redox/dev-1%0d%0aX-Injected:%201", "/webhooks/halaxy-au%2F..%2Fx",
	} {
		conn, err := net.Dial("tcp", worker.addr)
		require.NoError(t, err)
		_, err = io.WriteString(conn, "GET "+path+" HTTP/1.1\r\nHost: worker\r\nAuthorization: Bearer "+adminToken+"\r\nConnection: close\r\n\r\n")
		require.NoError(t, err)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		require.NoError(t, err)
		_ = conn.Close()
		require.Equal(t, http.StatusBadRequest, resp.StatusCode, path)
	}
}
