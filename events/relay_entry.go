package events

// The relay's reading of outbox entries: a well-formed entry is published,
// a malformed one goes to the dead letter (DeadLetterKey) so that it does
// not block the entries behind it.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/tokenrelay/tokenrelay/internal/seal"
	"github.com/tokenrelay/tokenrelay/internal/tracing"
)

// entry is a well-formed outbox entry.
type entry struct {
	rid     string // Redis stream id
	id      string
	subject string
	event   []byte
	trace   tracing.Carrier // the event's traceparent and tracestate
}

// deadEntry is an outbox entry on its way to the dead letter.
type deadEntry struct {
	msg    redis.XMessage
	reason string
}

// parseEntry reads an outbox entry, or says (without quoting it) what is
// wrong with it.
func parseEntry(m redis.XMessage, kr *seal.Keyring) (entry, string) {
	field := func(name string) string {
		s, _ := m.Values[name].(string)
		return s
	}
	e := entry{rid: m.ID, id: field(OutboxFieldID), subject: field(OutboxFieldSubject), event: []byte(field(OutboxFieldEvent))}
	var missing []string
	for _, f := range [...]struct{ name, value string }{
		{OutboxFieldID, e.id}, {OutboxFieldSubject, e.subject}, {OutboxFieldEvent, string(e.event)},
	} {
		if f.value == "" {
			missing = append(missing, f.name)
		}
	}
	switch {
	case len(missing) > 0:
		return e, "missing field " + strings.Join(missing, ", ")
	case !validEventSubject(e.subject):
		return e, "subject is not an event subject"
	}
	event, err := OpenOutboxEvent(kr, e.id, e.subject, string(e.event))
	switch {
	case errors.Is(err, ErrSealedNoKeyring):
		return e, "event is sealed and the relay has no keyring"
	case err != nil:
		return e, "sealed event does not open with the keyring (unknown key, or moved or altered)"
	}
	e.event = event
	switch {
	case !validJSON(e.event):
		return e, "event is not JSON"
	}
	e.trace = envelopeTrace(e.event)
	return e, ""
}

// envelope decodes the entry's event for OnPublished; an event that is JSON
// but not an envelope still yields its id and subject.
func (e entry) envelope() Envelope {
	var env Envelope
	if json.Unmarshal(e.event, &env) != nil {
		env = Envelope{}
	}
	if env.ID == "" {
		env.ID = e.id
	}
	if env.Subject == "" {
		env.Subject = e.subject
	}
	return env
}

// moveToDead copies malformed entries to the dead-letter stream, then
// deletes them from the outbox. The two keys may live on different Redis
// Cluster nodes, so this is two steps; a crash between them leaves an entry
// in both, and it is dead-lettered again (a harmless duplicate there).
func (r *Relay) moveToDead(ctx context.Context, dead []deadEntry) error {
	if len(dead) == 0 {
		return nil
	}
	for _, d := range dead {
		r.log.Error().Str("outbox_id", d.msg.ID).Str("reason", d.reason).
			Msg("malformed outbox entry: moving it to the dead letter")
	}
	_, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, d := range dead {
			values := make([]any, 0, 2*len(d.msg.Values)+4)
			for _, k := range slices.Sorted(maps.Keys(d.msg.Values)) {
				values = append(values, k, d.msg.Values[k])
			}
			values = append(values, DeadFieldOutboxID, d.msg.ID, DeadFieldReason, d.reason)
			p.XAdd(ctx, &redis.XAddArgs{Stream: r.deadKey, Values: values})
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("events: relay: write dead letter: %w", err)
	}
	ids := make([]string, len(dead))
	for i, d := range dead {
		ids[i] = d.msg.ID
	}
	if err := r.rdb.XDel(ctx, r.outbox.Key(), ids...).Err(); err != nil {
		return fmt.Errorf("events: relay: delete dead-lettered entries: %w", err)
	}
	return nil
}
