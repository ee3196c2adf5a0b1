package webhooks

import (
	"context"
	"net/http"
	"strconv"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokenrelay/tokenrelay/internal/tracing"
)

// A delivery is a trace of its own: webhooks.receive (the server span of
// the vendor's HTTP request), with webhooks.verify, webhooks.publish (its
// context in the webhook.received message's NATS headers) and the
// submissions of the fetches it triggers (their request jobs continue the
// trace) as children. The vendor is not trusted to name our traces: a
// traceparent it sends is only linked. Spans carry the vendor name, the
// method and outcome, never the path, query, headers or body (patient data,
// signatures).

// traceReceive starts the server span of one delivery, a new root linked
// to the trace context the sender's headers name, if any. Its attributes
// and link are added only when the sampler keeps it (issue 14: the cost at
// 1 % is that of the 99 deliveries in 100 it drops).
func traceReceive(r *http.Request, vendor string) (context.Context, trace.Span) {
	ctx, span := tracing.Tracer().Start(r.Context(), "webhooks.receive", receiveStart...)
	if !span.IsRecording() {
		return ctx, span
	}
	span.SetAttributes(tracing.AttrVendor.String(vendor), attribute.String("http.request.method", r.Method))
	if r.Header.Get("traceparent") != "" {
		sender := otel.GetTextMapPropagator().Extract(context.Background(), propagation.HeaderCarrier(r.Header))
		if l := trace.LinkFromContext(sender, attribute.Bool("tokenrelay.untrusted", true)); l.SpanContext.IsValid() {
			span.AddLink(l)
		}
	}
	return ctx, span
}

var receiveStart = []trace.SpanStartOption{trace.WithNewRoot(), trace.WithSpanKind(trace.SpanKindServer)}

// endReceive ends a delivery's span with its outcome.
func endReceive(span trace.Span, o outcome) {
	if span.IsRecording() {
		span.SetAttributes(attribute.String("tokenrelay.outcome", o.label), attribute.Int("http.response.status_code", o.status))
		if o.status >= 500 {
			span.SetStatus(codes.Error, strconv.Itoa(o.status)+" "+o.label)
		}
	}
	span.End()
}

// traceVerify starts the span of a delivery's signature check; endVerify
// ends it, failed when the delivery is refused (without the verifier's
// words).
func traceVerify(ctx context.Context) trace.Span {
	_, span := tracing.Start(ctx, "webhooks.verify")
	return span
}

func endVerify(span trace.Span, err error) {
	if span.IsRecording() {
		span.SetAttributes(attribute.Bool("tokenrelay.verified", err == nil))
		if err != nil {
			span.SetStatus(codes.Error, "refused")
		}
	}
	span.End()
}
