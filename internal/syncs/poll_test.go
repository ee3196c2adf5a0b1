package syncs_test

import (
	"context"
	"encoding/json"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/syncs"
	"github.com/tokenrelay/tokenrelay/internal/testenv"
	"github.com/tokenrelay/tokenrelay/internal/webhooks"
)

// A poll while webhooks are off is an incremental sync: after three pages
// of changes, the next poll fetches all three, not one.
func TestPollAfterThreePagesOfChangesFetchesAllThree(t *testing.T) {
	t.Parallel()
	w := setup(t, syncs.Deps{Overlap: time.Millisecond})
	w.sb.SetFHIRResources(200) // ten pages of the sandbox's default 20
	w.worker()
	clock := testenv.NewClock(time.Now())
	tasks := &pollTasks{}
	poller, err := webhooks.NewPoller(webhooks.PollerDeps{
		Targets: []webhooks.PollTarget{{Vendor: vendorName, Resource: "Patient", Credential: credID,
			Interval: time.Minute, SilentAfter: time.Minute}},
		Redis: w.rdb, KeyPrefix: prefix, JetStream: nopPublisher{}, Enqueuer: tasks, Syncs: w.runner, Clock: clock.Now,
	})
	require.NoError(t, err)
	ctx := context.Background()
	poll := func() []syncEvent {
		require.NoError(t, poller.Tick(ctx))
		task := tasks.last(t)
		require.NoError(t, poller.HandlePoll(ctx, task))
		evs := w.waitEnd(webhooks.PollSyncID(task), 30*time.Second)
		require.Equal(t, events.TypeSyncCompleted, evs[len(evs)-1].Type, "%+v", evs[len(evs)-1])
		return evs
	}
	first, _ := delivered(t, poll())
	require.Len(t, first, 200, "the first poll has no mark: everything")

	changed := []int{}
	for i := range 60 {
		changed = append(changed, 3*i)
	}
	w.sb.UpdateFHIRResources("Patient", changed...)
	clock.Advance(time.Minute)
	evs := poll()
	got, _ := delivered(t, evs)
	require.Len(t, got, 60, "every change, not one page of them")
	for _, i := range changed {
		require.Contains(t, got, strconv.Itoa(1001+i))
	}
	require.Equal(t, 3, evs[len(evs)-1].Pages)
}

// pollTasks is an Enqueuer keeping the poll tasks.
type pollTasks struct {
	mu    sync.Mutex
	tasks []webhooks.PollTask
}

func (p *pollTasks) EnqueueContext(_ context.Context, task *asynq.Task, _ ...asynq.Option) (*asynq.TaskInfo, error) {
	var pt webhooks.PollTask
	if err := json.Unmarshal(task.Payload(), &pt); err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.tasks = append(p.tasks, pt)
	p.mu.Unlock()
	return &asynq.TaskInfo{}, nil
}

func (p *pollTasks) last(t *testing.T) webhooks.PollTask {
	p.mu.Lock()
	defer p.mu.Unlock()
	require.NotEmpty(t, p.tasks)
	return p.tasks[len(p.tasks)-1]
}

// nopPublisher takes the polling.started event.
type nopPublisher struct{}

func (nopPublisher) PublishMsg(context.Context, *nats.Msg, ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	return &jetstream.PubAck{}, nil
}
