package syncs_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
	"github.com/tokenrelay/tokenrelay/vendors/sandbox"
)

const (
	vendorName = "halaxy-sb"
	credID     = "clinic-1"
	userAgent  = "Syncs Test (test@example.com)"
	prefix     = "t:"
)

// flavour is the vendor a test's syncs page: its kind, where the sandbox
// serves it, the resource its searches list and their page-size parameter.
type flavour struct {
	name, path, resource, count string
	kind                        config.Kind
}

var (
	halaxyFlavour     = flavour{name: vendorName, kind: config.KindHalaxy, path: sandbox.HalaxyPath, resource: "Patient", count: "_count"}
	portalFlavour     = flavour{name: "portal-sb", kind: config.KindFHIRPortal, path: sandbox.FHIRPortalPath, resource: "Patient", count: "_count"}
	healthSyncFlavour = flavour{name: "healthsync-sb", kind: config.KindHealthSync, path: sandbox.HealthSyncPath, resource: "records", count: "limit"}
)

// hsAccount is the HealthSync organisation every HealthSync key of a test
// belongs to: one plan, one budget account.
const hsAccount = "acct-sync"

// world is one test's tokenrelay: a Redis DB of its own (asynq needs one),
// a sandbox vendor behind a gate, the store with one credential, the
// request submitter, feeder and workers, and the sync runner.
type world struct {
	t       *testing.T
	fl      flavour
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

// setup is a world of a Halaxy vendor.
func setup(t *testing.T, d syncs.Deps) *world {
	t.Helper()
	return setupVendor(t, d, halaxyFlavour, config.RateLimit{Limit: 100000, Per: config.Duration(time.Minute)}, 0)
}

// setupVendor is a world of a vendor of flavour fl with our rate limit lim
// and the sandbox's window of HealthSync's plans (0: an hour). The sandbox's data set was last changed a minute before the test, so
// that a mark taken from a clock of whole seconds (HealthSync's Date) is
// after it.
func setupVendor(t *testing.T, d syncs.Deps, fl flavour, lim config.RateLimit, hsWindow time.Duration) *world {
	t.Helper()
	_, rdb := testenv.RedisDB(t)
	var behind atomic.Int64
	behind.Store(int64(time.Minute))
	sb := sandbox.New(sandbox.Options{HalaxyRateLimit: -1, RealTokenLifetime: time.Hour, HealthSyncRateWindow: hsWindow,
		Clock: func() time.Time { return time.Now().Add(-time.Duration(behind.Load())) }})
	behind.Store(0)
	sb.SetHealthSyncPlan(hsAccount, -1)
	g := &gate{next: sb.Handler(), suffix: "/" + fl.resource}
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	v := config.Vendor{Name: fl.name, Kind: fl.kind, BaseURL: srv.URL + fl.path, UserAgent: userAgent, RateLimit: lim}
	switch fl.kind {
	case config.KindHalaxy:
		v.MaxTokenLifetime = config.Duration(15 * time.Minute)
	case config.KindHealthSync:
		// The key is checked by a read of its own, not by a search the
		// gate counts.
		v.KeyPaths.Verify = "keys/current"
	}
	kr, err := seal.NewKeyring(make([]byte, seal.KeySize))
	require.NoError(t, err)
	st, err := store.New(rdb, store.Options{Prefix: prefix, Keyring: kr})
	require.NoError(t, err)
	adapter, err := v.NewAdapter(nil)
	require.NoError(t, err)
	refresh, err := jobs.NewRefreshHandler(jobs.RefreshDeps{Store: st, Vendor: func(name string) (jobs.Vendor, bool) {
		return jobs.Vendor{Tokens: adapter, MaxLifetime: time.Duration(v.MaxTokenLifetime),
			Renewal: policy.Renewal{At: 2.0 / 3, Jitter: -1}}, name == fl.name
	}})
	require.NoError(t, err)
	vendors := map[string]config.Vendor{fl.name: v}
	sub, err := requests.NewSubmitter(requests.SubmitterOptions{Redis: rdb, Prefix: prefix, Credentials: st, Vendors: vendors, Keyring: kr})
	require.NoError(t, err)
	d.Redis, d.Prefix, d.Submitter, d.Credentials, d.Vendors, d.Keyring = rdb, prefix, sub, st, vendors, kr
	runner, err := syncs.New(d)
	require.NoError(t, err)
	w := &world{t: t, fl: fl, rdb: rdb, sb: sb, srv: srv, gate: g, vendors: vendors, store: st, refresh: refresh, sub: sub, runner: runner, kr: kr}
	w.addCredential(credID)
	w.feeder()
	return w
}

// addCredential adds credential id of the world's vendor, in the sandbox
// (an OAuth client, or a HealthSync API key of hsAccount) and in the store,
// and gets its first token.
func (w *world) addCredential(id string) {
	w.t.Helper()
	ctx := context.Background()
	nc := store.NewCredential{ID: id, Vendor: w.fl.name}
	if w.fl.kind == config.KindHealthSync {
		_, key := w.sb.AddHealthSyncKey(hsAccount, []string{"read"})
		nc.Keys.APIKey = secret.New(key)
	} else {
		w.sb.AddClient("client-"+id, "secret-"+id)
		nc.ClientID, nc.Keys.ClientSecret = "client-"+id, secret.New("secret-"+id)
	}
	_, err := w.store.Upsert(ctx, nc)
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

// start starts a sync of the vendor's resource (Patient, HealthSync's
// records) in pages of count.
func (w *world) start(id, mode string, count string) {
	w.t.Helper()
	s := jobs.NewSync(credID, w.fl.resource, mode)
	s.ID, s.Query = id, jobs.Query{w.fl.count: {count}}
	_, err := w.runner.Start(context.Background(), s)
	require.NoError(w.t, err)
}

// syncEvent is one sync event read from the outbox (or, with Request set,
// a request job's outcome event).
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
	Request   string            `json:"id"`
	Batch     string            `json:"batch"`
}

// outbox reads every sync and request event in the outbox, in order. A
// sync's pages publish no request event.
func (w *world) outbox() []syncEvent {
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
		request := strings.HasPrefix(env.Type, "request.")
		if !request && !strings.HasPrefix(env.Type, "sync.") {
			continue
		}
		require.False(w.t, strings.HasPrefix(event, "{"), "events are sealed at rest")
		e := syncEvent{Type: env.Type, Subject: env.Subject}
		require.NoError(w.t, json.Unmarshal(env.Data, &e))
		if !request {
			e.Request, e.Batch = "", ""
		}
		require.False(w.t, request && strings.HasPrefix(e.Request, "sync."), "a sync's pages publish no request event")
		out = append(out, e)
	}
	return out
}

