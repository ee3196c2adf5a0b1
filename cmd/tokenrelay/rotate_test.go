package main

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
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

// TestImportReportsDuplicateIDs: an id that appears twice is refused the
// second time, by line number, within a chunk and across chunks, and the
// first one lands.
func TestImportReportsDuplicateIDs(t *testing.T) {
	t.Parallel()
	c := setup(t)
	var lines strings.Builder
	const n = 1100
	for i := 1; i <= n; i++ {
		id := i
		switch i {
		case 4: // same chunk as line 3
			id = 3
		case 900: // a later chunk than line 2
			id = 2
		}
		fmt.Fprintf(&lines, `{"id":"p%d","vendor":"portal","client_id":"k%d","client_secret":"s%d"}`+"\n", id, i, i)
	}
	code, out, progress := c.run(lines.String(), "import", "-")
	require.Equal(t, 1, code, out)
	require.Contains(t, out, fmt.Sprintf("%d lines: %d created, 0 updated, 0 unchanged, 2 failed", n, n-2))
	require.Contains(t, out, "line 4 (p3): duplicate id (also on line 3)")
	require.Contains(t, out, "line 900 (p2): duplicate id (also on line 2)")
	require.Less(t, strings.Index(out, "line 4 "), strings.Index(out, "line 900 "), "failures in line order")
	require.Contains(t, progress, fmt.Sprintf("%d/%d lines", n, n))
	got, err := c.st.Get(context.Background(), "p2")
	require.NoError(t, err)
	require.Equal(t, "k2", got.ClientID, "the first line of an id lands, the duplicate does not")
}

// TestRotateNow: "tokenrelay credentials rotate ID" queues a rotation
// through the admin API, and says why when it cannot.
func TestRotateNow(t *testing.T) {
	t.Parallel()
	st, _ := storetest.New(t, testenv.NewClock(storetest.T0).Now)
	ctx := context.Background()
	for _, nc := range []store.NewCredential{
		{ID: "hs-1", Vendor: "hs", Keys: store.Keys{APIKey: secret.New("k1")}},
		{ID: "patient-1", Vendor: "portal", ClientID: "p1", Keys: store.Keys{ClientSecret: secret.New("s1")}},
	} {
		_, err := st.Upsert(ctx, nc)
		require.NoError(t, err)
	}
	var mu sync.Mutex
	var queued []string
	srv := httptest.NewServer(admin.Handler(admin.Deps{
		Config: &config.Config{Vendors: map[string]config.Vendor{"portal": {Kind: config.KindFHIRPortal}, "hs": {Kind: config.KindHealthSync}}},
		Store:  st, Token: secret.New("tok-1"), Logger: zerolog.Nop(),
		RotateNow: func(_ context.Context, c store.Credential) error {
			if c.Vendor != "hs" {
				return fmt.Errorf("%w: vendor %s", admin.ErrCannotRotate, c.Vendor)
			}
			mu.Lock()
			defer mu.Unlock()
			queued = append(queued, c.ID)
			return nil
		},
	}))
	t.Cleanup(srv.Close)
	c := &cli{st: st, env: map[string]string{"TOKENRELAY_ADMIN_URL": srv.URL, "TOKENRELAY_ADMIN_TOKEN": "tok-1"}}

	code, out, errOut := c.run("", "rotate", "hs-1")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "hs-1: rotation queued")
	require.Equal(t, []string{"hs-1"}, queued)

	code, _, errOut = c.run("", "rotate", "patient-1")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "cannot_rotate (HTTP 422)")

	code, _, errOut = c.run("", "rotate", "nope")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "not_found (HTTP 404)")

	code, _, _ = c.run("", "revoke", "hs-1")
	require.Equal(t, 0, code)
	code, _, errOut = c.run("", "rotate", "hs-1")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "already_revoked")
	require.Equal(t, []string{"hs-1"}, queued, "nothing more queued")

	code, _, errOut = c.run("", "rotate")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "usage")
}
