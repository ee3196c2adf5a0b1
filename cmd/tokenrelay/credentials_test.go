package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
	"github.com/tokenrelay/tokenrelay/internal/testenv/storetest"
	"github.com/tokenrelay/tokenrelay/internal/web/admin"
	"github.com/tokenrelay/tokenrelay/secret"
)

type cli struct {
	st  *store.Store
	env map[string]string
}

func setup(t *testing.T) *cli {
	t.Helper()
	st, _ := storetest.New(t, testenv.NewClock(storetest.T0).Now)
	srv := httptest.NewServer(admin.Handler(admin.Deps{
		Config: &config.Config{Vendors: map[string]config.Vendor{"portal": {Kind: config.KindFHIRPortal}}},
		Store:  st, Token: secret.New("tok-1"), Logger: zerolog.Nop(),
	}))
	t.Cleanup(srv.Close)
	return &cli{st: st, env: map[string]string{"TOKENRELAY_ADMIN_URL": srv.URL, "TOKENRELAY_ADMIN_TOKEN": "tok-1"}}
}

func (c *cli) run(stdin string, args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := credentials(context.Background(), args, func(k string) (string, bool) { v, ok := c.env[k]; return v, ok },
		strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestImportInChunksReportsFailedLinesByNumber(t *testing.T) {
	t.Parallel()
	c := setup(t)
	var lines strings.Builder
	const n = 1234
	for i := 1; i <= n; i++ {
		switch i {
		case 777:
			fmt.Fprintf(&lines, `{"id":"p%d","vendor":"portal","client_id":"k%d"}`+"\n", i, i) // no secret
		case 1001:
			lines.WriteString("garbage\n")
		default:
			fmt.Fprintf(&lines, `{"id":"p%d","vendor":"portal","client_id":"k%d","client_secret":"s%d"}`+"\n", i, i, i)
		}
	}
	code, out, progress := c.run(lines.String(), "import", "-")
	require.Equal(t, 1, code, "some lines failed: exit 1\n%s", out)
	require.Contains(t, out, fmt.Sprintf("%d lines: %d created, 0 updated, 0 unchanged, 2 failed", n, n-2))
	require.Contains(t, out, "line 777 (p777): client_secret: required")
	require.Contains(t, out, "line 1001: not a JSON credential")
	require.Contains(t, progress, fmt.Sprintf("%d/%d lines, 2 failed", n, n))
	cnt, err := c.st.Count(context.Background())
	require.NoError(t, err)
	require.Equal(t, int64(n-2), cnt)
}

func TestAddListRevokeEnable(t *testing.T) {
	t.Parallel()
	c := setup(t)
	code, out, errOut := c.run(`{"id":"patient-9","vendor":"portal","client_id":"k9","client_secret":"s9-secret"}`, "add")
	require.Equal(t, 0, code, errOut)
	require.Equal(t, "patient-9 created\n", out)

	code, out, _ = c.run("", "list")
	require.Equal(t, 0, code)
	require.Contains(t, out, "patient-9")
	require.Contains(t, out, "active")
	require.NotContains(t, out, "s9-secret")

	code, out, errOut = c.run("", "revoke", "patient-9", "-reason", "patient left")
	require.Equal(t, 0, code, errOut)
	require.Equal(t, "patient-9 revoked\n", out)
	code, _, errOut = c.run("", "revoke", "patient-9")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "already_revoked")

	code, out, errOut = c.run(`{"client_secret":"s10-new"}`, "enable", "patient-9", "-f", "-")
	require.Equal(t, 0, code, errOut)
	require.Equal(t, "patient-9 enabled\n", out)
	got, err := c.st.Get(context.Background(), "patient-9")
	require.NoError(t, err)
	require.Equal(t, store.StateActive, got.State)
	require.Equal(t, "s10-new", got.ClientSecret.Reveal())
}

func TestCredentialsNeedsTheToken(t *testing.T) {
	t.Parallel()
	c := setup(t)
	delete(c.env, "TOKENRELAY_ADMIN_TOKEN")
	code, _, errOut := c.run("", "list")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "TOKENRELAY_ADMIN_TOKEN")
	c.env["TOKENRELAY_ADMIN_TOKEN"] = "wrong"
	code, _, errOut = c.run("", "list")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "unauthorized")
}
