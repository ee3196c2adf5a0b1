package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/adminclient"
	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
	"github.com/tokenrelay/tokenrelay/internal/testenv/storetest"
	"github.com/tokenrelay/tokenrelay/secret"
)

const adminToken = "adm-0123456789"

type bundle struct {
	srv          *httptest.Server
	st           *store.Store
	rdb          *redis.Client
	logs         *testenv.Buffer
	vendorRevoke func(context.Context, store.Credential) error
}

func setup(t *testing.T) *bundle {
	t.Helper()
	clock := testenv.NewClock(storetest.T0)
	st, rdb := storetest.New(t, clock.Now)
	cfg := &config.Config{Vendors: map[string]config.Vendor{
		"portal":     {Kind: config.KindFHIRPortal},
		"healthsync": {Kind: config.KindHealthSync},
	}}
	b := &bundle{st: st, rdb: rdb, logs: &testenv.Buffer{}}
	b.srv = httptest.NewServer(Handler(Deps{
		Config: cfg, Store: st, Token: secret.New(adminToken), Clock: clock.Now,
		Logger: zerolog.New(b.logs),
		RevokeAtVendor: func(ctx context.Context, c store.Credential) error {
			if b.vendorRevoke != nil {
				return b.vendorRevoke(ctx, c)
			}
			return nil
		},
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *bundle) do(t *testing.T, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, b.srv.URL+path, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := testenv.HTTPClient().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(raw)
}

func TestEveryRouteNeedsTheToken(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, route := range []struct{ method, path string }{
		{"GET", "/admin/credentials"}, {"GET", "/admin/credentials/x"}, {"POST", "/admin/credentials"},
		{"POST", "/admin/credentials/import"}, {"POST", "/admin/credentials/x/revoke"}, {"POST", "/admin/credentials/x/enable"},
	} {
		for _, auth := range []string{"", "Bearer wrong", "Basic " + adminToken, adminToken} {
			req, err := http.NewRequest(route.method, b.srv.URL+route.path, strings.NewReader(`{}`))
			require.NoError(t, err)
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			resp, err := testenv.HTTPClient().Do(req)
			require.NoError(t, err)
			resp.Body.Close()
			require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "%s %s with %q", route.method, route.path, auth)
		}
	}
}

func TestAdminOffWithoutToken(t *testing.T) {
	t.Parallel()
	st, _ := storetest.New(t, nil)
	srv := httptest.NewServer(Handler(Deps{Config: &config.Config{}, Store: st}))
	defer srv.Close()
	resp, err := testenv.HTTPClient().Get(srv.URL + "/admin/credentials")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
}

func TestAddListAndNoSecretReturned(t *testing.T) {
	t.Parallel()
	b := setup(t)
	code, body := b.do(t, "POST", "/admin/credentials", `{"id":"patient-1","vendor":"portal","client_id":"key-1","client_secret":"very-secret-1"}`)
	require.Equal(t, http.StatusCreated, code, body)
	require.JSONEq(t, `{"id":"patient-1","result":"created"}`, body)
	code, _ = b.do(t, "POST", "/admin/credentials", `{"id":"patient-1","vendor":"portal","client_id":"key-1","client_secret":"very-secret-1"}`)
	require.Equal(t, http.StatusOK, code)
	code, _ = b.do(t, "POST", "/admin/credentials", `{"id":"hs-1","vendor":"healthsync","api_key":"hs-api-key-secret"}`)
	require.Equal(t, http.StatusCreated, code)

	code, body = b.do(t, "GET", "/admin/credentials?vendor=portal", "")
	require.Equal(t, http.StatusOK, code)
	var list []adminclient.CredentialView
	require.NoError(t, json.Unmarshal([]byte(body), &list))
	require.Len(t, list, 1)
	require.Equal(t, "patient-1", list[0].ID)
	require.Equal(t, "active", list[0].State)
	require.Equal(t, secret.Fingerprint("key-1"), list[0].ClientIDFingerprint)

	code, body = b.do(t, "GET", "/admin/credentials", "")
	require.Equal(t, http.StatusOK, code)
	_, one := b.do(t, "GET", "/admin/credentials/hs-1", "")
	for _, out := range []string{body, one, b.logs.String()} {
		for _, s := range []string{"very-secret-1", "hs-api-key-secret", adminToken} {
			require.NotContains(t, out, s)
		}
	}
	code, _ = b.do(t, "GET", "/admin/credentials/nope", "")
	require.Equal(t, http.StatusNotFound, code)
}

func TestAddRefusesBadCredentialsNamingTheField(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cases := []struct{ body, want string }{
		{`{"id":"bad id","vendor":"portal","client_id":"k","client_secret":"s"}`, "id: "},
		{`{"id":"p","vendor":"nope","client_id":"k","client_secret":"s"}`, `vendor: vendor \"nope\" is not defined`},
		{`{"id":"p","vendor":"portal","client_id":"k"}`, "client_secret: required"},
		{`{"id":"p","vendor":"portal","client_id":"k","client_secret":"s","colour":"red"}`, `unknown field \"colour\"`},
		{`{"id":"p","vendor":"portal","client_secret":"hunter2-secret"`, "incomplete JSON"},
	}
	for _, tc := range cases {
		code, body := b.do(t, "POST", "/admin/credentials", tc.body)
		require.Contains(t, []int{http.StatusBadRequest, http.StatusUnprocessableEntity}, code, tc.body)
		require.Contains(t, body, tc.want)
		require.NotContains(t, body, "hunter2-secret")
	}
	n, err := b.st.Count(context.Background())
	require.NoError(t, err)
	require.Zero(t, n, "nothing lands from a refused request")
}

func TestImportReportsBadLinesAndKeepsGoodOnes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	lines := strings.Join([]string{
		`{"id":"p1","vendor":"portal","client_id":"k1","client_secret":"s1"}`,
		`{"id":"p2","vendor":"portal","client_id":"k2"}`,
		`not json at all`,
		`{"id":"p3","vendor":"elsewhere","client_id":"k3","client_secret":"s3"}`,
		``,
		`{"id":"p1","vendor":"portal","client_id":"k9","client_secret":"s9"}`,
		`{"id":"p4","vendor":"portal","client_id":"k4","client_secret":"s4"}`,
	}, "\n")
	code, body := b.do(t, "POST", "/admin/credentials/import", lines)
	require.Equal(t, http.StatusOK, code, body)
	var res adminclient.ImportResult
	require.NoError(t, json.Unmarshal([]byte(body), &res))
	require.Equal(t, 7, res.Lines)
	require.Equal(t, 2, res.Created)
	require.Len(t, res.Failed, 4)
	got := map[int]string{}
	for _, f := range res.Failed {
		got[f.Line] = f.Error
	}
	require.Contains(t, got[2], "client_secret: required")
	require.Contains(t, got[3], "not a JSON credential")
	require.Contains(t, got[4], `vendor "elsewhere" is not defined`)
	require.Contains(t, got[6], "duplicate id (also on line 1)")
	for _, id := range []string{"p1", "p4"} {
		c, err := b.st.Get(context.Background(), id)
		require.NoError(t, err)
		require.Equal(t, store.StateActive, c.State)
	}
	c, err := b.st.Get(context.Background(), "p1")
	require.NoError(t, err)
	require.Equal(t, "s1", c.ClientSecret.Reveal(), "a duplicate line does not overwrite the first")
}

func TestRevokeThenEnableWithNewSecret(t *testing.T) {
	t.Parallel()
	b := setup(t)
	code, _ := b.do(t, "POST", "/admin/credentials", `{"id":"p1","vendor":"portal","client_id":"k1","client_secret":"s1"}`)
	require.Equal(t, http.StatusCreated, code)

	var vendorCalled []string
	b.vendorRevoke = func(_ context.Context, c store.Credential) error {
		vendorCalled = append(vendorCalled, c.ID)
		return nil
	}
	code, body := b.do(t, "POST", "/admin/credentials/p1/revoke", `{"reason":"clinic left"}`)
	require.Equal(t, http.StatusOK, code, body)
	require.Equal(t, []string{"p1"}, vendorCalled)
	c, err := b.st.Get(context.Background(), "p1")
	require.NoError(t, err)
	require.Equal(t, store.StateRevoked, c.State)

	msgs, err := b.rdb.XRange(context.Background(), events.OutboxKey("t:"), "-", "+").Result()
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	var env events.Envelope
	require.NoError(t, json.Unmarshal([]byte(msgs[0].Values[events.OutboxFieldEvent].(string)), &env))
	require.Equal(t, events.TypeKeyRevoked, env.Type)
	var d events.KeyRevoked
	require.NoError(t, json.Unmarshal(env.Data, &d))
	require.Equal(t, events.ReasonRevokedByOperator, d.Reason)
	require.Equal(t, "clinic left", d.Message)
	require.Contains(t, b.logs.String(), `"audit":"revoke"`)

	code, _ = b.do(t, "POST", "/admin/credentials/p1/revoke", "")
	require.Equal(t, http.StatusConflict, code)

	code, body = b.do(t, "POST", "/admin/credentials/p1/enable", `{"client_secret":"s2-new"}`)
	require.Equal(t, http.StatusOK, code, body)
	c, err = b.st.Get(context.Background(), "p1")
	require.NoError(t, err)
	require.Equal(t, store.StateActive, c.State)
	require.Equal(t, "s2-new", c.ClientSecret.Reveal())
}

// TestRevokeDuringAnotherWorkersRotation: a credential whose key rotation
// another worker holds is not "refused by the vendor": the answer is 409
// with when to try again, and nothing changed.
func TestRevokeDuringAnotherWorkersRotation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	code, _ := b.do(t, "POST", "/admin/credentials", `{"id":"hs-2","vendor":"healthsync","api_key":"k"}`)
	require.Equal(t, http.StatusCreated, code)
	b.vendorRevoke = func(context.Context, store.Credential) error {
		return fmt.Errorf("rotation: revoke hs-2 at vendor: settle its rotation: %w", &store.BusyError{Until: time.Now().Add(20 * time.Second)})
	}
	req, err := http.NewRequest("POST", b.srv.URL+"/admin/credentials/hs-2/revoke", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := testenv.HTTPClient().Do(req)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusConflict, resp.StatusCode, string(body))
	require.Contains(t, string(body), `"busy"`)
	require.Contains(t, string(body), "nothing changed")
	retry, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	require.NoError(t, err)
	require.InDelta(t, 20, retry, 2)
	c, err := b.st.Get(context.Background(), "hs-2")
	require.NoError(t, err)
	require.Equal(t, store.StateActive, c.State)
}

func TestRevokeStopsWhenTheVendorRefuses(t *testing.T) {
	t.Parallel()
	b := setup(t)
	code, _ := b.do(t, "POST", "/admin/credentials", `{"id":"hs-1","vendor":"healthsync","api_key":"k"}`)
	require.Equal(t, http.StatusCreated, code)
	b.vendorRevoke = func(context.Context, store.Credential) error {
		return errors.New("healthsync: revoke key: server_error (HTTP 503)")
	}
	code, body := b.do(t, "POST", "/admin/credentials/hs-1/revoke", "")
	require.Equal(t, http.StatusBadGateway, code)
	require.Contains(t, body, "nothing changed")
	c, err := b.st.Get(context.Background(), "hs-1")
	require.NoError(t, err)
	require.Equal(t, store.StateActive, c.State)
}
