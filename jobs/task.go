package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/hibiken/asynq"

	"github.com/tokenrelay/tokenrelay/internal/tracing"
)

// Queues. Refreshes and rotations run on critical, request jobs on default
// and polling on low; the worker serves them with strict priority so that
// bulk work can never delay a refresh.
const (
	QueueCritical = "critical"
	QueueDefault  = "default"
	QueueLow      = "low"
)

// Queues is the queue configuration of every worker: name to priority.
var Queues = map[string]int{QueueCritical: 6, QueueDefault: 3, QueueLow: 1}

// Payload is the typed argument of a task. Kind is the task's permanent
// type name.
type Payload interface {
	Kind() string
}

// Handle registers h for the payload type T on mux: the payload is decoded
// once, and a payload that does not decode fails the task without retries.
func Handle[T Payload](mux *asynq.ServeMux, h func(ctx context.Context, p T) error) {
	var zero T
	mux.HandleFunc(zero.Kind(), func(ctx context.Context, t *asynq.Task) error {
		var p T
		if err := json.Unmarshal(t.Payload(), &p); err != nil {
			return fmt.Errorf("jobs: decode %s payload: %w: %w", zero.Kind(), err, asynq.SkipRetry)
		}
		return h(ctx, p)
	})
}

// NewTask encodes p as a task of its kind with the given options.
func NewTask(p Payload, opts ...asynq.Option) (*asynq.Task, error) {
	raw, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("jobs: encode %s payload: %w", p.Kind(), err)
	}
	return asynq.NewTask(p.Kind(), raw, opts...), nil
}

// TypeTokenRefresh is the type name of a token refresh task.
const TypeTokenRefresh = "token:refresh"

// Refresh asks for the renewal of one generation of a credential's token.
// A task for a generation that has moved on is a no-op, so duplicates and
// late tasks are harmless.
type Refresh struct {
	Credential string `json:"credential"`
	Generation int64  `json:"generation"`
	// Trace is the trace context of the scheduler's claim and enqueue of
	// this renewal, when tracing is on: the worker's spans are its children.
	Trace tracing.Carrier `json:"trace,omitzero"`
}

// Kind implements Payload.
func (Refresh) Kind() string { return TypeTokenRefresh }

// NewRefreshTask builds the refresh task for (credential, generation) on the
// critical queue. Its task id is derived from both, so any number of
// schedulers enqueueing it at once yield one pending task.
func NewRefreshTask(credential string, generation int64) (*asynq.Task, error) {
	return NewRefreshTaskOf(Refresh{Credential: credential, Generation: generation})
}

// NewRefreshTaskOf is NewRefreshTask for a payload carrying more than its
// credential and generation (a trace context).
func NewRefreshTaskOf(p Refresh) (*asynq.Task, error) {
	credential, generation := p.Credential, p.Generation
	return NewTask(p,
		asynq.Queue(QueueCritical),
		asynq.TaskID(RefreshTaskID(credential, generation)),
		asynq.MaxRetry(3),
		asynq.Timeout(time.Minute),
	)
}

// RefreshTaskID is the asynq task id of the refresh of one generation.
func RefreshTaskID(credential string, generation int64) string {
	return fmt.Sprintf("refresh:%s:%d", credential, generation)
}

// TypeTokenRefreshBatch is the type name of a task refreshing several
// credentials at once: the scheduler's usual unit of work, so that asynq's
// cost per task is shared by the renewals in it.
const TypeTokenRefreshBatch = "token:refresh_batch"

// RefreshBatch asks for several renewals. Each is fenced on its own as a
// Refresh is; a batch retried after a partial failure redoes nothing that
// was done.
type RefreshBatch struct {
	Items []Refresh `json:"items"`
}

// Kind implements Payload.
func (RefreshBatch) Kind() string { return TypeTokenRefreshBatch }

// NewRefreshBatchTask builds the task refreshing items on the critical
// queue. No task id: the scheduler's lease on each due entry keeps replicas
// from enqueueing the same renewal twice, and the fence makes a duplicate
// harmless.
func NewRefreshBatchTask(items []Refresh) (*asynq.Task, error) {
	return NewTask(RefreshBatch{Items: items},
		asynq.Queue(QueueCritical),
		asynq.MaxRetry(3),
		asynq.Timeout(2*time.Minute),
	)
}
