package requests_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/adminclient"
	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/budget"
	"github.com/tokenrelay/tokenrelay/internal/policy"
	"github.com/tokenrelay/tokenrelay/internal/requests"
	"github.com/tokenrelay/tokenrelay/internal/seal"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
	"github.com/tokenrelay/tokenrelay/jobs"
	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/vendors/halaxy"
	"github.com/tokenrelay/tokenrelay/vendors/sandbox"
)

const (
	vendorName = "halaxy-sb"
	userAgent  = "Requests Test (test@example.com)"
	prefix     = "t:"
)

// setupOptions shape one test's world.
type setupOptions struct {
	sandboxLimit int           // the vendor's true limit (0: 500; <0 none)
	window       time.Duration // the vendor's window (default 1s)
	configured   int           // tokenrelay's configured limit (default: sandboxLimit)
	inline       int           // InlineLimit of the handlers
}

// world is one test's tokenrelay: a Redis DB of its own (asynq needs one), a
// sandbox Halaxy behind a recorder, the store, submitter, feeder and any
// number of worker "processes" (each an asynq server with its own budget).
type world struct {
	t       *testing.T
	rdb     *redis.Client
	sb      *sandbox.Sandbox
	srv     *httptest.Server
	rec     *recorder
	vendors map[string]config.Vendor
	store   *store.Store
	refresh *jobs.RefreshHandler
	sub     *requests.Submitter
	batches *requests.Batches
	client  *asynq.Client
	opts    setupOptions
	objects requests.Objects
	bucket  string
	metrics *requests.Metrics
	log     zerolog.Logger
	kr      *seal.Keyring
}

func setup(t *testing.T, o setupOptions) *world {
	t.Helper()
	if o.sandboxLimit == 0 {
		o.sandboxLimit = 500
	}
	if o.window == 0 {
		o.window = time.Second
	}
	if o.configured == 0 {
		o.configured = o.sandboxLimit
	}
	_, rdb := testenv.RedisDB(t)
	sb := sandbox.New(sandbox.Options{HalaxyRateLimit: o.sandboxLimit, HalaxyRateWindow: o.window})
	rec := &recorder{next: sb.Handler()}
	srv := httptest.NewServer(rec)
	t.Cleanup(srv.Close)
	v := config.Vendor{Name: vendorName, Kind: config.KindHalaxy, BaseURL: srv.URL + sandbox.HalaxyPath,
		UserAgent: userAgent, MaxTokenLifetime: config.Duration(15 * time.Minute)}
	if o.configured > 0 {
		v.RateLimit = config.RateLimit{Limit: o.configured, Per: config.Duration(o.window)}
	}
	kr, err := seal.NewKeyring(make([]byte, seal.KeySize))
	require.NoError(t, err)
	st, err := store.New(rdb, store.Options{Prefix: prefix, Keyring: kr})
	require.NoError(t, err)
	adapter, err := halaxy.New(halaxy.Options{BaseURL: v.BaseURL, UserAgent: userAgent})
	require.NoError(t, err)
	refresh, err := jobs.NewRefreshHandler(jobs.RefreshDeps{Store: st, Vendor: func(name string) (jobs.Vendor, bool) {
		return jobs.Vendor{Tokens: adapter, MaxLifetime: 15 * time.Minute, Renewal: policyRenewal}, name == vendorName
	}})
	require.NoError(t, err)
	vendors := map[string]config.Vendor{vendorName: v}
	sub, err := requests.NewSubmitter(requests.SubmitterOptions{Redis: rdb, Prefix: prefix, Credentials: st, Vendors: vendors, Keyring: kr})
	require.NoError(t, err)
	client := asynq.NewClientFromRedisClient(rdb)
	w := &world{t: t, rdb: rdb, sb: sb, srv: srv, rec: rec, vendors: vendors, store: st, refresh: refresh, sub: sub,
		batches: requests.NewBatches(rdb, prefix, nil), client: client, opts: o, metrics: requests.NewMetrics(), log: zerolog.Nop(),
		kr: kr}
	return w
}

