package webhooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/requests"
	"github.com/tokenrelay/tokenrelay/jobs"
)

// TypePoll is the task type of a poll. A type name, once shipped, is never
// renamed.
const TypePoll = "webhook:poll"

// PollTask polls one resource of one vendor, once per interval slot.
type PollTask struct {
	Vendor   string `json:"vendor"`
	Resource string `json:"resource"`
	// Slot is the start of the interval this poll is for, in unix ms.
	Slot int64 `json:"slot"`
}

// Kind is the task's permanent type name (jobs.Payload).
func (PollTask) Kind() string { return TypePoll }

// Reasons of a change of mode (events.PollingModeChanged.Reason).
const (
	ReasonNoWebhooks      = "no_webhooks"
	ReasonSilent          = "silent"
	ReasonWebhooksFlowing = "webhooks_flowing"
)

// PollTarget is one vendor resource that may need polling.
type PollTarget struct {
	Vendor, Resource string
	// Credential's token polls.
	Credential string
	// Interval between polls; SilentAfter is how long webhooks may be
	// silent before polling takes over.
	Interval, SilentAfter time.Duration
	// WebhooksOn says the vendor's webhooks are accepted at all.
	WebhooksOn bool
}

// PollTargetsFromConfig lists every configured polling resource; receiving
// are the vendors whose webhooks are accepted (VendorsFromConfig).
func PollTargetsFromConfig(vendors map[string]config.Vendor, receiving map[string]Vendor) []PollTarget {
	var out []PollTarget
	for name, v := range vendors {
		p := v.Webhooks.Polling
		interval, silent := time.Duration(p.Interval), time.Duration(p.SilentAfter)
		if interval <= 0 {
			interval = time.Duration(config.DefaultPollingInterval)
		}
		if silent <= 0 {
			silent = time.Duration(config.DefaultPollingSilentAfter)
		}
		_, on := receiving[name]
		for _, res := range p.Resources {
			out = append(out, PollTarget{Vendor: name, Resource: res, Credential: v.Webhooks.FetchCredential,
				Interval: interval, SilentAfter: silent, WebhooksOn: on})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Vendor+"/"+out[i].Resource < out[j].Vendor+"/"+out[j].Resource
	})
	return out
}

// Enqueuer puts a task on a queue (asynq.Client satisfies it).
type Enqueuer interface {
	EnqueueContext(ctx context.Context, task *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error)
}

// PollerDeps are what a Poller needs. Zero values take the defaults given.
type PollerDeps struct {
	Targets []PollTarget
	// Redis holds the shared mode, liveness and poll watermarks. Required.
	Redis     redis.UniversalClient
	KeyPrefix string
	// JetStream gets the polling.started/stopped events. Required.
	JetStream     events.Publisher
	SubjectPrefix string
	// Enqueuer enqueues the poll tasks. Required.
	Enqueuer Enqueuer
	// Queue the polls go on. Default "low".
	Queue string
	// Syncs starts the incremental sync of a poll. Required to handle polls.
	Syncs SyncStarter
	// TickEvery is how often Run looks at every target. Default 5s.
	TickEvery time.Duration
	Clock     func() time.Time
	Logger    zerolog.Logger
	Metrics   *Metrics
}

// Poller keeps each target in the right mode, webhooks or polling, and
// polls while polling. Every worker may run one: the mode is shared in
// Redis, a change of mode is made (and announced) once, and a slot's poll
// task has one id.
type Poller struct {
	d     PollerDeps
	state *state
}

// NewPoller makes a Poller.
func NewPoller(d PollerDeps) (*Poller, error) {
	if d.Redis == nil || d.JetStream == nil || d.Enqueuer == nil {
		return nil, errors.New("webhooks: poller needs Redis, JetStream and an Enqueuer")
	}
	if d.Queue == "" {
		d.Queue = "low"
	}
	if d.TickEvery <= 0 {
		d.TickEvery = 5 * time.Second
	}
	if d.Clock == nil {
		d.Clock = time.Now
	}
	return &Poller{d: d, state: newState(d.Redis, d.KeyPrefix)}, nil
}

