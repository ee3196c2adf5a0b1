package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/adminclient"
	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/buildinfo"
	"github.com/tokenrelay/tokenrelay/internal/metrics/metricstest"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
	"github.com/tokenrelay/tokenrelay/jobs"
	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/vendors/sandbox"
)

// freeAddr is a loopback address with a port free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// TestMetricsFollowThePipeline runs renewals, a transient refresh failure
// and a revocation by the vendor through a scheduler and a worker, then
// checks that the scheduler's event counters equal what the stream holds,
// that the worker's store gauges match the store, and that neither scrape
// holds a secret.
func TestMetricsFollowThePipeline(t *testing.T) {
	if testing.Short() {
		t.Skip("integration run")
	}
	t.Parallel()
	p := newPipeline(t, 4, 3*time.Second, "")
	p.cfg.Scheduler.MetricsAddr = freeAddr(t)
	adminToken := testenv.Unique("admin-token-0123456789abcdefghijklmnopq-")
	p.cfg.HTTP.AdminToken = secret.New(adminToken)

	failing, revoked := p.cfg.Credentials[0], p.cfg.Credentials[1]
	require.NoError(t, p.sandbox.Inject(sandbox.Fault{ClientID: failing.ClientID, Kind: sandbox.FaultServerError, Status: 503, Times: 1}))
	sched := p.scheduler()
	worker := p.worker()

	p.waitGenerations(1, time.Minute)
	p.sandbox.DeleteClient(revoked.ClientID)
	require.Eventually(t, func() bool { return p.summaries()[revoked.ID].State == store.StateRevoked },
		time.Minute, 50*time.Millisecond, "the deleted client should be revoked")
	p.waitGenerations(2, time.Minute)

	// A request job whose first call gets a 429.
	user := p.cfg.Credentials[2]
	require.NoError(t, p.sandbox.Inject(sandbox.Fault{ClientID: user.ClientID, Endpoint: sandbox.EndpointPatient,
		Kind: sandbox.FaultRateLimited, RetryAfter: time.Second, Times: 1}))
	ac := &adminclient.Client{BaseURL: "http://" + worker.addr, Token: p.cfg.HTTP.AdminToken}
	reqID, err := ac.SubmitRequest(context.Background(), jobs.NewRequest(user.ID, http.MethodGet, "Patient"))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		wm := metricstest.Get(t, nil, "http://"+worker.addr+"/metrics")
		return wm.Find("tokenrelay_requests_total", "vendor", user.Vendor, "outcome", "completed") != nil
	}, time.Minute, 100*time.Millisecond, "request %s should complete", reqID)
	wm := metricstest.Get(t, nil, "http://"+worker.addr+"/metrics")
	require.Equal(t, 1.0, wm.Value(t, "tokenrelay_requests_total", "vendor", user.Vendor, "outcome", "rate_limited"), "the 429")
	require.Equal(t, 1.0, wm.Value(t, "tokenrelay_requests_total", "vendor", user.Vendor, "outcome", "completed"))
	worker.stop(t)
	p.waitOutboxEmpty()

	// What the stream holds, counted by vendor, type, class and reason.
	want := map[string]float64{}
	for _, e := range p.readStream(p.inspect.JS) {
		var d struct {
			Vendor     string `json:"vendor"`
			Class      string `json:"error_class"`
			Reason     string `json:"reason"`
			Generation int64  `json:"generation"`
		}
		require.NoError(t, json.Unmarshal(e.Env.Data, &d))
		switch e.Env.Type {
		case events.TypeTokenRenewed:
			want["renewals/"+d.Vendor]++
			if d.Generation > 1 { // it replaced a token: a lead time
				want["leadtimes/"+d.Vendor]++
			}
		case events.TypeTokenRefreshFailed:
			want["failures/"+d.Vendor+"/"+d.Class]++
		case events.TypeKeyRevoked:
			want["revocations/"+d.Vendor+"/"+d.Reason]++
			want["failures/"+d.Vendor+"/invalid_client"]++
		}
	}
	require.Equal(t, 1.0, want["failures/"+failing.Vendor+"/server_error"], "one 503: %v", want)
	require.Equal(t, 1.0, want["revocations/"+revoked.Vendor+"/revoked_by_vendor"], "%v", want)

	sm := metricstest.Get(t, nil, "http://"+p.cfg.Scheduler.MetricsAddr+"/metrics")
	for key, n := range want {
		parts := strings.Split(key, "/")
		switch parts[0] {
		case "renewals":
			require.Equal(t, n, sm.Value(t, "tokenrelay_renewals_total", "vendor", parts[1]), key)
		case "failures":
			require.Equal(t, n, sm.Value(t, "tokenrelay_refresh_failures_total", "vendor", parts[1], "class", parts[2]), key)
		case "revocations":
			require.Equal(t, n, sm.Value(t, "tokenrelay_revocations_total", "vendor", parts[1], "reason", parts[2]), key)
		case "leadtimes":
			require.EqualValues(t, n, sm.Metric(t, "tokenrelay_renewal_lead_time_seconds", "vendor", parts[1]).GetHistogram().GetSampleCount(), key)
		}
	}
	require.Equal(t, 0.0, sm.Value(t, "tokenrelay_outbox_depth"))
	// Both say which build they run.
	bi := buildinfo.Read()
	for _, sc := range []metricstest.Scrape{wm, sm} {
		require.Equal(t, 1.0, sc.Value(t, "tokenrelay_build_info", "version", bi.Version, "commit", bi.Commit, "goversion", bi.GoVersion))
	}

	// The worker's gauges come from the store (a worker of its own, since
	// the first one stopped).
	// Renewals go on meanwhile (the scheduler runs, and this worker
	// renews), so the scrape's read of the store is checked against the
	// store as read just before it and just after: it must be one of them.
	worker = p.worker()
	before := p.summaries()
	wm = metricstest.Get(t, nil, "http://"+worker.addr+"/metrics")
	after := p.summaries()
	for _, c := range p.cfg.Credentials {
		seconds := func(t time.Time) float64 { return float64(t.UnixMilli()) / 1e3 }
		expiry := wm.Value(t, "tokenrelay_token_expiry_timestamp_seconds", "vendor", c.Vendor, "credential", c.ID)
		renewal := wm.Value(t, "tokenrelay_token_last_renewal_timestamp_seconds", "vendor", c.Vendor, "credential", c.ID)
		b, a := before[c.ID], after[c.ID]
		require.Contains(t, []float64{seconds(b.ExpiresAt), seconds(a.ExpiresAt)}, expiry, c.ID)
		require.Contains(t, []float64{seconds(b.IssuedAt), seconds(a.IssuedAt)}, renewal, c.ID)
	}
	require.Equal(t, 1.0, wm.Value(t, "tokenrelay_credentials", "vendor", revoked.Vendor, "state", "revoked"))
	require.NotNil(t, wm.Find("asynq_queue_size", "queue", jobs.QueueCritical), "asynq's queue metrics are served")
	require.NotNil(t, wm.Find("go_goroutines"))

	secrets := append(p.secretsOf(), adminToken)
	for _, s := range secrets {
		require.NotContains(t, sm.Body, s, "a secret is in the scheduler's /metrics")
		require.NotContains(t, wm.Body, s, "a secret is in the worker's /metrics")
	}

	// Readiness, on both.
	for _, base := range []string{"http://" + worker.addr, "http://" + p.cfg.Scheduler.MetricsAddr} {
		resp, err := http.Get(base + "/readyz")
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode, base)
	}
	sched.stop(t)
}