// events reads the sync events of id in the outbox, in order.
func (w *world) events(id string) []syncEvent {
	w.t.Helper()
	var out []syncEvent
	for _, e := range w.outbox() {
		if e.SyncID == id && e.Request == "" {
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

// resource is what a test reads of a delivered resource: a FHIR resource
// (id, meta.versionId) or a HealthSync record (id "rec_<n>", version).
type resource struct {
	ID   string `json:"id"`
	Meta struct {
		VersionID   string `json:"versionId"`
		LastUpdated string `json:"lastUpdated"`
	} `json:"meta"`
	Version int `json:"version"`
}

// delivered counts each resource id delivered by the page events, and the
// version each was last delivered at. A HealthSync record's id is read
// without its "rec_" (as the FHIR resource of the same index is named).
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
			id := strings.TrimPrefix(r.ID, "rec_")
			count[id]++
			version[id] = r.Meta.VersionID
			if r.Version != 0 {
				version[id] = strconv.Itoa(r.Version)
			}
		}
	}
	return count, version
}

// gate wraps the sandbox: it counts the searches of the resource (paths
// ending in suffix) and may hold or replace one.
type gate struct {
	next   http.Handler
	suffix string
	mu     sync.Mutex
	hits   int
	// queries and dates are each search's query and its answer's Date
	// header, in order.
	queries []url.Values
	dates   []string
	// on, when set, is called with the number of each search (from
	// 1) before it is served; it returns false to cut the request (the
	// handler waits for the client to go away: a page in flight).
	on func(n int, r *http.Request) bool
	// serve, when set, answers searches instead of the sandbox.
	serve http.HandlerFunc
}

func (g *gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasSuffix(r.URL.Path, g.suffix) {
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
	} else {
		g.next.ServeHTTP(w, r)
	}
	g.mu.Lock()
	g.queries = append(g.queries, r.URL.Query())
	g.dates = append(g.dates, w.Header().Get("Date"))
	g.mu.Unlock()
}

// served returns the query and answer Date of each search served so far.
func (g *gate) served() ([]url.Values, []string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.queries), slices.Clone(g.dates)
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
