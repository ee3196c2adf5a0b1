package tracing

import (
	"context"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokenrelay/tokenrelay/internal/tracing/natsprop"
)

// Carrier is the trace context as it travels inside a payload (an asynq
// task, an outbox entry): the W3C traceparent and tracestate fields. It is
// empty (and omitted from JSON) when no sampled span was active.
type Carrier map[string]string

// Inject returns the trace context of ctx's span, or nil when there is none.
func Inject(ctx context.Context) Carrier {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return nil
	}
	c := propagation.MapCarrier{}
	otel.GetTextMapPropagator().Inject(ctx, c)
	if len(c) == 0 {
		return nil
	}
	return Carrier(c)
}

// Extract returns ctx carrying c's span as its remote parent.
func (c Carrier) Extract(ctx context.Context) context.Context {
	if len(c) == 0 {
		return ctx
	}
	return otel.GetTextMapPropagator().Extract(ctx, propagation.MapCarrier(c))
}

// Link is a link to c's span, for work that follows from it without being
// its child (a retry of a finished attempt, an event relayed later).
func (c Carrier) Link() trace.Link {
	return trace.LinkFromContext(c.Extract(context.Background()))
}

// InjectNATS writes ctx's trace context into a NATS message's headers,
// creating them if needed.
func InjectNATS(ctx context.Context, msg *nats.Msg) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return
	}
	if msg.Header == nil {
		msg.Header = nats.Header{}
	}
	natsprop.Inject(ctx, msg.Header)
}

// ExtractNATS returns ctx carrying the span named by msg's headers as its
// remote parent.
func ExtractNATS(ctx context.Context, msg *nats.Msg) context.Context {
	if msg == nil {
		return ctx
	}
	return natsprop.Extract(ctx, msg.Header)
}

// ExtractHeaders is [ExtractNATS] for a message's headers as a NATS micro
// request gives them (micro.Headers converts to nats.Header).
func ExtractHeaders(ctx context.Context, h nats.Header) context.Context {
	return natsprop.Extract(ctx, h)
}

// ReplyHeaders are the headers of a reply carrying ctx's trace context (nil
// when ctx holds no span), for micro.WithHeaders.
func ReplyHeaders(ctx context.Context) nats.Header {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return nil
	}
	h := nats.Header{}
	natsprop.Inject(ctx, h)
	return h
}

// StartServer starts the server span of a NATS request/reply endpoint
// named name: a child of the trace context in the request's headers h
// (the caller's span), when it carries one.
func StartServer(ctx context.Context, name string, h nats.Header, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	return Tracer().Start(ExtractHeaders(ctx, h), name, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(append(attrs, attribute.String("messaging.system", "nats"))...))
}
