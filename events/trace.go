package events

import (
	"bytes"
	"context"
	"encoding/json"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokenrelay/tokenrelay/internal/tracing"
)

// tracePublish starts the JetStream publish span of an event that carries
// a trace context (its traceparent extension), as a child of the work that
// produced it however long the event waited in the outbox, and puts the
// span's context in msg's headers. An event without one is published as
// before, under a no-op span.
func tracePublish(ctx context.Context, msg *nats.Msg) trace.Span {
	if !bytes.Contains(msg.Data, []byte(`"traceparent"`)) {
		return trace.SpanFromContext(context.Background())
	}
	var tc struct {
		TraceParent string `json:"traceparent"`
		TraceState  string `json:"tracestate"`
	}
	if json.Unmarshal(msg.Data, &tc) != nil || tc.TraceParent == "" {
		return trace.SpanFromContext(context.Background())
	}
	_, span := startPublish(Envelope{TraceParent: tc.TraceParent, TraceState: tc.TraceState}.TraceContext(ctx), msg)
	return span
}

// startPublish starts the publish span of msg as a child of ctx's span
// (for a message published directly, the caller's; for the relay, the
// event's producer) and puts its context in msg's headers; under no span
// it is a no-op span.
func startPublish(ctx context.Context, msg *nats.Msg) (context.Context, trace.Span) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return ctx, trace.SpanFromContext(ctx)
	}
	ctx, span := tracing.Tracer().Start(ctx, "events.publish", trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(attribute.String("messaging.system", "nats"), attribute.String("messaging.destination.name", msg.Subject)))
	tracing.InjectNATS(ctx, msg)
	return ctx, span
}

// endSpan ends a publish span, recording err if the publish failed.
func endSpan(span trace.Span, err error) {
	tracing.Fail(span, err)
	span.End()
}
