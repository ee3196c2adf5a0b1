package tracing

import (
	"context"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokenrelay/tokenrelay/internal/tracing/natsprop"
)

// Carrier is the trace context as it travels inside a payload (an asynq
// task, an outbox entry, a stored token): the W3C traceparent and
// tracestate. It is the zero Carrier (omitted from JSON with omitzero)
// when no span was active. It is a struct, not a map: it is built and read
// on every renewal, sampled or not (issue 14), and its JSON is the same
// {"traceparent": …, "tracestate": …} object a map gave.
type Carrier struct {
	TraceParent string `json:"traceparent,omitempty"`
	TraceState  string `json:"tracestate,omitempty"`
}

// w3c is the propagator of a Carrier: the W3C trace context alone (no
// baggage travels in a payload).
var w3c propagation.TraceContext

// Inject returns the trace context of ctx's span, or the zero Carrier when
// there is none.
func Inject(ctx context.Context) Carrier {
	var c Carrier
	if trace.SpanContextFromContext(ctx).IsValid() {
		w3c.Inject(ctx, &c)
	}
	return c
}

// IsZero reports whether c carries no trace context.
func (c Carrier) IsZero() bool { return c.TraceParent == "" }

// Sampled reports whether c names a span that was sampled (recorded and
// exported): one worth linking to.
func (c Carrier) Sampled() bool { return c.SpanContext().IsSampled() }

// SpanContext is the span c names (invalid when c is zero or malformed).
func (c Carrier) SpanContext() trace.SpanContext {
	if c.IsZero() {
		return trace.SpanContext{}
	}
	return trace.SpanContextFromContext(w3c.Extract(context.Background(), &c))
}

// Extract returns ctx carrying c's span as its remote parent.
func (c Carrier) Extract(ctx context.Context) context.Context {
	if c.IsZero() {
		return ctx
	}
	return w3c.Extract(ctx, &c)
}

// Link is a link to c's span, for work that follows from it without being
// its child (a retry of a finished attempt, an event relayed later).
func (c Carrier) Link() trace.Link {
	return trace.Link{SpanContext: c.SpanContext()}
}

// Get implements propagation.TextMapCarrier.
func (c *Carrier) Get(key string) string {
	switch key {
	case "traceparent":
		return c.TraceParent
	case "tracestate":
		return c.TraceState
	}
	return ""
}

// Set implements propagation.TextMapCarrier.
func (c *Carrier) Set(key, value string) {
	switch key {
	case "traceparent":
		c.TraceParent = value
	case "tracestate":
		c.TraceState = value
	}
}

// Keys implements propagation.TextMapCarrier.
func (c *Carrier) Keys() []string { return []string{"traceparent", "tracestate"} }

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
// (the caller's span), when it carries one. attrs are set only on a span
// that records.
func StartServer(ctx context.Context, name string, h nats.Header, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	ctx, span := Start(ExtractHeaders(ctx, h), name, trace.WithSpanKind(trace.SpanKindServer))
	if span.IsRecording() {
		span.SetAttributes(attrs...)
		span.SetAttributes(attribute.String("messaging.system", "nats"))
	}
	return ctx, span
}