// addCredential registers a client in the sandbox and a credential in the
// store, and gets its first token.
func (w *world) addCredential(id string) {
	w.t.Helper()
	ctx := context.Background()
	w.sb.AddClient("client-"+id, "secret-"+id)
	_, err := w.store.Upsert(ctx, store.NewCredential{ID: id, Vendor: vendorName, ClientID: "client-" + id,
		Keys: store.Keys{ClientSecret: secret.New("secret-" + id)}})
	require.NoError(w.t, err)
	require.NoError(w.t, w.refresh.Handle(ctx, jobs.Refresh{Credential: id, Generation: 0}))
	c, err := w.store.CurrentToken(ctx, id)
	require.NoError(w.t, err)
	require.Equal(w.t, int64(1), c.Generation, "first token of %s", id)
}

// worker starts one worker process: an asynq server of concurrency n with
// its own budget. stop shuts it down (tasks in flight go back to the queue).
func (w *world) worker(n int) (stop func()) {
	w.t.Helper()
	b := w.budget()
	h, err := requests.NewHandler(requests.HandlerDeps{Redis: w.rdb, Prefix: prefix, Credentials: w.store,
		Refresh: w.refresh.Handle, Budget: b, Vendors: w.vendors, Objects: w.objects, Bucket: w.bucket,
		InlineLimit: w.opts.inline, Metrics: w.metrics, Logger: w.log, Keyring: w.kr})
	require.NoError(w.t, err)
	mux := asynq.NewServeMux()
	mux.Handle(jobs.TypeVendorRequest, h)
	srv := asynq.NewServerFromRedisClient(w.rdb, asynq.Config{
		Concurrency: n, Queues: jobs.Queues, StrictPriority: true,
		RetryDelayFunc: jobs.RetryDelay, IsFailure: jobs.IsFailure,
		TaskCheckInterval: 10 * time.Millisecond, DelayedTaskCheckInterval: 100 * time.Millisecond,
		ShutdownTimeout: 5 * time.Second, LogLevel: asynq.FatalLevel,
	})
	require.NoError(w.t, srv.Start(mux))
	var once sync.Once
	stop = func() {
		once.Do(func() {
			srv.Shutdown()
			_ = b.Close(context.Background())
		})
	}
	w.t.Cleanup(stop)
	return stop
}

// budget is one process's budget. The slack covers the time between a
// permit and the request reaching the sandbox: a window compressed to
// seconds makes the budget's default (a hundredth of it) a few
// milliseconds, less than a race-detector build on a loaded machine takes.
func (w *world) budget() *budget.Budget {
	return budget.New(w.rdb, budget.Options{Prefix: prefix, Slack: 150 * time.Millisecond})
}

// feeder starts the feeder.
func (w *world) feeder() {
	w.t.Helper()
	b := w.budget()
	f, err := requests.NewFeeder(requests.FeederOptions{Redis: w.rdb, Prefix: prefix, Budget: b, Vendors: w.vendors,
		Enqueuer: w.client, Logger: w.log, Keyring: w.kr})
	require.NoError(w.t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = f.Run(ctx) }()
	w.t.Cleanup(func() { cancel(); <-done })
}

// submit submits n GET Patient requests of credential in batch.
func (w *world) submit(credential, batch string, n int) []string {
	w.t.Helper()
	ids := make([]string, n)
	for i := range ids {
		r := jobs.NewRequest(credential, http.MethodGet, "Patient")
		r.Batch = batch
		r.Headers = map[string]string{"X-Test-Credential": credential}
		r.Query = jobs.Query{"_count": {"10"}}
		acc, err := w.sub.Submit(context.Background(), r)
		require.NoError(w.t, err)
		ids[i] = acc.ID
	}
	return ids
}

// outcome is one request event read from the outbox.
type outcome struct {
	Subject string
	Type    string
	ID      string `json:"id"`
	Status  int    `json:"status"`
	Class   string `json:"error_class"`
	Message string `json:"message"`
	Attempt int    `json:"attempts"`
	Batch   string `json:"batch"`
	Dup     string `json:"duplicate_of"`
	Raw     json.RawMessage
	// TraceParent is the event's trace context (its traceparent).
	TraceParent string
}

