package events

import (
	"bytes"
	"context"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokenrelay/tokenrelay/internal/tracing"
)

// tracePublish starts the JetStream publish span of an event that carries
// a trace context tc (its traceparent extension, read by parseEntry), as a
// child of the work that produced it however long the event waited in the
// outbox, and puts the span's context in msg's headers. An event without
// one is published as before, under a no-op span.
func tracePublish(ctx context.Context, msg *nats.Msg, tc tracing.Carrier) trace.Span {
	if tc.IsZero() {
		return trace.SpanFromContext(context.Background())
	}
	_, span := startPublish(tc.Extract(ctx), msg)
	return span
}

// startPublish starts the publish span of msg as a child of ctx's span
// (for a message published directly, the caller's; for the relay, the
// event's producer) and puts its context in msg's headers; under no span
// it is a no-op span. Under an unsampled span it starts none (see
// tracing.Start) and the headers carry that span's context: the trace
// travels on every event, sampled or not.
func startPublish(ctx context.Context, msg *nats.Msg) (context.Context, trace.Span) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return ctx, trace.SpanFromContext(ctx)
	}
	ctx, span := tracing.Start(ctx, "events.publish", trace.WithSpanKind(trace.SpanKindProducer))
	if span.IsRecording() {
		span.SetAttributes(attribute.String("messaging.system", "nats"), attribute.String("messaging.destination.name", msg.Subject))
	}
	tracing.InjectNATS(ctx, msg)
	return ctx, span
}

// endSpan ends a publish span, recording err if the publish failed.
func endSpan(span trace.Span, err error) {
	tracing.Fail(span, err)
	span.End()
}

// envelopeTrace reads the traceparent and tracestate members of an event's
// top-level object (the envelope's tracing extension) without decoding
// the event: the relay has just checked that it is JSON, and decoding all
// of it again for two strings was a tenth of tracing's cost to a renewal
// at 1 % sampling (issue 14). Members of the data, however nested, are not
// taken; a value with an escape in it is not a W3C one and is ignored.
func envelopeTrace(event []byte) tracing.Carrier {
	var c tracing.Carrier
	if !bytes.Contains(event, []byte(`"traceparent"`)) {
		return c
	}
	depth := 0
	for i := 0; i < len(event); i++ {
		switch event[i] {
		case '{', '[':
			depth++
		case '}', ']':
			depth--
		case '"':
			end := stringEnd(event, i)
			if end < 0 {
				return tracing.Carrier{}
			}
			if depth == 1 {
				if colon := skipSpace(event, end+1); colon < len(event) && event[colon] == ':' {
					key := event[i+1 : end]
					if v := skipSpace(event, colon+1); v < len(event) && event[v] == '"' &&
						(string(key) == "traceparent" || string(key) == "tracestate") {
						vend := stringEnd(event, v)
						if vend < 0 {
							return tracing.Carrier{}
						}
						if val := event[v+1 : vend]; bytes.IndexByte(val, '\\') < 0 {
							c.Set(string(key), string(val))
						}
						end = vend
					}
				}
			}
			i = end
		}
	}
	return c
}

// stringEnd is the index of the quote that ends the JSON string starting
// at b[start], or -1.
func stringEnd(b []byte, start int) int {
	for i := start + 1; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i
		}
	}
	return -1
}

// skipSpace is the index of the first byte at or after i that is not JSON
// white space.
func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}
