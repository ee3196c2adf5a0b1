package events

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Every event reaches JetStream as a message built by newMsg: the envelope
// JSON on SubjectPrefix+subject, with the event id as Nats-Msg-Id, so that
// JetStream drops a re-publish of the same event within its duplicate
// window. The Relay publishes the outbox's entries that way; producers that
// must know an event is stored before they answer (the webhook receiver, the
// poller's mode changes) call Publish.

// Publisher publishes a message to JetStream and waits for its PubAck
// (jetstream.JetStream satisfies it).
type Publisher interface {
	PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error)
}

var _ Publisher = jetstream.JetStream(nil)

// WebhookSubject is the subject of a webhook.received event:
// "webhook.<vendor>.<event type>".
func WebhookSubject(vendor, eventType string) string {
	return "webhook." + vendor + "." + eventType
}

// NewWithID builds an envelope with a given id and subject, for an event
// whose id derives from what it describes (a vendor's delivery, the state a
// change leaves) so that every producer of the same event writes the same
// id and JetStream keeps one. data is marshalled to JSON as in New.
func NewWithID(id, eventType, vendor, subject string, at time.Time, data any) (Envelope, error) {
	env, err := New(eventType, vendor, "", at, data)
	if err != nil {
		return Envelope{}, err
	}
	env.ID, env.Subject = id, subject
	return env, nil
}

// Msg returns the NATS message of an envelope: on subjectPrefix + its
// subject, the envelope JSON, the event id as Nats-Msg-Id.
func Msg(subjectPrefix string, env Envelope) (*nats.Msg, error) {
	raw, err := MarshalEnvelope(env)
	if err != nil {
		return nil, err
	}
	return newMsg(subjectPrefix+env.Subject, env.ID, raw), nil
}

// Publish publishes env to JetStream directly (not through the outbox), as
// Msg builds it, and waits for the PubAck; PubAck.Duplicate says JetStream
// already held the event.
func Publish(ctx context.Context, js Publisher, subjectPrefix string, env Envelope) (*jetstream.PubAck, error) {
	msg, err := Msg(subjectPrefix, env)
	if err != nil {
		return nil, err
	}
	ctx, span := startPublish(ctx, msg)
	ack, err := js.PublishMsg(ctx, msg)
	endSpan(span, err)
	if err != nil {
		return nil, fmt.Errorf("events: publish %s %s: %w", env.Type, env.ID, err)
	}
	return ack, nil
}

// newMsg is the message of an event: its JSON on subject, id as
// Nats-Msg-Id.
func newMsg(subject, id string, event []byte) *nats.Msg {
	msg := nats.NewMsg(subject)
	msg.Data = event
	msg.Header.Set(jetstream.MsgIDHeader, id)
	return msg
}
