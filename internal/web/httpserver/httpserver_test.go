package httpserver_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/internal/web/httpserver"
)

// serve runs a server built by httpserver.New with the timeouts to and
// returns its address.
func serve(t *testing.T, h http.Handler, to httpserver.Timeouts) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := httpserver.New(h, to)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// dribble writes s one byte every 50ms until the server closes the
// connection, and reports whether it did within limit.
func dribble(t *testing.T, conn net.Conn, s string, limit time.Duration) bool {
	t.Helper()
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		_, _ = io.Copy(io.Discard, conn) // returns when the server hangs up
	}()
	deadline := time.After(limit)
	for i := 0; ; i++ {
		select {
		case <-closed:
			return true
		case <-deadline:
			return false
		case <-time.After(50 * time.Millisecond):
			_, _ = conn.Write([]byte{s[i%len(s)]})
		}
	}
}

// TestSlowlorisIsCutOff: a client that sends its headers one byte at a
// time, never finishing them, is disconnected by the read-header timeout;
// one that sends its body that way, by the read timeout; an idle
// kept-alive connection, by the idle timeout. Each timeout is short on a
// server of its own, and the others long (net/http falls back on the read
// timeout for the other two), so that each is shown to work on its own.
func TestSlowlorisIsCutOff(t *testing.T) {
	t.Parallel()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, "ok")
	})
	const short, long = 200 * time.Millisecond, time.Minute
	headerSrv := serve(t, h, httpserver.Timeouts{ReadHeader: short, Read: long, Write: long, Idle: long})
	bodySrv := serve(t, h, httpserver.Timeouts{ReadHeader: long, Read: short, Write: long, Idle: long})
	idleSrv := serve(t, h, httpserver.Timeouts{ReadHeader: long, Read: long, Write: long, Idle: short})
	// slow sends head on a new connection to addr, then dribbles a byte of
	// more every 50ms, and reports whether the server hung up in time.
	slow := func(t *testing.T, addr, head, more string) bool {
		t.Helper()
		conn, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		defer conn.Close()
		_, err = io.WriteString(conn, head)
		require.NoError(t, err)
		return dribble(t, conn, more, 3*time.Second)
	}
	t.Run("headers", func(t *testing.T) {
		t.Parallel()
		require.True(t, slow(t, headerSrv, "GET / HTTP/1.1\r\nHost: x\r\n", "X-Slow: aaaaaaaa"),
			"a client never finishing its headers keeps its connection")
	})
	t.Run("body", func(t *testing.T) {
		t.Parallel()
		require.True(t, slow(t, bodySrv, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n", "a"),
			"a client never finishing its body keeps its connection")
	})
	t.Run("idle", func(t *testing.T) {
		t.Parallel()
		conn, err := net.Dial("tcp", idleSrv)
		require.NoError(t, err)
		defer conn.Close()
		_, err = io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		require.NoError(t, err)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		require.NoError(t, conn.SetReadDeadline(time.Now().Add(3*time.Second)))
		_, err = conn.Read(make([]byte, 1))
		require.ErrorIs(t, err, io.EOF, "an idle kept-alive connection is closed by the server")
	})
}

// TestCheckPathRefusesEncodedTraversal: ids that decode to a "/", a NUL,
// a ".." or a control character never reach a route: 400.
func TestCheckPathRefusesEncodedTraversal(t *testing.T) {
	t.Parallel()
	var (
		mu   sync.Mutex
		seen []string
	)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /admin/credentials/{id}", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, r.PathValue("id"))
	})
	mux.HandleFunc("GET /jwks/{vendor}/{credential}", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, r.PathValue("vendor")+"|"+r.PathValue("credential"))
	})
	addr := serve(t, httpserver.CheckPath(mux), httpserver.Timeouts{})
	for _, p := range []string{
		"/admin/credentials/a%2Fb", "/admin/credentials/..%2f..%2fetc", "/admin/credentials/%2e%2e",
		"/admin/credentials/a%00b", "/admin/credentials/a%5Cb", "/admin/credentials/a%0Ab",
		"/jwks/redox/%2e%2e%2Fclinic", "/jwks/%2e/clinic-1", "/jwks/redox/x%7f",
	} {
		conn, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		_, err = io.WriteString(conn, "GET "+p+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		require.NoError(t, err)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		require.NoError(t, err)
		_ = conn.Close()
		require.Equal(t, http.StatusBadRequest, resp.StatusCode, p)
	}
	mu.Lock()
	require.Empty(t, seen, "a decoded id reached a route")
	mu.Unlock()

	resp, err := http.Get("http://" + addr + "/admin/credentials/clinic-42_a")
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []string{"clinic-42_a"}, seen)
}
