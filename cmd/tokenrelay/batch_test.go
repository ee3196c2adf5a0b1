package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/internal/requests"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
	"github.com/tokenrelay/tokenrelay/internal/web/admin"
	"github.com/tokenrelay/tokenrelay/secret"
)

func runBatch(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := batch(context.Background(), args, func(k string) (string, bool) { v, ok := env[k]; return v, ok }, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestBatchStatusFollowsAndCancel(t *testing.T) {
	t.Parallel()
	rdb := testenv.Miniredis(t)
	batches := requests.NewBatches(rdb, "t:", nil)
	api := admin.Handler(admin.Deps{
		Config: &config.Config{}, Token: secret.New("tok-1"), Logger: zerolog.Nop(),
		Requests: requests.Jobs{Batches: batches},
	})
	// progress is called after each answer, so that the batch moves on
	// between the command's looks.
	var progress atomic.Value
	progress.Store(func() {})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		api.ServeHTTP(w, r)
		progress.Load().(func())()
	}))
	t.Cleanup(srv.Close)
	env := map[string]string{"TOKENRELAY_ADMIN_URL": srv.URL, "TOKENRELAY_ADMIN_TOKEN": "tok-1"}
	ctx := context.Background()
	started := time.Now().Add(-10 * time.Second).UnixMilli()
	nightly, other := requests.BatchKey("t:", "v1", "clinic-a", "nightly"), requests.BatchKey("t:", "v1", "clinic-a", "other")
	require.NoError(t, rdb.HSet(ctx, nightly, "total", 10, "queued", 5, "done", 4, "failed", 1,
		"created", started, "started", started).Err())

	code, out, _ := runBatch(t, env, "status", "-once", "-vendor", "v1", "-credential", "clinic-a", "nightly")
	require.Equal(t, 0, code)
	require.Contains(t, out, "nightly [###############...............] 5/10")
	require.Contains(t, out, "queued 5")
	require.Contains(t, out, "failed 1")
	require.Contains(t, out, "eta ")

	// Following: the bar is redrawn until the batch ends.
	progress.Store(func() {
		_ = rdb.HSet(ctx, nightly, "queued", 0, "done", 9, "last", time.Now().UnixMilli()).Err()
	})
	code, out, _ = runBatch(t, env, "status", "-every", "20ms", "-vendor", "v1", "-credential", "clinic-a", "nightly")
	require.Equal(t, 0, code)
	require.Contains(t, out, "5/10")
	require.Contains(t, out, "10/10")
	require.True(t, strings.HasSuffix(strings.TrimSpace(out), "finished\x1b[K"), out)

	progress.Store(func() {})
	require.NoError(t, rdb.HSet(ctx, other, "total", 3, "queued", 3).Err())
	// Another credential cannot cancel it, nor see it.
	code, _, errOut := runBatch(t, env, "cancel", "-vendor", "v1", "-credential", "clinic-b", "other")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "no batch other of that credential")
	code, _, _ = runBatch(t, env, "status", "-once", "-vendor", "v1", "-credential", "clinic-b", "nightly")
	require.Equal(t, 1, code)
	st, err := batches.Status(ctx, "v1", "clinic-a", "other")
	require.NoError(t, err)
	require.False(t, st.CancelRequested)

	code, out, _ = runBatch(t, env, "cancel", "-vendor", "v1", "-credential", "clinic-a", "other")
	require.Equal(t, 0, code)
	require.Contains(t, out, "other cancelled")
	st, err = batches.Status(ctx, "v1", "clinic-a", "other")
	require.NoError(t, err)
	require.True(t, st.CancelRequested)

	code, _, errOut = runBatch(t, env, "status", "-once", "-vendor", "v1", "-credential", "clinic-a", "missing")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "no batch missing")
	// Without the credential, the command refuses.
	code, _, errOut = runBatch(t, env, "status", "-once", "nightly")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "-vendor and -credential are required")
	code, _, _ = runBatch(t, map[string]string{}, "status", "x")
	require.Equal(t, 2, code)
}