// TestReadyzReportsAStuckOutbox: with no scheduler relaying, an event that
// has waited longer than app.OutboxStuckAfter makes the worker unready.
func TestReadyzReportsAStuckOutbox(t *testing.T) {
	t.Parallel()
	p := newPipeline(t, 1, time.Minute, "")
	worker := p.worker()
	get := func() (int, string) {
		resp, err := http.Get("http://" + worker.addr + "/readyz")
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, _ := get()
	require.Equal(t, http.StatusOK, code)
	// An entry written ten minutes ago (its stream id is its time).
	old := time.Now().Add(-10 * time.Minute).UnixMilli()
	require.NoError(t, p.inspect.Redis.XAdd(context.Background(), &redis.XAddArgs{
		Stream: events.OutboxKey(p.cfg.Redis.Prefix), ID: fmt.Sprintf("%d-0", old),
		Values: []any{"id", "x", "subject", "token.renewed.v.c", "event", "{}"},
	}).Err())
	code, body := get()
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Contains(t, body, "outbox stuck")
}

// TestQueueDashboard: asynqmon answers 401 without the admin token, 200
// with it (bearer, or the session cookie a browser gets from the sign-in
// form; never from ?token=), and
// shows task payloads without any secret.
func TestQueueDashboard(t *testing.T) {
	t.Parallel()
	p := newPipeline(t, 2, time.Minute, "")
	adminToken := testenv.Unique("admin-token-0123456789abcdefghijklmnopq-")
	p.cfg.HTTP.AdminToken = secret.New(adminToken)
	worker := p.worker()
	base := "http://" + worker.addr + "/asynqmon"

	// Tasks that carry what must not be shown: a request job's headers,
	// query and body, and a payload of another shape.
	reqSecrets := []string{"hdr-secret-6f1e", "cookie-secret-0b3d", "query-secret-9a7c", "body-secret-4e2d", "sig-secret-77aa"}
	ins := asynq.NewInspectorFromRedisClient(p.inspect.Redis)
	require.NoError(t, ins.PauseQueue(jobs.QueueDefault)) // keep them pending
	client := asynq.NewClientFromRedisClient(p.inspect.Redis)
	req, err := json.Marshal(map[string]any{
		"id": "r1", "credential": p.cfg.Credentials[0].ID, "method": "POST", "path": "Patient",
		"query":   map[string]any{"access_token": reqSecrets[2], "_count": "10"},
		"headers": map[string]string{"Authorization": "Bearer " + reqSecrets[0], "Cookie": "s=" + reqSecrets[1], "X-Trace": "ok"},
		"body":    map[string]any{"resourceType": "Patient", "password": reqSecrets[3], "note": strings.Repeat("x", 400)},
	})
	require.NoError(t, err)
	_, err = client.Enqueue(asynq.NewTask(jobs.TypeVendorRequest, req), asynq.Queue(jobs.QueueDefault))
	require.NoError(t, err)
	_, err = client.Enqueue(asynq.NewTask("webhook:test", []byte(`{"signature":"`+reqSecrets[4]+`","data":"`+reqSecrets[3]+`"}`)), asynq.Queue(jobs.QueueDefault))
	require.NoError(t, err)
	_, err = client.Enqueue(asynq.NewTask(jobs.TypeTokenRefresh, []byte(`{"credential":"c-1","generation":3}`)),
		asynq.Queue(jobs.QueueCritical), asynq.ProcessIn(time.Hour))
	require.NoError(t, err)

	pages := []string{"/", "/api/queues", "/api/queues/default/pending_tasks", "/api/queues/critical/scheduled_tasks",
		"/api/servers", "/api/redis_info", "/api/queue_stats"}
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, page := range pages {
		resp, err := hc.Get(base + page)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "%s without the token", page)
	}
	bad, err := http.NewRequest(http.MethodGet, base+"/api/queues", nil)
	require.NoError(t, err)
	bad.Header.Set("Authorization", "Bearer not-the-token")
	resp, err := hc.Do(bad)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)

	var all strings.Builder
	get := func(c *http.Client, page string, bearer bool) string {
		t.Helper()
		r, err := http.NewRequest(http.MethodGet, base+page, nil)
		require.NoError(t, err)
		if bearer {
			r.Header.Set("Authorization", "Bearer "+adminToken)
		}
		resp, err := c.Do(r)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", page, b)
		for k, v := range resp.Header {
			fmt.Fprintf(&all, "%s: %s\n", k, v)
		}
		all.Write(b)
		return string(b)
	}
	for _, page := range pages {
		get(hc, page, true)
	}
	pending := get(hc, "/api/queues/default/pending_tasks", true)
	require.Contains(t, pending, "X-Trace", "the payload is shown, redacted")
	require.Contains(t, pending, "«redacted»")
	scheduled := get(hc, "/api/queues/critical/scheduled_tasks", true)
	require.Contains(t, scheduled, `\"generation\": 3`, "a refresh payload is shown in full")

	// A browser: a token in the URL is not a sign-in.
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	browser := &http.Client{Jar: jar}
	resp, err = browser.Get(base + "/?token=" + url.QueryEscape(adminToken))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "the sign-in form, not the dashboard")
	require.Empty(t, jar.Cookies(resp.Request.URL), "no session from a token in the URL")

	// The sign-in form, and a state-changing call from another site.
	jar2, err := cookiejar.New(nil)
	require.NoError(t, err)
	formUser := &http.Client{Jar: jar2}
	resp, err = formUser.PostForm(base+"/login", url.Values{"token": {"wrong"}})
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	resp, err = formUser.PostForm(base+"/login", url.Values{"token": {adminToken}})
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "signed in and sent to the dashboard")
	resume := func(origin string) int {
		r, err := http.NewRequest(http.MethodPost, base+"/api/queues/default:resume", nil)
		require.NoError(t, err)
		r.Header.Set("Origin", origin)
		resp, err := formUser.Do(r)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	require.Equal(t, http.StatusForbidden, resume("http://elsewhere.example"))
	paused, err := ins.GetQueueInfo(jobs.QueueDefault)
	require.NoError(t, err)
	require.True(t, paused.Paused, "a cross-site request changes nothing")
	require.Less(t, resume("http://"+worker.addr), 300)

	secrets := append(p.secretsOf(), adminToken)
	secrets = append(secrets, reqSecrets...)
	haystack := all.String()
	for _, s := range secrets {
		require.NotContains(t, haystack, s, "a secret is in an asynqmon response")
	}
}
