package webhooks_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/requests"
	"github.com/tokenrelay/tokenrelay/internal/webhooks"
	"github.com/tokenrelay/tokenrelay/jobs"
	"github.com/tokenrelay/tokenrelay/vendors/sandbox"
)

// taskLog is an Enqueuer that keeps the tasks, refusing a second task with
// an id it holds, as asynq does.
type taskLog struct {
	mu    sync.Mutex
	ids   map[string]bool
	tasks []webhooks.PollTask
}

func (q *taskLog) EnqueueContext(_ context.Context, task *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var id, queue string
	for _, o := range opts {
		switch o.Type() {
		case asynq.TaskIDOpt:
			id = o.Value().(string)
		case asynq.QueueOpt:
			queue = o.Value().(string)
		}
	}
	if queue != "low" {
		panic("poll task not on the low queue: " + queue)
	}
	if q.ids[id] {
		return nil, asynq.ErrTaskIDConflict
	}
	q.ids[id] = true
	var p webhooks.PollTask
	if err := json.Unmarshal(task.Payload(), &p); err != nil {
		return nil, err
	}
	q.tasks = append(q.tasks, p)
	return &asynq.TaskInfo{ID: id}, nil
}

func (q *taskLog) take() []webhooks.PollTask {
	q.mu.Lock()
	defer q.mu.Unlock()
	t := q.tasks
	q.tasks = nil
	return t
}

