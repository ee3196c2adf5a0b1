package vendors_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/vendors"
)

func TestHTTPClient(t *testing.T) {
	t.Parallel()
	def := vendors.HTTPClient(nil)
	require.Equal(t, vendors.DefaultTimeout, def.Timeout)
	require.NotSame(t, def, vendors.HTTPClient(nil), "a new client each time")
	c := &http.Client{Timeout: time.Second}
	require.Same(t, c, vendors.HTTPClient(c))
}

func TestNoRedirects(t *testing.T) {
	t.Parallel()
	var followed atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/elsewhere" {
			followed.Store(true)
			return
		}
		http.Redirect(w, r, "/elsewhere", http.StatusFound)
	}))
	t.Cleanup(srv.Close)

	called := false
	c := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { called = true; return nil }}
	nr := vendors.NoRedirects(c)
	require.NotSame(t, c, nr, "a copy")
	require.Equal(t, 5*time.Second, nr.Timeout)
	resp, err := nr.Get(srv.URL + "/token")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusFound, resp.StatusCode, "the redirect is the answer")
	require.False(t, followed.Load())
	require.False(t, called, "the client's own CheckRedirect is not asked")
	require.NotNil(t, c.CheckRedirect, "the original is untouched")

	require.Equal(t, vendors.DefaultTimeout, vendors.NoRedirects(nil).Timeout)
}

func TestNewSender(t *testing.T) {
	t.Parallel()
	s := vendors.NewSender("acme", nil, nil, "")
	require.Equal(t, "acme", s.Vendor)
	require.Equal(t, vendors.DefaultTimeout, s.Client.Timeout)
	require.NotNil(t, s.Client.CheckRedirect)
	require.WithinDuration(t, time.Now(), s.Clock(), time.Minute, "time.Now by default")

	clock := func() time.Time { return time.Unix(42, 0) }
	s = vendors.NewSender("acme", &http.Client{Timeout: time.Second}, clock, "Acme/1")
	require.Equal(t, time.Second, s.Client.Timeout)
	require.Equal(t, time.Unix(42, 0), s.Clock())
	require.Equal(t, "Acme/1", s.UserAgent)
}

func TestAnswerOK(t *testing.T) {
	t.Parallel()
	for status, ok := range map[int]bool{199: false, 200: true, 204: true, 299: true, 300: false, 401: false, 500: false} {
		require.Equal(t, ok, vendors.Answer{Status: status}.OK(), status)
	}
}

func TestSenderDo(t *testing.T) {
	t.Parallel()
	var (
		mu    sync.Mutex
		gotUA []string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		gotUA = append(gotUA, r.UserAgent())
		mu.Unlock()
		switch r.URL.Path {
		case "/short":
			// Promise more than is sent, then hang up.
			w.Header().Set("Content-Length", "100")
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write([]byte("abc"))
			rc := http.NewResponseController(w)
			_ = rc.Flush()
			conn, _, err := rc.Hijack()
			if err == nil {
				conn.Close()
			}
		case "/slow":
			<-r.Context().Done()
		default:
			w.Header().Set("X-Answer", "yes")
			w.WriteHeader(http.StatusTeapot)
			_, _ = w.Write([]byte("0123456789"))
		}
	}))
	t.Cleanup(srv.Close)

	get := func(s *vendors.Sender, ctx context.Context, path string, limit int64) (vendors.Answer, *vendors.Error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+path, nil)
		require.NoError(t, err)
		return s.Do(req, "look", limit)
	}
	s := vendors.NewSender("acme", nil, nil, "Acme/1")

	ans, verr := get(s, t.Context(), "/", 4)
	require.Nil(t, verr)
	require.Equal(t, http.StatusTeapot, ans.Status, "any status is an answer")
	require.Equal(t, "yes", ans.Header.Get("X-Answer"))
	require.Equal(t, "0123", string(ans.Body), "cut at the limit")
	require.False(t, ans.OK())

	_, verr = get(s, t.Context(), "/short", 1<<20)
	require.NotNil(t, verr)
	require.Equal(t, vendors.Error{Vendor: "acme", Op: "look", Class: vendors.ClassNetwork, Status: http.StatusOK, Err: verr.Err}, *verr,
		"a failed read keeps the status")

	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	_, verr = get(s, ctx, "/slow", 1<<20)
	require.NotNil(t, verr)
	require.Equal(t, vendors.ClassTimeout, verr.Class)
	require.Zero(t, verr.Status)

	plain := vendors.NewSender("acme", nil, nil, "")
	_, verr = get(plain, t.Context(), "/", 1)
	require.Nil(t, verr)
	mu.Lock()
	require.Equal(t, []string{"Acme/1", "Acme/1", "Acme/1", "Go-http-client/1.1"}, gotUA, "the User-Agent only when set")
	mu.Unlock()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+addr+"/", nil)
	require.NoError(t, err)
	_, verr = s.Do(req, "look", 1)
	require.NotNil(t, verr)
	require.Equal(t, vendors.ClassNetwork, verr.Class)
	var oe *net.OpError
	require.True(t, errors.As(verr, &oe), "the cause is kept")
}

func TestSenderCall(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ok" {
			_, _ = w.Write([]byte("fine"))
			return
		}
		http.Error(w, "nope", http.StatusForbidden)
	}))
	t.Cleanup(srv.Close)
	s := vendors.NewSender("acme", nil, nil, "")
	var refused []int
	classify := func(ans vendors.Answer) *vendors.Error {
		refused = append(refused, ans.Status)
		return s.StatusError("look", ans, false, vendors.VendorSaid(vendors.Excerpt(string(ans.Body), nil)))
	}
	call := func(url string) (vendors.Answer, *vendors.Error) {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
		require.NoError(t, err)
		return s.Call(req, "look", classify)
	}

	ans, verr := call(srv.URL + "/ok")
	require.Nil(t, verr)
	require.Equal(t, "fine", string(ans.Body))

	_, verr = call(srv.URL + "/no")
	require.NotNil(t, verr)
	require.Equal(t, `acme: look: rejected (HTTP 403): vendor said "nope"`, verr.Error())

	srv.Close()
	_, verr = call(srv.URL + "/ok")
	require.NotNil(t, verr)
	require.Equal(t, vendors.ClassNetwork, verr.Class)
	require.Equal(t, []int{http.StatusForbidden}, refused, "only answers outside 2xx are classified")
}
