package syncs_test

import (
	"context"
	"encoding/json"
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

	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/budget"
	"github.com/tokenrelay/tokenrelay/internal/policy"
	"github.com/tokenrelay/tokenrelay/internal/requests"
	"github.com/tokenrelay/tokenrelay/internal/seal"
	"github.com/tokenrelay/tokenrelay/internal/store"
	"github.com/tokenrelay/tokenrelay/internal/syncs"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
	"github.com/tokenrelay/tokenrelay/jobs"
	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/vendors/halaxy"
	"github.com/tokenrelay/tokenrelay/vendors/sandbox"
)

const (
	vendorName = "halaxy-sb"
	credID     = "clinic-1"
	userAgent  = "Syncs Test (test@example.com)"
	prefix     = "t:"
)

// world is one test's tokenrelay: a Redis DB of its own (asynq needs one),
// a sandbox Halaxy behind a gate, the store with one credential, the
// request submitter, feeder and workers, and the sync runner.
type world struct {
	t       *testing.T
	rdb     *redis.Client
	sb      *sandbox.Sandbox
	srv     *httptest.Server
	gate    *gate
	vendors map[string]config.Vendor
	store   *store.Store
	refresh *jobs.RefreshHandler
	sub     *requests.Submitter
	runner  *syncs.Runner
	kr      *seal.Keyring
}

func setup(t *testing.T, d syncs.Deps) *world {
	t.Helper()
	_, rdb := testenv.RedisDB(t)
	sb := sandbox.New(sandbox.Options{HalaxyRateLimit: -1, RealTokenLifetime: time.Hour})
	g := &gate{next: sb.Handler()}
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	v := config.Vendor{Name: vendorName, Kind: config.KindHalaxy, BaseURL: srv.URL + sandbox.HalaxyPath,
		UserAgent: userAgent, MaxTokenLifetime: config.Duration(15 * time.Minute),
		RateLimit: config.RateLimit{Limit: 100000, Per: config.Duration(time.Minute)}}
	kr, err := seal.NewKeyring(make([]byte, seal.KeySize))
	require.NoError(t, err)
	st, err := store.New(rdb, store.Options{Prefix: prefix, Keyring: kr})
	require.NoError(t, err)
	adapter, err := halaxy.New(halaxy.Options{BaseURL: v.BaseURL, UserAgent: userAgent})
	require.NoError(t, err)
	refresh, err := jobs.NewRefreshHandler(jobs.RefreshDeps{Store: st, Vendor: func(name string) (jobs.Vendor, bool) {
		return jobs.Vendor{Tokens: adapter, MaxLifetime: 15 * time.Minute, Renewal: policy.Renewal{At: 2.0 / 3, Jitter: -1}}, name == vendorName
	}})
	require.NoError(t, err)
	vendors := map[string]config.Vendor{vendorName: v}
	sub, err := requests.NewSubmitter(requests.SubmitterOptions{Redis: rdb, Prefix: prefix, Credentials: st, Vendors: vendors, Keyring: kr})
	require.NoError(t, err)
	d.Redis, d.Prefix, d.Submitter, d.Credentials, d.Vendors, d.Keyring = rdb, prefix, sub, st, vendors, kr
	runner, err := syncs.New(d)
	require.NoError(t, err)
	w := &world{t: t, rdb: rdb, sb: sb, srv: srv, gate: g, vendors: vendors, store: st, refresh: refresh, sub: sub, runner: runner, kr: kr}
	w.addCredential(credID)
	w.feeder()
	return w
}

func (w *world) addCredential(id string) {
	w.t.Helper()
	ctx := context.Background()
	w.sb.AddClient("client-"+id, "secret-"+id)
	_, err := w.store.Upsert(ctx, store.NewCredential{ID: id, Vendor: vendorName, ClientID: "client-" + id,
		Keys: store.Keys{ClientSecret: secret.New("secret-" + id)}})
	require.NoError(w.t, err)
	require.NoError(w.t, w.refresh.Handle(ctx, jobs.Refresh{Credential: id, Generation: 0}))
}

func (w *world) budget() *budget.Budget {
	return budget.New(w.rdb, budget.Options{Prefix: prefix, Slack: 150 * time.Millisecond})
}

