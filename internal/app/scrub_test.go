package app_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/adminclient"
	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
	"github.com/tokenrelay/tokenrelay/jobs"
	"github.com/tokenrelay/tokenrelay/secret"
)

// echoVendor is a hostile OAuth 2.0 vendor: every error answer it gives
// repeats the secrets it was sent (the Basic credential's client secret,
// the bearer token) and the client's secret it knows, in every spelling,
// cut short, and at both ends of a body of a megabyte.
type echoVendor struct {
	mu      sync.Mutex
	secrets map[string]string // client id -> secret
	tokens  map[string]string // access token -> client id
	granted map[string]int    // client id -> tokens granted
}

// jsonOf is s as it sits inside a JSON string.
func jsonOf(s string) string { b, _ := json.Marshal(s); return string(b[1 : len(b)-1]) }

// spell writes s in every spelling a secret may take in a text.
func spell(id, s string) string {
	return strings.Join([]string{
		"verbatim " + s,
		"query " + url.QueryEscape(s),
		"path " + url.PathEscape(s),
		"json " + jsonOf(s),
		"json-twice " + jsonOf(jsonOf(s)),
		"hex " + hex.EncodeToString([]byte(s)),
		"b64 " + base64.StdEncoding.EncodeToString([]byte(s)),
		"b64url " + base64.RawURLEncoding.EncodeToString([]byte(s)),
		"basic Basic " + base64.StdEncoding.EncodeToString([]byte(id+":"+s)),
		"basic-form Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(s))),
		"basic-colon " + base64.StdEncoding.EncodeToString([]byte(":"+s)),
		"prefix " + s[:len(s)/2] + "…",
	}, " | ")
}

// hostile is an error body that leads with the echo, then n bytes of
// filler, then the echo again.
func hostile(echo string, n int) string {
	return echo + strings.Repeat(" filler", n/7) + echo
}

func (v *echoVendor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	v.mu.Lock()
	defer v.mu.Unlock()
	auth := r.Header.Get("Authorization")
	switch r.URL.Path {
	case "/token":
		user, pass, _ := r.BasicAuth()
		id, _ := url.QueryUnescape(user)
		sec, _ := url.QueryUnescape(pass)
		echo := "you sent " + auth + " | " + spell(id, sec)
		switch {
		case strings.HasSuffix(id, "-revoked"):
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": "invalid_client", "error_description": hostile(echo, 64<<10)})
		case strings.HasSuffix(id, "-ok") && v.granted[id] == 0:
			v.granted[id]++
			tok := "at-" + rand.Text() + "/+" + rand.Text()
			v.tokens[tok] = id
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": 600})
		default:
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, hostile(echo, 1<<20)) // past any limit
		}
	default:
		tok := strings.TrimPrefix(auth, "Bearer ")
		id := v.tokens[tok]
		echo := "you sent " + auth + " | " + spell(id, tok) + " | and your client secret: " + spell(id, v.secrets[id])
		status := http.StatusBadRequest
		if strings.HasSuffix(r.URL.Path, "/Flaky") {
			status = http.StatusServiceUnavailable
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, hostile(echo, 1<<20)) // past any limit
	}
}

// forbidden lists, for each secret, the spellings of it no output may hold.
func forbidden(id string, secrets ...string) []string {
	var out []string
	for _, s := range secrets {
		out = append(out, s, url.QueryEscape(s), url.PathEscape(s), jsonOf(s), jsonOf(jsonOf(s)),
			hex.EncodeToString([]byte(s)),
			base64.StdEncoding.EncodeToString([]byte(s)), base64.RawURLEncoding.EncodeToString([]byte(s)),
			base64.StdEncoding.EncodeToString([]byte(id+":"+s)),
			base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(s))),
			base64.StdEncoding.EncodeToString([]byte(":" + s))[4:],
			s[:secret.MinRun])
	}
	return out
}

func requireNoSecret(t *testing.T, where, text string, spellings []string) {
	t.Helper()
	for _, sp := range spellings {
		require.NotContains(t, text, sp, "%s holds a secret's spelling", where)
	}
}

