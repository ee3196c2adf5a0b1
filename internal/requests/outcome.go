package requests

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokenrelay/tokenrelay/events"
	"github.com/tokenrelay/tokenrelay/internal/seal"
	"github.com/tokenrelay/tokenrelay/jobs"
	"github.com/tokenrelay/tokenrelay/vendors"
)

// complete publishes request.completed, with the body inline or in the
// object store.
func (h *Handler) complete(ctx context.Context, r jobs.Request, rec record, ans vendors.Answer) error {
	if r.Sync != "" {
		return h.pageDone(ctx, r, rec, ans)
	}
	now := h.d.Clock()
	data := events.RequestCompleted{ID: r.ID, Vendor: r.Vendor, Credential: r.Credential, Batch: r.Batch,
		Status: ans.Status, Headers: eventHeaders(ans.Header), BodySize: len(ans.Body), Attempts: rec.attempts,
		CompletedAt: now.UTC()}
	inline := false
	switch {
	case len(ans.Body) == 0:
	case len(ans.Body) <= h.d.InlineLimit:
		inline = true
	case h.d.Objects == nil:
		return h.fail(ctx, r, rec, "too_large", ans.Status, fmt.Sprintf("the answer's body (%d bytes) is over the inline limit and no object store is configured", len(ans.Body)))
	default:
		name := objectName(r)
		info, err := h.d.Objects.PutBytes(ctx, name, ans.Body)
		if err != nil {
			return fmt.Errorf("requests: store body of %s: %w", r.ID, err)
		}
		data.BodyRef = &events.ObjectRef{Bucket: h.d.Bucket, Name: name, Size: len(ans.Body), Digest: info.Digest}
	}
	var ev *outboxEvent
	var err error
	if inline {
		ev, err = completedInline(ctx, h.d.Keyring, r, now, data, ans.Body)
	} else {
		ev, err = newOutboxEvent(ctx, h.d.Keyring, events.TypeRequestCompleted, r, now, data)
	}
	if err != nil {
		return err
	}
	if err := h.transition(ctx, r, rec, "done", ev); err != nil {
		return err
	}
	h.d.Metrics.outcome(r.Vendor, OutcomeCompleted)
	h.d.Logger.Debug().Str("request", r.ID).Int("status", ans.Status).Msg("request completed")
	return nil
}

// completedInline is the request.completed event of data with body inline:
// the JSON itself when it is JSON, else base64. Encoding the event checks
// the body (a json.RawMessage is validated as it is written), so a JSON
// answer, the usual one, is read once here rather than checked first.
func completedInline(ctx context.Context, kr *seal.Keyring, r jobs.Request, now time.Time, data events.RequestCompleted, body []byte) (*outboxEvent, error) {
	data.Body, data.BodyEncoding = json.RawMessage(body), "json"
	ev, err := newOutboxEvent(ctx, kr, events.TypeRequestCompleted, r, now, data)
	var notJSON *json.MarshalerError
	if err == nil || !errors.As(err, &notJSON) || notJSON.Type != reflect.TypeFor[json.RawMessage]() {
		return ev, err
	}
	data.Body, data.BodyEncoding = base64.StdEncoding.EncodeToString(body), "base64"
	return newOutboxEvent(ctx, kr, events.TypeRequestCompleted, r, now, data)
}

// outboxEvent is an outcome event and its outbox entry, sealed with the
// master key (it may quote patient data), ready for transition.lua.
type outboxEvent struct {
	env    events.Envelope
	sealed any // the entry's event field, sealed (events.SealOutboxEntry)
}

// newOutboxEvent builds the event of r's outcome (events.New's), carrying
// ctx's trace context, and seals its outbox entry with kr.
func newOutboxEvent(ctx context.Context, kr *seal.Keyring, eventType string, r jobs.Request, at time.Time, data any) (*outboxEvent, error) {
	env, entry, err := events.SealNew(ctx, kr, eventType, r.Vendor, r.Credential, at, data)
	if err != nil {
		return nil, fmt.Errorf("requests: event of %s: %w", r.ID, err)
	}
	return &outboxEvent{env: env, sealed: entry[5]}, nil
}

