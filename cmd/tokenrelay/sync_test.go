package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/adminclient"
	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/internal/requests"
	"github.com/tokenrelay/tokenrelay/internal/syncs"
	"github.com/tokenrelay/tokenrelay/internal/web/admin"
	"github.com/tokenrelay/tokenrelay/jobs"
	"github.com/tokenrelay/tokenrelay/secret"
)

// fakeSyncs is the admin API's syncs: one sync of v1/clinic-a that moves
// on a page each time its status is read.
type fakeSyncs struct {
	mu      sync.Mutex
	started []jobs.Sync
	st      adminclient.SyncStatus
}

func (f *fakeSyncs) Decode(body []byte) (jobs.Sync, error) { return syncs.DecodeSync(body) }

func (f *fakeSyncs) Start(_ context.Context, s jobs.Sync) (jobs.Sync, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s.Vendor = "v1"
	f.started = append(f.started, s)
	now := time.Now()
	f.st = adminclient.SyncStatus{ID: s.ID, Vendor: "v1", Credential: s.Credential, Resource: s.Resource, Mode: s.Mode,
		State: "running", Total: 300, StartedAt: now.Add(-time.Second), UpdatedAt: now}
	return s, nil
}

func (f *fakeSyncs) Status(_ context.Context, vendor, credential, id string) (adminclient.SyncStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if vendor != f.st.Vendor || credential != f.st.Credential || id != f.st.ID {
		return adminclient.SyncStatus{}, syncs.ErrNotFound
	}
	f.st.Pages++
	f.st.Resources += 100
	f.st.UpdatedAt = f.st.StartedAt.Add(time.Duration(f.st.Pages) * time.Second)
	if f.st.Resources >= f.st.Total {
		f.st.State = "completed"
	}
	return f.st, nil
}

func (f *fakeSyncs) Cancel(ctx context.Context, vendor, credential, id string) (adminclient.SyncStatus, error) {
	if _, err := f.Status(ctx, vendor, credential, id); err != nil {
		return adminclient.SyncStatus{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.st.CancelRequested = true
	return f.st, nil
}

func runSync(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := syncCmd(context.Background(), args, func(k string) (string, bool) { v, ok := env[k]; return v, ok }, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestSyncStartFollowStatusCancel(t *testing.T) {
	t.Parallel()
	f := &fakeSyncs{}
	srv := httptest.NewServer(admin.Handler(admin.Deps{Config: &config.Config{}, Token: secret.New("tok-1"), Logger: zerolog.Nop(), Syncs: f}))
	t.Cleanup(srv.Close)
	env := map[string]string{"TOKENRELAY_ADMIN_URL": srv.URL, "TOKENRELAY_ADMIN_TOKEN": "tok-1"}

	code, out, errOut := runSync(t, env, "start", "-vendor", "v1", "-credential", "clinic-a", "-resource", "Patient",
		"-query", "_count=100", "-mode", "incremental", "-id", "nightly", "-follow")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "sync nightly started")
	require.Contains(t, out, "nightly [##########....................] 100/300  pages 1  running")
	require.Contains(t, out, "[##############################] 300/300  pages 3  completed")
	require.Equal(t, []jobs.Sync{{ID: "nightly", Vendor: "v1", Credential: "clinic-a", Resource: "Patient",
		Query: jobs.Query{"_count": {"100"}}, Mode: jobs.SyncIncremental}}, f.started)

	code, _, errOut = runSync(t, env, "status", "-once", "-vendor", "v1", "-credential", "clinic-b", "nightly")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "not_found", "a sync is seen only by its own credential")
	code, _, errOut = runSync(t, env, "cancel", "-vendor", "v1", "-credential", "clinic-b", "nightly")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "not_found")
	code, out, errOut = runSync(t, env, "cancel", "-vendor", "v1", "-credential", "clinic-a", "nightly")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "cancel requested")

	code, _, errOut = runSync(t, env, "status", "nightly")
	require.Equal(t, 2, code)
	require.True(t, strings.Contains(errOut, "-vendor and -credential are required"))
}

// The admin API refuses a sync that does not decode, naming the field.
func TestAdminSyncStartRefusesUnknownFields(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(admin.Handler(admin.Deps{Config: &config.Config{}, Token: secret.New("tok-1"), Logger: zerolog.Nop(), Syncs: &fakeSyncs{}}))
	t.Cleanup(srv.Close)
	c := &adminclient.Client{BaseURL: srv.URL, Token: secret.New("tok-1")}
	_, err := c.StartSync(context.Background(), adminclient.SyncStart{Credential: "clinic-a", Resource: "Patient"})
	require.NoError(t, err)
	req, err := http.NewRequest(http.MethodPost, srv.URL+"/admin/syncs", strings.NewReader(`{"credential":"c","resource":"Patient","pages":3}`))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer tok-1")
	resp, err := srv.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	require.Contains(t, string(body), `unknown field \"pages\"`)
	require.Contains(t, string(body), requests.CodeInvalid)
}