// A vendor that echoes the secrets it is sent, in every spelling, from its
// token endpoint and its API, gets none of them into any output of
// tokenrelay: the log, the credential's stored last_error (read raw from
// Redis with everything else Redis holds), asynq's task error, the events
// on NATS, the metrics and the admin API. The operator still reads the
// OAuth error code and the start of what the vendor said.
func TestNoSecretInAnyOutput(t *testing.T) {
	if testing.Short() {
		t.Skip("integration run")
	}
	t.Parallel()
	ev := &echoVendor{secrets: map[string]string{}, tokens: map[string]string{}, granted: map[string]int{}}
	srv := httptest.NewServer(ev)
	t.Cleanup(srv.Close)

	p := newPipeline(t, 0, 10*time.Minute, "")
	p.cfg.Scheduler.MetricsAddr = freeAddr(t)
	p.cfg.HTTP.AdminToken = secret.New(testenv.Unique("admin-") + rand.Text())
	v := p.cfg.Vendors["portal"]
	v.TokenURL, v.BaseURL = srv.URL+"/token", srv.URL+"/api/"
	p.cfg.Vendors["portal"] = v
	var all []string
	for _, name := range []string{"ok", "revoked", "failing"} {
		id := "leaky-" + name
		sec := `s3cr/et+"<&> é` + rand.Text()
		ev.secrets["cid "+id] = sec
		p.cfg.Credentials = append(p.cfg.Credentials, config.Credential{ID: id, Vendor: "portal",
			ClientID: "cid " + id, ClientSecret: secret.New(sec)})
		all = append(all, forbidden("cid "+id, sec)...)
	}
	require.NoError(t, p.cfg.Validate())

	p.scheduler()
	worker := p.worker()
	require.Eventually(t, func() bool {
		s := p.summaries()
		return s["leaky-ok"].Generation == 1 && s["leaky-revoked"].State == store.StateRevoked &&
			s["leaky-failing"].State == store.StateFailing
	}, time.Minute, 50*time.Millisecond, "one credential renewed, one revoked, one failing")

	ev.mu.Lock()
	require.Len(t, ev.tokens, 1)
	for tok, id := range ev.tokens {
		all = append(all, forbidden(id, tok)...)
	}
	ev.mu.Unlock()

	admin := &adminclient.Client{BaseURL: "http://" + worker.addr, Token: p.cfg.HTTP.AdminToken}
	ctx := context.Background()
	rejected, err := admin.SubmitRequest(ctx, jobs.NewRequest("leaky-ok", http.MethodGet, "Reject"))
	require.NoError(t, err)
	flaky, err := admin.SubmitRequest(ctx, jobs.NewRequest("leaky-ok", http.MethodGet, "Flaky"))
	require.NoError(t, err)

	// The flaky request's task waits for its retry with the vendor's 503 as
	// its error, which asynqmon shows.
	insp := asynq.NewInspectorFromRedisClient(p.inspect.Redis)
	var taskErrs []string
	require.Eventually(t, func() bool {
		tasks, err := insp.ListRetryTasks(jobs.QueueDefault)
		if err != nil {
			return false
		}
		taskErrs = taskErrs[:0]
		for _, tk := range tasks {
			if strings.Contains(string(tk.Payload), flaky) && tk.LastErr != "" {
				taskErrs = append(taskErrs, tk.LastErr)
			}
		}
		return len(taskErrs) > 0
	}, time.Minute, 50*time.Millisecond, "the flaky request should wait for a retry")
	for _, e := range taskErrs {
		requireNoSecret(t, "asynq task error", e, all)
		// The retry text names the failure class and status only: the
		// vendor's words (patient data, perhaps) stay out of Redis.
		require.Contains(t, e, "HTTP 503")
		require.NotContains(t, e, "you sent")
	}

	// The rejected request fails, and so do the credentials' refreshes.
	var failedMsg string
	require.Eventually(t, func() bool {
		for _, e := range p.readStream(p.inspect.JS) {
			if e.Env.Type == events.TypeRequestFailed && strings.Contains(e.Raw, rejected) {
				failedMsg = e.Raw
				return true
			}
		}
		return false
	}, time.Minute, 100*time.Millisecond, "request %s should fail", rejected)
	require.Contains(t, failedMsg, "HTTP 400")

	// Every output, read whole.
	stream := p.readStream(p.inspect.JS)
	var raw strings.Builder
	types := map[string]int{}
	for _, e := range stream {
		types[e.Env.Type]++
		raw.WriteString(e.Raw + "\n")
	}
	require.Positive(t, types[events.TypeKeyRevoked], "%v", types)
	require.Positive(t, types[events.TypeTokenRefreshFailed], "%v", types)
	requireNoSecret(t, "the event stream", raw.String(), all)
	requireNoSecret(t, "the log", p.logs.String(), all)
	requireNoSecret(t, "Redis", dumpRedis(t, p.inspect.Redis), all)
	for _, u := range []string{"http://" + worker.addr + "/metrics", "http://" + p.cfg.Scheduler.MetricsAddr + "/metrics"} {
		resp, err := http.Get(u)
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		require.NoError(t, err)
		require.Contains(t, string(body), "tokenrelay_")
		requireNoSecret(t, u, string(body), all)
	}
	views, err := admin.List(ctx, "", "")
	require.NoError(t, err)
	listing, err := json.Marshal(views)
	require.NoError(t, err)
	requireNoSecret(t, "the admin API's credential listing", string(listing), all)

	// What is left is useful: the OAuth code, a bounded quote of the rest.
	sums := p.summaries()
	require.Contains(t, sums["leaky-revoked"].LastError, `vendor said "invalid_client: you sent Basic `)
	require.Contains(t, sums["leaky-revoked"].LastError, "| verbatim "+secret.Redacted+" | query "+secret.Redacted)
	require.Contains(t, sums["leaky-failing"].LastError, "HTTP 503")
	for _, s := range sums {
		require.LessOrEqual(t, len(s.LastError), 256)
	}
}

// dumpRedis is everything the test's Redis database holds, as text.
func dumpRedis(t *testing.T, rdb redis.UniversalClient) string {
	t.Helper()
	ctx := context.Background()
	keys, err := rdb.Keys(ctx, "*").Result()
	require.NoError(t, err)
	var b strings.Builder
	for _, k := range keys {
		typ, err := rdb.Type(ctx, k).Result()
		require.NoError(t, err)
		var v any
		switch typ {
		case "string":
			v, err = rdb.Get(ctx, k).Result()
		case "hash":
			v, err = rdb.HGetAll(ctx, k).Result()
		case "list":
			v, err = rdb.LRange(ctx, k, 0, -1).Result()
		case "set":
			v, err = rdb.SMembers(ctx, k).Result()
		case "zset":
			v, err = rdb.ZRangeWithScores(ctx, k, 0, -1).Result()
		case "stream":
			v, err = rdb.XRange(ctx, k, "-", "+").Result()
		}
		if err != nil && err != redis.Nil {
			require.NoError(t, err)
		}
		b.WriteString(k + " " + fmt.Sprint(v) + "\n")
	}
	return b.String()
}