// fail publishes request.failed.
func (h *Handler) fail(ctx context.Context, r jobs.Request, rec record, class string, status int, msg string) error {
	if r.Sync != "" {
		return h.pageFailed(ctx, r, rec, class, msg)
	}
	now := h.d.Clock()
	data := events.RequestFailed{ID: r.ID, Vendor: r.Vendor, Credential: r.Credential, Batch: r.Batch,
		Class: class, Status: status, Message: msg, Attempts: rec.attempts, FailedAt: now.UTC()}
	ev, err := newOutboxEvent(ctx, h.d.Keyring, events.TypeRequestFailed, r, now, data)
	if err != nil {
		return err
	}
	state, outcome := "failed", OutcomeFailed
	if class == "cancelled" {
		state, outcome = "cancelled", OutcomeCancelled
	}
	if err := h.transition(ctx, r, rec, state, ev); err != nil {
		return err
	}
	h.d.Metrics.outcome(r.Vendor, outcome)
	h.d.Logger.Info().Str("request", r.ID).Str("error_class", class).Int("status", status).Str("error", msg).Msg("request failed")
	return nil
}

// transition moves the request to state, recording its attempts; a final
// state writes ev to the outbox in the same step, and stores the outcome
// under the idempotency key. A request run in a group moves together with
// the others of its group that end at about the same time (group.commit).
func (h *Handler) transition(ctx context.Context, r jobs.Request, rec record, state string, ev *outboxEvent) error {
	t, err := transitionStep(h.d.Keyring, h.keys, h.outbox, h.d.Account(r.Vendor, r.Credential), r, state, ev,
		rec.attempts, h.d.Clock(), h.d.IdempotencyTTL, false)
	if err != nil {
		return err
	}
	if g := groupOf(ctx); g != nil {
		return g.commit(ctx, t)
	}
	return runTransitions(ctx, h.d.Redis, t)
}

// transition runs transition.lua for one request; attempts < 0 leaves the
// count as is; moved says the request leaves its group for a task of its
// own.
func transition(ctx context.Context, rdb redis.UniversalClient, kr *seal.Keyring, k keys, outbox, account string,
	r jobs.Request, state string, ev *outboxEvent, attempts int, now time.Time, idemTTL time.Duration, moved bool) error {
	t, err := transitionStep(kr, k, outbox, account, r, state, ev, attempts, now, idemTTL, moved)
	if err != nil {
		return err
	}
	return runTransitions(ctx, rdb, t)
}

// step is one request's part of a transition.lua call.
type step struct {
	id, state string
	keys      []string
	args      []any
}

// transitionStep builds one request's transition. The idempotency outcome
// is sealed with kr (it may quote patient data), as the event is.
func transitionStep(kr *seal.Keyring, k keys, outbox, account string, r jobs.Request, state string, ev *outboxEvent,
	attempts int, now time.Time, idemTTL time.Duration, moved bool) (step, error) {
	evID, evSubject, outcome := "", "", ""
	var evSealed any = ""
	if ev != nil {
		evID, evSubject, evSealed = ev.env.ID, ev.env.Subject, ev.sealed
		if r.IdempotencyKey != "" {
			var err error
			if outcome, err = sealOutcome(kr, r, idemOutcome{Type: ev.env.Type, Data: ev.env.Data}); err != nil {
				return step{}, err
			}
		}
	}
	hasBatch := "0"
	if r.Batch != "" {
		hasBatch = "1"
	}
	n := ""
	if attempts >= 0 {
		n = strconv.Itoa(attempts)
	}
	mv := "0"
	if moved {
		mv = "1"
	}
	return step{id: r.ID, state: state,
		keys: []string{k.request(r.ID), k.batch(r.Vendor, r.Credential, r.Batch), outbox,
			k.idempotency(r.Vendor, r.Credential, r.IdempotencyKey), k.pending(account)},
		args: []any{state, now.UnixMilli(), hasBatch, evID, evSubject, evSealed, outcome, int64(idemTTL / time.Second), r.ID, n, mv},
	}, nil
}

// runTransitions runs transition.lua for steps in one call.
func runTransitions(ctx context.Context, rdb redis.UniversalClient, steps ...step) error {
	keys := make([]string, 0, 5*len(steps))
	args := make([]any, 0, 11*len(steps))
	for _, t := range steps {
		keys = append(keys, t.keys...)
		args = append(args, t.args...)
	}
	if err := scriptTransition.Run(ctx, rdb, keys, args...).Err(); err != nil {
		if len(steps) == 1 {
			return fmt.Errorf("requests: mark %s %s: %w", steps[0].id, steps[0].state, err)
		}
		return fmt.Errorf("requests: mark %d requests (first %s %s): %w", len(steps), steps[0].id, steps[0].state, err)
	}
	return nil
}