func TestPollingStartsWhenWebhooksGoQuietAndStopsWhenTheyReturn(t *testing.T) {
	t.Parallel()
	r := newRig(t, rigOptions{})
	vendors := testVendors()
	hs := vendors["healthsync"]
	hs.Webhooks.FetchCredential = "hs-main"
	hs.Webhooks.Polling = config.Polling{Resources: []string{"Patient"}, Interval: config.Duration(5 * time.Minute), SilentAfter: config.Duration(15 * time.Minute)}
	vendors["healthsync"] = hs
	closed := vendors["closed"]
	closed.Webhooks.FetchCredential = "svc"
	closed.Webhooks.Polling = config.Polling{Resources: []string{"Invoice"}}
	vendors["closed"] = closed
	receiving, _, err := webhooks.VendorsFromConfig(vendors)
	require.NoError(t, err)
	targets := webhooks.PollTargetsFromConfig(vendors, receiving)
	require.Len(t, targets, 2)

	queue := &taskLog{ids: map[string]bool{}}
	started := &syncLog{ids: map[string]bool{}}
	metrics := webhooks.NewMetrics()
	logs := &strings.Builder{}
	var logMu sync.Mutex
	poller, err := webhooks.NewPoller(webhooks.PollerDeps{
		Targets: targets, Redis: r.rdb, KeyPrefix: r.prefix, JetStream: r.js, SubjectPrefix: r.subject,
		Enqueuer: queue, Syncs: started, Clock: r.clock.Now, Metrics: metrics,
		Logger: zerolog.New(lockedWriter{&logMu, logs}),
	})
	require.NoError(t, err)
	ctx := t.Context()
	polling := func(vendor, resource string) bool {
		return testutil.ToFloat64(metrics.PollingOn.WithLabelValues(vendor, resource)) == 1
	}

	// A vendor without webhooks polls from the start; one with webhooks
	// does not yet.
	require.NoError(t, poller.Tick(ctx))
	require.True(t, polling("closed", "Invoice"))
	require.False(t, polling("healthsync", "Patient"))
	require.Equal(t, []webhooks.PollTask{{Vendor: "closed", Resource: "Invoice", Slot: start.UnixMilli()}}, queue.take())

	// Another tick in the same slot (another worker) adds no poll.
	require.NoError(t, poller.Tick(ctx))
	require.Empty(t, queue.take())

	// Heartbeats are life: ten minutes, a heartbeat, ten more minutes.
	sender := func(url string) *sandbox.WebhookSender {
		s, err := sandbox.NewWebhookSender(sandbox.WebhookSenderOptions{URL: url, Scheme: sandbox.SchemeStandardWebhooks,
			Secrets: []string{hsSecret}, Clock: r.clock.Now, Schedule: []time.Duration{0}, HTTPClient: r.client})
		require.NoError(t, err)
		return s
	}(r.url("healthsync"))
	sub := sandbox.NewFHIRSubscription("hs-sub", "", r.clock.Now)
	r.clock.Advance(10 * time.Minute)
	res, err := sender.Send(ctx, sandbox.Delivery{Body: sub.Heartbeat()})
	require.NoError(t, err)
	require.True(t, res.Delivered)
	r.clock.Advance(10 * time.Minute)
	require.NoError(t, poller.Tick(ctx))
	require.False(t, polling("healthsync", "Patient"))
	for _, task := range queue.take() {
		require.Equal(t, "closed", task.Vendor)
	}

	// The vendor stops sending: after silent_after, polling takes over.
	sender.Stop()
	_, err = sender.Send(ctx, sandbox.Delivery{Body: sub.Heartbeat()})
	require.ErrorIs(t, err, sandbox.ErrSenderStopped)
	r.clock.Advance(6 * time.Minute)
	require.NoError(t, poller.Tick(ctx))
	require.True(t, polling("healthsync", "Patient"))
	tasks := queue.take()
	require.Len(t, tasks, 2) // a new slot for closed/Invoice too
	var hsTask webhooks.PollTask
	for _, task := range tasks {
		if task.Vendor == "healthsync" {
			hsTask = task
		}
	}
	require.Equal(t, "Patient", hsTask.Resource)

	// The poll is an incremental sync (it pages through every change since
	// the last poll that reached its end) through the shared budget, with
	// hs-main's token; a retried poll of the same slot starts it once.
	require.NoError(t, poller.HandlePoll(ctx, hsTask))
	require.NoError(t, poller.HandlePoll(ctx, hsTask))
	syncs := started.all()
	require.Equal(t, []jobs.Sync{{ID: webhooks.PollSyncID(hsTask), Vendor: "healthsync", Credential: "hs-main", Resource: "Patient",
		Mode: jobs.SyncIncremental, Batch: "poll-healthsync"}}, syncs)
	// The next slot's poll is another run of the same search.
	r.clock.Advance(5 * time.Minute)
	require.NoError(t, poller.Tick(ctx))
	for _, task := range queue.take() {
		if task.Vendor == "healthsync" {
			hsTask = task
		}
	}
	require.NoError(t, poller.HandlePoll(ctx, hsTask))
	syncs = started.all()
	require.Len(t, syncs, 2)
	require.NotEqual(t, syncs[0].ID, syncs[1].ID)

	// Webhooks flow again: polling stops, and a poll still queued does nothing.
	sender.Resume()
	body := []byte(`{"type":"patient.created"}`)
	res, err = sender.Send(ctx, sandbox.Delivery{Body: body})
	require.NoError(t, err)
	require.True(t, res.Delivered)
	// (The delivery's liveness is written in the background, with its mark.)
	require.Eventually(t, func() bool {
		return poller.Tick(ctx) == nil && !polling("healthsync", "Patient")
	}, 10*time.Second, 5*time.Millisecond)
	require.NoError(t, poller.HandlePoll(ctx, hsTask))
	require.Len(t, started.all(), 2)
	require.True(t, polling("closed", "Invoice"), "a vendor without webhooks keeps polling")

	// Each change of mode is an event, a metric and a log line.
	var changes []string
	for _, s := range r.stored() {
		if s.env.Type == events.TypePollingStarted || s.env.Type == events.TypePollingStopped {
			var d events.PollingModeChanged
			require.NoError(t, json.Unmarshal(s.env.Data, &d))
			changes = append(changes, s.env.Type+" "+d.Vendor+"/"+d.Resource+" "+d.Reason)
			require.Equal(t, r.subject+s.env.Type+"."+d.Vendor+"."+d.Resource, s.subject)
		}
	}
	require.Equal(t, []string{
		"polling.started closed/Invoice no_webhooks",
		"polling.started healthsync/Patient silent",
		"polling.stopped healthsync/Patient webhooks_flowing",
	}, changes)
	require.EqualValues(t, 1, testutil.ToFloat64(metrics.ModeChanges.WithLabelValues("healthsync", "Patient", "polling")))
	require.EqualValues(t, 1, testutil.ToFloat64(metrics.ModeChanges.WithLabelValues("healthsync", "Patient", "webhooks")))
	logMu.Lock()
	defer logMu.Unlock()
	require.Contains(t, logs.String(), "polling started")
	require.Contains(t, logs.String(), "polling stopped")
}

// syncLog is a SyncStarter that keeps the syncs, refusing an id it holds,
// as syncs.Runner does.
type syncLog struct {
	mu    sync.Mutex
	ids   map[string]bool
	syncs []jobs.Sync
}

func (l *syncLog) Start(_ context.Context, s jobs.Sync) (jobs.Sync, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ids[s.ID] {
		return s, &requests.SubmitError{Code: requests.CodeDuplicate, Message: "taken"}
	}
	l.ids[s.ID] = true
	l.syncs = append(l.syncs, s)
	return s, nil
}

func (l *syncLog) all() []jobs.Sync {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]jobs.Sync(nil), l.syncs...)
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *strings.Builder
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
