package events

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// Dead-letter entries (at DeadLetterKey) carry the malformed entry's fields
// as they were, followed by these two.
const (
	// DeadFieldOutboxID is the entry's id in the outbox stream.
	DeadFieldOutboxID = "outbox_id"
	// DeadFieldReason says what was wrong, without quoting the content.
	DeadFieldReason = "reason"
)

// EncodeOutboxEntry validates an envelope and returns the field-value pairs
// of its outbox entry, in order, ready for XADD (redis.XAddArgs.Values) or as
// the ARGV of a Lua script that writes the entry with a state change.
func EncodeOutboxEntry(env Envelope) ([]any, error) {
	raw, err := marshalOutboxEvent(env)
	if err != nil {
		return nil, err
	}
	return []any{
		OutboxFieldID, env.ID,
		OutboxFieldSubject, env.Subject,
		OutboxFieldEvent, string(raw),
	}, nil
}

// marshalOutboxEvent validates an envelope as an outbox entry's and returns
// its JSON, the entry's event field.
func marshalOutboxEvent(env Envelope) ([]byte, error) {
	return appendOutboxEvent(make([]byte, 0, envelopeOverhead+len(env.Data)), env, false)
}

// appendOutboxEvent is marshalOutboxEvent appending to b. dataEncoded says
// env.Data is as New encoded it (valid JSON that json.Marshal writes as it
// is): it is not walked again to check it, the vendor's whole answer in a
// request.completed.
func appendOutboxEvent(b []byte, env Envelope, dataEncoded bool) ([]byte, error) {
	validate := env.Validate
	if dataEncoded {
		validate = env.validateAttributes
	}
	if err := validate(); err != nil {
		return nil, err
	}
	if !validEventSubject(env.Subject) {
		return nil, fmt.Errorf("events: subject of event %s is not an event subject (<type>.<vendor>.<credential> of a known type, literal tokens)", env.ID)
	}
	return appendValid(b, env, dataEncoded)
}

// Outbox appends events to the Redis outbox for the Relay to publish. It is
// for writers that have no other Redis state to change atomically with the
// event; the credential store writes its entries from its own Lua scripts.
type Outbox struct {
	rdb redis.UniversalClient
	key string
}

// NewOutbox returns the outbox under a Redis key prefix ("" means
// DefaultPrefix).
func NewOutbox(rdb redis.UniversalClient, prefix string) *Outbox {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	return &Outbox{rdb: rdb, key: OutboxKey(prefix)}
}

// Key is the Redis key of the outbox stream.
func (o *Outbox) Key() string { return o.key }

// Append writes the events to the outbox, all or none (one MULTI), in the
// order given. An invalid envelope fails the call before anything is written.
func (o *Outbox) Append(ctx context.Context, envs ...Envelope) error {
	if len(envs) == 0 {
		return nil
	}
	entries := make([][]any, len(envs))
	for i, env := range envs {
		values, err := EncodeOutboxEntry(env)
		if err != nil {
			return err
		}
		entries[i] = values
	}
	_, err := o.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for _, values := range entries {
			p.XAdd(ctx, &redis.XAddArgs{Stream: o.key, Values: values})
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("events: append %d events to outbox: %w", len(envs), err)
	}
	return nil
}

// Depth is the number of entries waiting in the outbox.
func (o *Outbox) Depth(ctx context.Context) (int64, error) {
	n, err := o.rdb.XLen(ctx, o.key).Result()
	if err != nil {
		return 0, fmt.Errorf("events: outbox depth: %w", err)
	}
	return n, nil
}