// Run ticks until ctx ends. A failed tick is logged and tried again.
func (p *Poller) Run(ctx context.Context) error {
	if len(p.d.Targets) == 0 {
		return nil
	}
	t := time.NewTicker(p.d.TickEvery)
	defer t.Stop()
	for {
		if err := p.Tick(ctx); err != nil && ctx.Err() == nil {
			p.d.Logger.Warn().Err(err).Msg("polling fallback check failed; trying again")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Tick puts every target in its mode and enqueues the polls due.
func (p *Poller) Tick(ctx context.Context) error {
	var errs []error
	for _, t := range p.d.Targets {
		if err := p.tick(ctx, t); err != nil {
			errs = append(errs, fmt.Errorf("%s/%s: %w", t.Vendor, t.Resource, err))
		}
	}
	return errors.Join(errs...)
}

func (p *Poller) tick(ctx context.Context, t PollTarget) error {
	now := p.d.Clock()
	want, reason := modePolling, ReasonNoWebhooks
	var last time.Time
	if t.WebhooksOn {
		if err := p.state.startLive(ctx, t.Vendor, now); err != nil {
			return err
		}
		var err error
		if last, err = p.state.lastLive(ctx, t.Vendor); err != nil {
			return err
		}
		want, reason = modeWebhooks, ReasonWebhooksFlowing
		if now.Sub(last) > t.SilentAfter {
			want, reason = modePolling, ReasonSilent
		}
	}
	cur, raw, err := p.state.mode(ctx, t.Vendor, t.Resource)
	if err != nil {
		return err
	}
	if cur != want {
		if err := p.change(ctx, t, raw, want, reason, last, now); err != nil {
			return err
		}
		cur = want
	}
	if p.d.Metrics != nil {
		on := 0.0
		if cur == modePolling {
			on = 1
		}
		p.d.Metrics.PollingOn.WithLabelValues(t.Vendor, t.Resource).Set(on)
	}
	if cur != modePolling {
		return nil
	}
	slot := now.Truncate(t.Interval)
	pt := PollTask{Vendor: t.Vendor, Resource: t.Resource, Slot: slot.UnixMilli()}
	task, err := NewPollTask(pt)
	if err != nil {
		return err
	}
	_, err = p.d.Enqueuer.EnqueueContext(ctx, task, PollTaskOptions(pt, t.Interval, p.d.Queue)...)
	if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		return fmt.Errorf("webhooks: enqueue poll: %w", err)
	}
	return nil
}

// change announces and records a change of mode. The event's id derives
// from the state it leaves, so workers racing to make the same change
// publish one event.
func (p *Poller) change(ctx context.Context, t PollTarget, prevRaw, mode, reason string, last, now time.Time) error {
	typ := events.TypePollingStarted
	if mode == modeWebhooks {
		typ = events.TypePollingStopped
	}
	env, err := events.NewWithID("poll-"+hashID(t.Vendor, t.Resource, mode, prevRaw), typ, t.Vendor,
		events.NATSSubject(typ, t.Vendor, t.Resource), now, events.PollingModeChanged{Vendor: t.Vendor, Resource: t.Resource, Reason: reason,
			LastDelivery: last, At: now.UTC()})
	if err != nil {
		return fmt.Errorf("webhooks: mode change: %w", err)
	}
	pubCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := events.Publish(pubCtx, p.d.JetStream, p.d.SubjectPrefix, env); err != nil {
		return fmt.Errorf("webhooks: %w", err)
	}
	changed, err := p.state.setMode(ctx, t.Vendor, t.Resource, prevRaw, mode, now)
	if err != nil || !changed {
		return err // another worker made the change (and published the same event)
	}
	if p.d.Metrics != nil {
		p.d.Metrics.ModeChanges.WithLabelValues(t.Vendor, t.Resource, mode).Inc()
	}
	ev := p.d.Logger.Info().Str("vendor", t.Vendor).Str("resource", t.Resource).Str("mode", mode).Str("reason", reason)
	if !last.IsZero() {
		ev = ev.Time("last_delivery", last)
	}
	if mode == modePolling {
		ev.Msg("polling started: webhooks are off or silent")
	} else {
		ev.Msg("polling stopped: webhooks flow again")
	}
	return nil
}

// NewPollTask builds the poll task of a slot; enqueue it with
// PollTaskOptions.
func NewPollTask(t PollTask) (*asynq.Task, error) {
	raw, err := json.Marshal(t)
	if err != nil {
		return nil, fmt.Errorf("webhooks: encode poll task: %w", err)
	}
	return asynq.NewTask(TypePoll, raw), nil
}

// PollTaskOptions put a poll on queue (the low one) with an id naming its
// slot, so that however many workers enqueue it, it runs once.
func PollTaskOptions(t PollTask, interval time.Duration, queue string) []asynq.Option {
	return []asynq.Option{
		asynq.Queue(queue),
		asynq.TaskID("webhook-poll:" + t.Vendor + ":" + t.Resource + ":" + strconv.FormatInt(t.Slot, 10)),
		asynq.Retention(interval),
		asynq.MaxRetry(3),
		asynq.Timeout(time.Minute),
	}
}

// SyncStarter starts a sync (syncs.Runner satisfies it).
type SyncStarter interface {
	Start(ctx context.Context, s jobs.Sync) (jobs.Sync, error)
}

// HandlePoll runs one poll: an incremental sync of the resource with the
// target's credential, which pages through everything that changed since
// the last poll that reached its end (however many pages: a burst of
// changes during a silent-webhook period is never cut to one page), on the
// shared budget. Its id names the slot, so a retried poll starts it once.
// A poll whose target is back on webhooks does nothing: polling stops by
// itself.
func (p *Poller) HandlePoll(ctx context.Context, task PollTask) error {
	var target *PollTarget
	for i := range p.d.Targets {
		if p.d.Targets[i].Vendor == task.Vendor && p.d.Targets[i].Resource == task.Resource {
			target = &p.d.Targets[i]
		}
	}
	if target == nil {
		p.d.Logger.Warn().Str("vendor", task.Vendor).Str("resource", task.Resource).Msg("poll of a resource no longer configured; dropped")
		return nil
	}
	mode, _, err := p.state.mode(ctx, task.Vendor, task.Resource)
	if err != nil {
		return err
	}
	if mode != modePolling {
		p.d.Logger.Debug().Str("vendor", task.Vendor).Str("resource", task.Resource).Msg("webhooks flow again; poll skipped")
		return nil
	}
	if p.d.Syncs == nil {
		return fmt.Errorf("webhooks: no sync runner to poll %s/%s: %w", task.Vendor, task.Resource, asynq.SkipRetry)
	}
	s := jobs.Sync{ID: PollSyncID(task), Vendor: task.Vendor, Credential: target.Credential, Resource: task.Resource,
		Mode: jobs.SyncIncremental, Batch: "poll-" + task.Vendor}
	if _, err := p.d.Syncs.Start(ctx, s); err != nil {
		var se *requests.SubmitError
		if errors.As(err, &se) && se.Code == requests.CodeDuplicate {
			return nil // this slot's poll started it already
		}
		return fmt.Errorf("webhooks: start the poll of %s/%s: %w", task.Vendor, task.Resource, err)
	}
	p.d.Metrics.fetch(task.Vendor, fetchPoll)
	return nil
}

// PollSyncID is the id of the sync a poll starts: one per vendor, resource
// and slot.
func PollSyncID(t PollTask) string {
	return "poll-" + hashID(t.Vendor, t.Resource, strconv.FormatInt(t.Slot, 10))
}