// worker starts one worker process: an asynq server running request tasks
// whose sync pages go to the runner. stop shuts it down: a task in flight
// is abandoned (its context cancelled, its vendor call cut) and goes back
// to the queue, as when a worker is killed.
func (w *world) worker() (stop func()) {
	w.t.Helper()
	b := w.budget()
	h, err := requests.NewHandler(requests.HandlerDeps{Redis: w.rdb, Prefix: prefix, Credentials: w.store,
		Refresh: w.refresh.Handle, Budget: b, Vendors: w.vendors, Logger: zerolog.Nop(), Keyring: w.kr, Pages: w.runner})
	require.NoError(w.t, err)
	mux := asynq.NewServeMux()
	mux.Handle(jobs.TypeVendorRequest, h)
	srv := asynq.NewServerFromRedisClient(w.rdb, asynq.Config{
		Concurrency: 4, Queues: jobs.Queues, StrictPriority: true,
		RetryDelayFunc: jobs.RetryDelay, IsFailure: jobs.IsFailure,
		TaskCheckInterval: 10 * time.Millisecond, DelayedTaskCheckInterval: 100 * time.Millisecond,
		ShutdownTimeout: 100 * time.Millisecond, LogLevel: asynq.FatalLevel,
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

func (w *world) feeder() {
	w.t.Helper()
	f, err := requests.NewFeeder(requests.FeederOptions{Redis: w.rdb, Prefix: prefix, Budget: w.budget(), Vendors: w.vendors,
		Enqueuer: asynq.NewClientFromRedisClient(w.rdb), Logger: zerolog.Nop(), Keyring: w.kr})
	require.NoError(w.t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = f.Run(ctx) }()
	w.t.Cleanup(func() { cancel(); <-done })
}

// start starts a sync of Patient with _count.
func (w *world) start(id, mode string, count string) {
	w.t.Helper()
	s := jobs.NewSync(credID, "Patient", mode)
	s.ID, s.Query = id, jobs.Query{"_count": {count}}
	_, err := w.runner.Start(context.Background(), s)
	require.NoError(w.t, err)
}

// syncEvent is one sync event read from the outbox.
type syncEvent struct {
	Type      string
	Subject   string
	SyncID    string            `json:"sync_id"`
	Page      int               `json:"page"`
	Pages     int               `json:"pages"`
	Resources json.RawMessage   `json:"resources"`
	BodyRef   *events.ObjectRef `json:"body_ref"`
	Class     string            `json:"error_class"`
	Message   string            `json:"message"`
	Cursor    events.SyncCursor `json:"cursor"`
	Mark      time.Time         `json:"mark"`
}

// events reads the sync events of id in the outbox, in order.
func (w *world) events(id string) []syncEvent {
	w.t.Helper()
	msgs, err := w.rdb.XRange(context.Background(), events.OutboxKey(prefix), "-", "+").Result()
	require.NoError(w.t, err)
	var out []syncEvent
	for _, m := range msgs {
		event := m.Values[events.OutboxFieldEvent].(string)
		raw, err := events.OpenOutboxEvent(w.kr, m.Values[events.OutboxFieldID].(string), m.Values[events.OutboxFieldSubject].(string), event)
		require.NoError(w.t, err)
		var env events.Envelope
		require.NoError(w.t, json.Unmarshal(raw, &env))
		require.False(w.t, strings.HasPrefix(env.Type, "request."), "a sync's pages publish no request event")
		if !strings.HasPrefix(env.Type, "sync.") {
			continue
		}
		require.False(w.t, strings.HasPrefix(event, "{"), "sync events are sealed at rest")
		e := syncEvent{Type: env.Type, Subject: env.Subject}
		require.NoError(w.t, json.Unmarshal(env.Data, &e))
		if e.SyncID == id {
			out = append(out, e)
		}
	}
	return out
}

// waitEnd waits for the sync's sync.completed or sync.failed event and
// returns its events.
func (w *world) waitEnd(id string, within time.Duration) []syncEvent {
	w.t.Helper()
	var got []syncEvent
	require.Eventually(w.t, func() bool {
		got = w.events(id)
		return len(got) > 0 && got[len(got)-1].Type != events.TypeSyncPage
	}, within, 20*time.Millisecond, "sync %s did not end", id)
	return got
}

// resource is what a test reads of a delivered resource.
type resource struct {
	ID   string `json:"id"`
	Meta struct {
		VersionID   string `json:"versionId"`
		LastUpdated string `json:"lastUpdated"`
	} `json:"meta"`
}

// delivered counts each resource id delivered by the page events, and the
// version each was last delivered at.
func delivered(t *testing.T, evs []syncEvent) (map[string]int, map[string]string) {
	t.Helper()
	count, version := map[string]int{}, map[string]string{}
	for _, e := range evs {
		if e.Type != events.TypeSyncPage {
			continue
		}
		var rs []resource
		require.NoError(t, json.Unmarshal(e.Resources, &rs))
		for _, r := range rs {
			count[r.ID]++
			version[r.ID] = r.Meta.VersionID
		}
	}
	return count, version
}

// gate wraps the sandbox: it counts Patient searches and may hold or
// replace one.
type gate struct {
	next http.Handler
	mu   sync.Mutex
	hits int
	// on, when set, is called with the number of each Patient search (from
	// 1) before it is served; it returns false to cut the request (the
	// handler waits for the client to go away: a page in flight).
	on func(n int, r *http.Request) bool
	// serve, when set, answers Patient searches instead of the sandbox.
	serve http.HandlerFunc
}

func (g *gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasSuffix(r.URL.Path, "/Patient") {
		g.next.ServeHTTP(w, r)
		return
	}
	g.mu.Lock()
	g.hits++
	n, on, serve := g.hits, g.on, g.serve
	g.mu.Unlock()
	if on != nil && !on(n, r) {
		<-r.Context().Done()
		return
	}
	if serve != nil {
		serve(w, r)
		return
	}
	g.next.ServeHTTP(w, r)
}

func (g *gate) set(on func(n int, r *http.Request) bool) {
	g.mu.Lock()
	g.on = on
	g.mu.Unlock()
}

func (g *gate) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.hits
}