// outcomes reads every request event in the outbox, in order.
func (w *world) outcomes() []outcome {
	w.t.Helper()
	msgs, err := w.rdb.XRange(context.Background(), events.OutboxKey(prefix), "-", "+").Result()
	require.NoError(w.t, err)
	var out []outcome
	for _, m := range msgs {
		var env events.Envelope
		raw, err := events.OpenOutboxEvent(w.kr, m.Values[events.OutboxFieldID].(string),
			m.Values[events.OutboxFieldSubject].(string), m.Values[events.OutboxFieldEvent].(string))
		require.NoError(w.t, err)
		require.NoError(w.t, json.Unmarshal(raw, &env))
		if !strings.HasPrefix(env.Type, "request.") {
			continue
		}
		o := outcome{Subject: env.Subject, Type: env.Type, Raw: env.Data, TraceParent: env.TraceParent}
		require.NoError(w.t, json.Unmarshal(env.Data, &o))
		out = append(out, o)
	}
	return out
}

// waitOutcomes waits until n request events are in the outbox.
func (w *world) waitOutcomes(n int, within time.Duration) []outcome {
	w.t.Helper()
	deadline := time.Now().Add(within)
	for {
		got := w.outcomes()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("%d request events after %s, want %d", len(got), within, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// requireEachOnce checks that every id has exactly one outcome, completed.
func requireEachCompletedOnce(t *testing.T, ids []string, got []outcome) {
	t.Helper()
	seen := map[string]int{}
	for _, o := range got {
		seen[o.ID]++
		require.Equal(t, events.TypeRequestCompleted, o.Type, "request %s: %s %s", o.ID, o.Class, o.Message)
	}
	for _, id := range ids {
		require.Equal(t, 1, seen[id], "outcomes of %s", id)
	}
}

var policyRenewal = policy.Renewal{At: 2.0 / 3, Jitter: -1}

// recorder wraps the sandbox and records the time and status of every
// Patient answer, per client (by the bearer token's first use).
type recorder struct {
	next http.Handler
	mu   sync.Mutex
	hits []hit
	// api, when set, answers the vendor API calls whose path ends with
	// its key instead of the sandbox.
	api map[string]http.HandlerFunc
}

type hit struct {
	at     time.Time // when the request arrived
	status int
	ua     string
	client string // the X-Test-Credential header the tests set
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	for suffix, h := range r.api {
		if strings.HasSuffix(req.URL.Path, suffix) {
			h(w, req)
			return
		}
	}
	if !strings.HasSuffix(req.URL.Path, "/Patient") {
		r.next.ServeHTTP(w, req)
		return
	}
	at := time.Now()
	sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	r.next.ServeHTTP(sw, req)
	r.mu.Lock()
	r.hits = append(r.hits, hit{at: at, status: sw.status, ua: req.UserAgent(), client: req.Header.Get("X-Test-Credential")})
	r.mu.Unlock()
}

func (r *recorder) snapshot() []hit {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]hit(nil), r.hits...)
}

func (r *recorder) count(status int) int {
	n := 0
	for _, h := range r.snapshot() {
		if h.status == status {
			n++
		}
	}
	return n
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

func fmtCounts(s adminclient.BatchStatus) string {
	return fmt.Sprintf("total %d queued %d waiting %d running %d done %d failed %d cancelled %d",
		s.Total, s.Queued, s.Waiting, s.Running, s.Done, s.Failed, s.Cancelled)
}

func sandboxServerError(times int) sandbox.Fault {
	return sandbox.Fault{Endpoint: sandbox.EndpointPatient, Kind: sandbox.FaultServerError, Status: 500, Times: times}
}

func newRequest(credential, batch string) jobs.Request {
	r := jobs.NewRequest(credential, http.MethodGet, "Patient")
	r.Batch = batch
	return r
}
